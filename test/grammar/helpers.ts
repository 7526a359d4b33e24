// Shared helpers of the grammar tests: parse text in a scratch directory and render diagnostics as vmd does.
// Paths inside messages are shown with the scratch directory replaced by $DIR.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatDiagnostic, parseConfigText, type ParseResult } from '../../grammar/parse.js';
import { UserDb } from '../../share/users.js';

/** A fixed user database so owner tests do not depend on the host. */
export const users = new UserDb(
  'root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n',
  'wheel:x:0:\nstaff:x:50:alice\nalice:x:1000:\n',
);

export interface Parsed {
  /** Diagnostics as printed by `vmd -n -vv` (without `configuration OK`), joined with newlines. */
  readonly out: string;
  /** The same without debug lines, as `vmd -n`. */
  readonly errors: string;
  readonly result: ParseResult;
  readonly dir: string;
}

/** Parse `text` as vm.conf in a fresh directory holding `files` (name → content); `@DIR@` in it is that directory. */
export function parse(text: string, files: Record<string, string> = {}, macros: Record<string, string> = {}): Parsed {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-grammar-'));
  try {
    for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content, 'latin1');
    const result = parseConfigText(text.split('@DIR@').join(dir), 'vm.conf', { cwd: dir, macros, users });
    const show = (debug: boolean) => result.diagnostics
      .filter((d) => debug || d.severity !== 'debug')
      .map((d) => formatDiagnostic(d).split(dir).join('$DIR'))
      .join('\n');
    return { out: show(true), errors: show(false), result, dir };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The error output of a text expected to fail, for one-line assertions. */
export function errorsOf(text: string, files: Record<string, string> = {}, macros: Record<string, string> = {}): string {
  return parse(text, files, macros).errors;
}
