// vmd/parent/display-socket.ts: the VNC socket's directory before QEMU starts, and its owner once QEMU has bound it;
// a link or a foreign socket planted where QEMU's socket should be is refused, and root changes nothing through it.

import t from 'tap';
import { execa } from 'execa';
import { chmodSync, existsSync, lstatSync, mkdtempSync, renameSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { displayPrepare, displayRemove, displaySeal, displaySealed, displaySocket } from '../../../vmd/parent/display-socket.js';
import type { Parent } from '../../../vmd/parent/context.js';
import type { Entry } from '../../../vmd/parent/registry.js';

const QEMU = { uid: 65534, gid: 65534 };
const OWNER = 4242;

function fixture(t: { teardown: (fn: () => void) => void }): { p: Parent; e: Entry; run: string } {
  const run = mkdtempSync(join(tmpdir(), 'vmd-display-'));
  chmodSync(run, 0o755);
  t.teardown(() => rmSync(run, { recursive: true, force: true }));
  const p = { env: { runRoot: run, root: true, qemuIdentity: QEMU } } as unknown as Parent;
  const e = { record: { id: 7, name: 'desk', ownerUid: OWNER, ownerGid: null, config: { display: 'vnc' } } } as unknown as Entry;
  return { p, e, run };
}

/** A socket bound at path by QEMU's user, as QEMU binds it; resolves once it listens, with the process to kill. */
async function bindAsQemu(path: string): Promise<() => void> {
  const child = execa(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => console.log('up'))`], {
    uid: QEMU.uid, gid: QEMU.gid, extendEnv: false, env: {}, reject: false,
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', () => resolve());
    void child.then((r) => reject(new Error(`bind as qemu failed: ${String(r.stderr)}`)));
  });
  return () => child.kill('SIGKILL');
}

/** A socket root listens on, standing for /run/docker.sock and the like. */
function rootSocket(path: string): Promise<Server> {
  return new Promise((resolve) => { const s = createServer(); s.listen(path, () => resolve(s)); });
}

t.test('QEMU binds in a directory of its own; then the directory is root\'s and the socket the owner\'s', async (t) => {
  const { p, e, run } = fixture(t);
  const spec = displayPrepare(p, e);
  t.same(spec, { vncSocket: join(run, '7.display', 'vnc.sock') });
  const d = statSync(join(run, '7.display'));
  t.same([d.uid, d.mode & 0o7777], [QEMU.uid, 0o700], 'before QEMU: its user\'s, 0700');
  const stop = await bindAsQemu(spec!.vncSocket);
  t.teardown(stop);
  t.notOk(displaySealed(p, 7), 'not to be connected to by root before the seal');
  displaySeal(p, e, 0);
  t.ok(displaySealed(p, 7), 'and after it');
  const after = statSync(join(run, '7.display'));
  t.same([after.uid, after.mode & 0o7777], [0, 0o711], 'after: root\'s, 0711');
  const s = lstatSync(spec!.vncSocket);
  t.same([s.uid, s.mode & 0o777], [OWNER, 0o600], 'the socket: the owner\'s, 0600');
  displayRemove(p, e.record.id);
  t.notOk(existsSync(join(run, '7.display')));
});

t.test('a VM without display gets no directory, and a stale one goes', async (t) => {
  const { p, e, run } = fixture(t);
  displayPrepare(p, e);
  const plain = { record: { ...e.record, config: { display: 'none' } } } as unknown as Entry;
  t.equal(displayPrepare(p, plain), null);
  t.notOk(existsSync(join(run, '7.display')));
  t.doesNotThrow(() => displaySeal(p, plain, 0), 'nothing to seal');
});

t.test('a link planted by QEMU\'s user is refused, and what it points at is left alone', async (t) => {
  const { p, e, run } = fixture(t);
  displayPrepare(p, e);
  const target = join(run, 'docker.sock');
  const server = await rootSocket(target);
  t.teardown(() => server.close());
  chmodSync(target, 0o660);
  symlinkSync(target, displaySocket(run, 7));
  t.throws(() => displaySeal(p, e, 0), { name: 'VmdError', code: 'ERR_QEMU', message: /^vm "desk": display: .*vnc\.sock: not a socket of qemu's user$/ }, 'refused');
  const st = statSync(target);
  t.same([st.uid, st.mode & 0o777], [0, 0o660], 'the link\'s target keeps its owner and mode');
});

t.test('a socket that is not QEMU\'s user\'s (root\'s, moved in) is refused', async (t) => {
  const { p, e, run } = fixture(t);
  displayPrepare(p, e);
  const other = join(run, 'other.sock');
  const server = await rootSocket(other);
  t.teardown(() => server.close());
  renameSync(other, displaySocket(run, 7));
  t.throws(() => displaySeal(p, e, 0), /display: .*vnc\.sock: not a socket of qemu's user/);
  t.equal(lstatSync(displaySocket(run, 7)).uid, 0, 'left root\'s');
});
