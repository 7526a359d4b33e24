// Facade of the vm.conf parser: text in, a checked readonly Config plus diagnostics out.
// Placeholder API; the grammar work fills it in.

import type { Config } from '../share/config.js';

export interface Diagnostic {
  readonly severity: 'error' | 'warning' | 'debug';
  /** null for messages not tied to a file (`too many disks`, `warning: macro 'x' not used`). */
  readonly file: string | null;
  readonly line: number | null;
  readonly message: string;
}

export interface ParseOptions {
  /** `vmd -D name=value` macros: persistent, they win over definitions in the file. */
  readonly macros?: Readonly<Record<string, string>>;
  /** Directory relative paths (include, disk, boot, initrd) resolve against; default process.cwd(). */
  readonly cwd?: string;
}

export interface ParseResult {
  /** null when there were errors. */
  readonly config: Config | null;
  readonly diagnostics: readonly Diagnostic[];
}

export function parseConfigFile(_path: string, _options: ParseOptions = {}): ParseResult {
  throw new Error('not implemented');
}
