// Golden-file comparison for tests: the expected output lives in the source tree, next to the test.
// VMD_UPDATE_GOLDEN=1 rewrites the files from what the code produces now (then review the diff).

import type { Test } from 'tap';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { packageRoot } from '../../share/paths.js';

/** Compares `actual` with `<repo>/<dir>/<name>`, or writes it there when VMD_UPDATE_GOLDEN=1. */
export function golden(t: Test, dir: string, name: string, actual: string): void {
  const file = join(packageRoot, dir, name);
  if (process.env.VMD_UPDATE_GOLDEN === '1') {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, actual);
  }
  t.ok(existsSync(file), `${name} exists (VMD_UPDATE_GOLDEN=1 creates it)`);
  if (existsSync(file)) t.equal(actual, readFileSync(file, 'utf8'), `${name} matches`);
}
