// Tests for vmd/accept: the parent's queue of connections for control. Root's connection must not wait behind a
// user's flood, a user may have only a few waiting, and connections wait for a control that is restarting.

import t, { type Test } from 'tap';
import { createServer, connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AcceptQueue, maxWaitingFor } from '../../vmd/accept.js';

/** Accepted sockets in a real listener, labelled with the uid the test says each peer has. */
async function acceptedSockets(t: Test, n: number): Promise<Socket[]> {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-accept-'));
  const path = join(dir, 's');
  const server = createServer({ pauseOnConnect: true });
  const got: Socket[] = [];
  server.on('connection', (s) => got.push(s));
  server.listen(path);
  await once(server, 'listening');
  const clients = Array.from({ length: n }, () => connect(path));
  while (got.length < n) await new Promise((r) => setTimeout(r, 5));
  t.teardown(() => {
    for (const c of clients) c.destroy();
    for (const s of got) s.destroy();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return got;
}

t.test('root goes first, one connection is in flight at a time, and each user may have a few waiting', async (t) => {
  const socks = await acceptedSockets(t, 8);
  const uids = new Map<Socket, number>(socks.map((s, i) => [s, i < 6 ? 1000 : i === 6 ? 1001 : 0]));
  const q = new AcceptQueue({ isPrivileged: (uid) => uid === 0, maxWaitingPerUid: 3, credOf: (s) => ({ uid: uids.get(s)!, gid: 100 }) });
  for (const s of socks) q.push(s);
  // Of uid 1000's six, three wait and three are closed; nothing is delivered before a control is attached.
  t.equal(q.waiting, 5);
  t.same(socks.slice(3, 6).map((s) => s.destroyed), [true, true, true]);
  const delivered: number[] = [];
  const pending: (() => void)[] = [];
  q.attach((s, done) => {
    delivered.push(socks.indexOf(s));
    pending.push(() => done(null));
  });
  t.same(delivered, [7], 'root first, and only one until its hand-off is written');
  while (pending.length > 0) {
    pending.shift()!();
    await new Promise((r) => setImmediate(r));
  }
  t.same(delivered, [7, 0, 1, 2, 6], 'then the others in the order they came');
  t.equal(q.waiting, 0);
});

t.test('connections wait for a restarted control; a failed hand-off closes the socket; close hangs up', async (t) => {
  const socks = await acceptedSockets(t, 4);
  const q = new AcceptQueue({ isPrivileged: () => false, credOf: () => ({ uid: 1000, gid: 100 }) });
  const first: Socket[] = [];
  q.attach((s, done) => { first.push(s); setImmediate(() => done(new Error('channel closed'))); });
  q.push(socks[0]!);
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  t.ok(socks[0]!.destroyed, 'a connection control could not get is closed, not leaked');
  // Control dies with a hand-off in flight: what comes meanwhile waits for the next one.
  q.attach((s) => { first.push(s); });
  q.push(socks[1]!);
  q.detach();
  q.push(socks[2]!);
  t.equal(q.waiting, 1);
  const second: Socket[] = [];
  q.attach((s, done) => { second.push(s); setImmediate(() => done(null)); });
  t.same(second, [socks[2]], 'the waiting connection goes to the new control');
  q.push(socks[3]!);
  q.close();
  t.ok(socks[3]!.destroyed, 'close hangs up on waiting connections');
  t.equal(q.waiting, 0);
});

t.test('the kernel\'s uid is used when the test gives none', async (t) => {
  const [sock] = await acceptedSockets(t, 1);
  const seen: number[] = [];
  const q = new AcceptQueue({ isPrivileged: (uid) => { seen.push(uid); return true; } });
  q.push(sock!);
  t.same(seen, [process.getuid!()]);
});

t.test('no more connections wait than the parent can spare descriptors for', async (t) => {
  t.equal(maxWaitingFor(20_000), 1024);
  t.equal(maxWaitingFor(1024), 256, 'a quarter of a low limit');
  t.equal(maxWaitingFor(20), 16, 'but never so few that root could not get in');
  t.equal(maxWaitingFor(null), 1024);
  const socks = await acceptedSockets(t, 4);
  const uids = new Map<Socket, number>(socks.map((s, i) => [s, i < 3 ? 1000 + i : 0]));
  const q = new AcceptQueue({ isPrivileged: (uid) => uid === 0, maxWaiting: 2, credOf: (s) => ({ uid: uids.get(s)!, gid: 100 }) });
  for (const s of socks) q.push(s);
  t.same(socks.map((s) => s.destroyed), [false, false, true, false], 'past the bound users are closed, root still waits');
  t.equal(q.waiting, 3);
});

t.test('the credentials read at accept travel with the connection; one the kernel has none for is closed', async (t) => {
  let reads = 0;
  const gone = {} as Socket;
  const q = new AcceptQueue({
    isPrivileged: () => false,
    credOf: (s) => {
      reads++;
      if (s === gone) throw new Error('ENOTCONN');
      return { uid: 1000, gid: 100 };
    },
  });
  const closed: Socket[] = [];
  const sock = (): Socket => ({ destroyed: false, destroy() { closed.push(this as unknown as Socket); } }) as unknown as Socket;
  const a = sock();
  Object.assign(gone, { destroyed: false, destroy() { closed.push(gone); } });
  q.push(gone);
  q.push(a);
  const got: Array<{ uid: number; gid: number }> = [];
  q.attach((_s, done, cred) => { got.push(cred); done(null); });
  t.same(got, [{ uid: 1000, gid: 100 }], 'control is handed the uid and gid read at accept');
  t.same(closed, [gone], 'a connection without credentials is closed, not queued');
  t.equal(reads, 2, 'each connection\'s credentials are read once');
});
