// `vmd -n`: parse and check a vm.conf, print diagnostics as OpenBSD's vmd does, return the exit status.
// Everything goes to stderr; `configuration OK` and macro warnings carry no `vmd:` prefix, as in vmd.c.

import { formatDiagnostic, parseConfigFile } from '../grammar/parse.js';

export interface ConfigTestOptions {
  readonly file: string;
  readonly macros: Readonly<Record<string, string>>;
  readonly verbose: number;
}

/** Runs the config test; debug lines (`… registered`, `memory size rounded to …`) need -vv, as log_debug. */
export function configTest(options: ConfigTestOptions): number {
  const result = parseConfigFile(options.file, { macros: options.macros });
  let out = '';
  for (const d of result.diagnostics) {
    if (d.severity === 'debug' && options.verbose < 2) continue;
    out += `${formatDiagnostic(d)}\n`;
  }
  const ok = !result.diagnostics.some((d) => d.severity === 'error');
  if (ok) out += 'configuration OK\n';
  process.stderr.write(out);
  return ok ? 0 : 1;
}
