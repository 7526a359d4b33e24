// A control socket path longer than a unix socket address holds: vmd refuses to start, naming it, instead of letting
// Node bind a name cut short (where vmctl, given the full path, would never find it).

import t, { type Test } from 'tap';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAX_SOCKET_PATH_BYTES } from '../../share/paths.js';
import { VmdHarness } from '../lib/vmd-harness.js';

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-sockpath-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The error of a vmd start that must fail; a vmd that started anyway is stopped again, never left behind. */
async function startFailure(socket: string): Promise<Error | undefined> {
  try {
    const h = await VmdHarness.start({ env: { VMD_SOCKET: socket } });
    await h.teardown();
    return undefined;
  } catch (err) {
    return err as Error;
  }
}

t.test('a socket path too long for a socket address is refused at start-up, nothing bound', async (t) => {
  const dir = tempDir(t);
  const socket = join(dir, 's'.repeat(MAX_SOCKET_PATH_BYTES));
  const err = await startFailure(socket);
  t.match(err?.message, `vmd: socket ${socket}: file name too long`);
  t.match(err?.message, `a unix socket path holds at most ${MAX_SOCKET_PATH_BYTES} bytes`);
  t.same(readdirSync(dir), [], 'no socket under a name cut short');
});

t.test('a socket path that fits, in a directory too deep for vmd\'s temporary name, is refused the same way', async (t) => {
  const base = tempDir(t);
  // The socket's path is exactly the longest that fits; `.vmd-PID.tmp` beside it does not.
  const deep = join(base, 'd'.repeat(MAX_SOCKET_PATH_BYTES - `${base}//x/v`.length), 'x');
  mkdirSync(deep, { recursive: true });
  const socket = join(deep, 'v');
  t.equal(Buffer.byteLength(socket), MAX_SOCKET_PATH_BYTES);
  const err = await startFailure(socket);
  t.match(err?.message, `vmd: socket ${socket}: file name too long`);
  t.match(err?.message, 'and vmd binds a temporary name of up to 16 bytes beside it');
});
