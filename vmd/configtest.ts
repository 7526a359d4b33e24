// `vmd -n`: parse and check a vm.conf, print diagnostics as OpenBSD's vmd does, return the exit status.
// Placeholder; the grammar work fills it in.

export interface ConfigTestOptions {
  readonly file: string;
  readonly macros: Readonly<Record<string, string>>;
  readonly verbose: number;
}

export function configTest(_options: ConfigTestOptions): number {
  process.stderr.write('vmd: configuration test not implemented\n');
  return 1;
}
