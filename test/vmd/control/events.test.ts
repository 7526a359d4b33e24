// Control's events hub with real sockets: events reach matching subscribers in order, a closed subscriber costs
// nothing, and one that stops reading is dropped once its unread backlog passes the bound, not buffered forever.

import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FrameDecoder } from '../../../share/frame.js';
import type { VmEvent } from '../../../share/protocol.js';
import { EventHub, MAX_EVENT_BACKLOG_BYTES } from '../../../vmd/control/events.js';

/** A connected pair: the server's end (what control holds) and the client's (what vmctl reads). */
async function socketPair(t: Test): Promise<{ server: Socket; client: Socket }> {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-events-'));
  const path = join(dir, 's');
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(path, r));
  const accepted = new Promise<Socket>((r) => srv.once('connection', r));
  const client = connect(path);
  const server = await accepted;
  t.teardown(() => {
    client.destroy();
    server.destroy();
    srv.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { server, client };
}

const ev = (event: VmEvent['event'], vmId: number | null, vm: string | null): VmEvent => ({ time: new Date().toISOString(), event, vmId, vm });

/** Collects the frames a client receives. */
function frames(client: Socket): unknown[] {
  const out: unknown[] = [];
  const d = new FrameDecoder();
  client.on('data', (c: Buffer) => {
    d.push(c);
    for (let r = d.read(); r.kind === 'message'; r = d.read()) out.push(r.message);
  });
  return out;
}

t.test('events reach the subscribers they are for, in order, with the subscribing id', async (t) => {
  const all = await socketPair(t);
  const web = await socketPair(t);
  const hub = new EventHub(() => t.fail('nobody is dropped'));
  hub.subscribe(1, all.server, 7, undefined);
  hub.subscribe(2, web.server, 9, 'web');
  const gotAll = frames(all.client);
  const gotWeb = frames(web.client);
  hub.publish(ev('started', 1, 'web'));
  hub.publish(ev('started', 2, 'db'));
  hub.publish(ev('reloaded', null, null));
  hub.publish(ev('paused', 1, 'web'));
  await new Promise((r) => setTimeout(r, 100));
  t.same(gotAll.map((m) => (m as { event: VmEvent }).event.event), ['started', 'started', 'reloaded', 'paused']);
  t.same(gotAll.map((m) => (m as { id: number }).id), [7, 7, 7, 7]);
  t.same(gotWeb.map((m) => `${(m as { event: VmEvent }).event.event} ${(m as { event: VmEvent }).event.vm}`), ['started web', 'paused web'],
    'a named subscriber sees only its VM, not the daemon\'s reload');
});

t.test('a closed subscriber is forgotten at the next event', async (t) => {
  const a = await socketPair(t);
  const hub = new EventHub(() => t.fail('a closed subscriber is not "dropped"'));
  hub.subscribe(1, a.server, 1, undefined);
  a.server.destroy();
  hub.publish(ev('started', 1, 'web'));
  t.equal(hub.size, 0);
});

t.test('a subscriber that stops reading is dropped past the backlog bound, with a message', async (t) => {
  const slow = await socketPair(t);
  const live = await socketPair(t);
  slow.client.pause();
  const dropped: Array<{ peer: number; message: string }> = [];
  const hub = new EventHub((peer, _id, message) => dropped.push({ peer, message }));
  hub.subscribe(1, slow.server, 1, undefined);
  hub.subscribe(2, live.server, 1, undefined);
  const gotLive = frames(live.client);
  let n = 0;
  // Bounded: far more events than the kernel's socket buffer plus the backlog bound hold.
  for (; n < 100_000 && dropped.length === 0; n++) {
    hub.publish({ ...ev('link-up', 1, 'web'), link: `vmd1i${n % 10}`, reason: 'x'.repeat(100) });
    if (n % 100 === 0) await new Promise((r) => setImmediate(r));
  }
  t.same(dropped.map((d) => d.peer), [1], 'the slow one is dropped');
  t.match(dropped[0]?.message, /too slow/);
  t.ok(slow.server.writableLength <= MAX_EVENT_BACKLOG_BYTES + 1024, `its backlog stayed bounded (${slow.server.writableLength} bytes)`);
  t.equal(hub.size, 1, 'the live one stays');
  await new Promise((r) => setTimeout(r, 200));
  t.equal(gotLive.length, n, 'the live one got every event');
});
