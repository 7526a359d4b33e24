// vmctl migrate's reading of the source's frames (vmctl/migrate.ts Frames): the counters frame after `completed` is
// waited for a bounded time only, since a vmd from before counters moved sends none, and a late one is dropped.

import t from 'tap';
import { PassThrough } from 'node:stream';
import { encodeFrame } from '../../share/frame.js';
import { Frames } from '../../vmctl/migrate.js';

const counters = { type: 'vm.migrate.counters', counters: [{ what: 'if0 rule 1', packets: 3, bytes: 180 }] };
const done = { type: 'vm.migrate.response', id: 1, vmId: 3, name: 'web', phase: 'done' };

t.test('counters that come are returned; a reply first stays queued for next()', async (t) => {
  const s = new PassThrough();
  const f = new Frames(s, Buffer.alloc(0));
  s.write(encodeFrame(counters));
  t.same(await f.counters(1000), counters.counters);
  const g = new Frames(s, Buffer.alloc(0));
  s.write(encodeFrame(done));
  t.equal(await g.counters(1000), undefined, 'no counters: the reply came instead');
  t.match(await g.next(), { kind: 'reply', response: { type: 'vm.migrate.response' } }, 'and is not lost');
});

t.test('a source that sends no counters costs the wait, not the migration; a late frame is dropped', async (t) => {
  const s = new PassThrough();
  const f = new Frames(s, Buffer.alloc(0));
  const t0 = Date.now();
  t.equal(await f.counters(100), undefined);
  t.ok(Date.now() - t0 >= 90, 'waited its bound');
  s.write(encodeFrame(counters));
  s.write(encodeFrame(done));
  t.match(await f.next(), { kind: 'reply', response: { type: 'vm.migrate.response' } }, 'the late counters are skipped');
});
