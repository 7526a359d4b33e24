// One message of the config parser and its check passes: what `vmd -n` prints, with its file and line.
// Its own module so the actions, the check passes and the parse facade share it without importing each other.

export interface Diagnostic {
  readonly severity: 'error' | 'warning' | 'debug';
  /** null for messages not tied to a file (`too many disks`, `warning: macro 'x' not used`). */
  readonly file: string | null;
  readonly line: number | null;
  readonly message: string;
}
