// Tests for vmd/status.ts: control's copy of the status listing. Replies must decode as the protocol's status
// response (the same reader vmctl uses), filters must match the parent's, CURMEM must be fresh within a second.

import t from 'tap';
import { spawn } from 'node:child_process';
import { FrameDecoder, FrameError, MAX_RESPONSE_FRAME_BYTES } from '../../share/frame.js';
import { PROTOCOL_VERSION, type StatusResponse, type VmInfo } from '../../share/protocol.js';
import { readResponse } from '../../share/read-response.js';
import { RestartBudget } from '../../vmd/proc.js';
import { ResidentMemory, StatusSnapshot, statusMatches } from '../../vmd/status.js';

const vm = (id: number, name: string, pid: number | null): VmInfo => ({
  id, name, pid, vcpus: 1, maxmem: 512 * 1024 * 1024, curmem: null, tty: pid === null ? null : `/var/lib/vmd/run/${id}/console`,
  owner: 'root', uid: 0, gid: null, state: pid === null ? 'stopped' : 'running', started: pid === null ? null : '2026-11-23T00:00:00.000Z',
  origin: 'config',
});

/** Decodes one reply frame from its pieces, through the frame decoder and the protocol's response reader. */
function decode(pieces: Buffer[]): StatusResponse {
  const d = new FrameDecoder();
  for (const p of pieces) d.push(p);
  const r = d.read();
  if (r.kind !== 'message') throw new Error(`no message: ${r.kind}`);
  t.equal(d.buffered, 0, 'exactly one frame');
  const res = readResponse(r.message);
  if (res.type !== 'vm.status.response') throw new Error(`not a status response: ${res.type}`);
  return res;
}

/** A ResidentMemory whose readings are scripted per pid, counting reads. */
class FakeMemory extends ResidentMemory {
  reads = 0;
  constructor(private readonly values: Map<number, number>) { super(); }
  override read(pid: number): number | null {
    this.reads++;
    return this.values.get(pid) ?? null;
  }
}

t.test('statusMatches: an id or a name, and -r for VMs with a QEMU', async (t) => {
  const a = vm(1, 'web', 100);
  const b = vm(12, '7', null);
  t.ok(statusMatches(a, {}));
  t.ok(statusMatches(a, { target: '1' }));
  t.ok(statusMatches(a, { target: 'web' }));
  t.notOk(statusMatches(a, { target: 'we' }));
  t.ok(statusMatches(b, { target: '7' }), 'a numeric name matches too');
  t.ok(statusMatches(b, { target: '12' }));
  t.ok(statusMatches(a, { running: true }));
  t.notOk(statusMatches(b, { running: true }));
});

t.test('replies decode as status responses with the request id, filtered, CURMEM filled from /proc', async (t) => {
  const mem = new FakeMemory(new Map([[100, 4096], [300, 8192]]));
  let now = 1000;
  const s = new StatusSnapshot(mem, () => now);
  t.notOk(s.ready, 'not ready before the first snapshot');
  t.throws(() => s.answer({ v: PROTOCOL_VERSION, type: 'vm.status.request', id: 1 }));
  s.update([vm(1, 'web', 100), vm(2, 'db', null), vm(3, 'mail', 300)], ['a warning']);
  t.ok(s.ready);

  const all = decode(s.answer({ v: PROTOCOL_VERSION, type: 'vm.status.request', id: 41 }));
  t.equal(all.id, 41);
  t.same(all.vms.map((v) => [v.name, v.curmem]), [['web', 4096], ['db', null], ['mail', 8192]]);
  t.same(all.warnings, ['a warning']);
  t.same(all.vms[0], { ...vm(1, 'web', 100), curmem: 4096 }, 'every other field as the parent sent it');

  const again = decode(s.answer({ v: PROTOCOL_VERSION, type: 'vm.status.request', id: 42 }));
  t.equal(again.id, 42, 'the cached listing gets each request its own id');
  t.equal(mem.reads, 2, 'the full listing is encoded once per CURMEM period');
  now += 1000;
  decode(s.answer({ v: PROTOCOL_VERSION, type: 'vm.status.request', id: 43 }));
  t.equal(mem.reads, 4, 'and re-read after a second');

  t.same(decode(s.answer({ v: PROTOCOL_VERSION, type: 'vm.status.request', id: 44, target: 'db' })).vms.map((v) => v.name), ['db']);
  t.same(decode(s.answer({ v: PROTOCOL_VERSION, type: 'vm.status.request', id: 45, target: '3' })).vms.map((v) => v.name), ['mail']);
  t.same(decode(s.answer({ v: PROTOCOL_VERSION, type: 'vm.status.request', id: 46, running: true })).vms.map((v) => v.name), ['web', 'mail']);
  t.same(decode(s.answer({ v: PROTOCOL_VERSION, type: 'vm.status.request', id: 47, target: 'nope' })).vms, [], 'no match: an empty listing, as from the parent');

  // A new snapshot replaces the old one at once, whatever the CURMEM period.
  s.update([vm(2, 'db', null)], []);
  const after = decode(s.answer({ v: PROTOCOL_VERSION, type: 'vm.status.request', id: 48 }));
  t.same(after.vms.map((v) => v.name), ['db']);
  t.same(after.warnings, []);
});

t.test('a listing over 1 MiB (8,000 VMs) is answered: replies have their own, larger bound', async (t) => {
  const s = new StatusSnapshot(new FakeMemory(new Map()));
  s.update(Array.from({ length: 8000 }, (_, i) => vm(i + 1, `vm${i}`, 100_000 + i)), []);
  const pieces = s.answer({ v: PROTOCOL_VERSION, type: 'vm.status.request', id: 1 });
  t.ok(pieces.reduce((n, p) => n + p.length, 0) > 1024 * 1024, 'more than a request may be');
  const d = new FrameDecoder({ maxFrameBytes: MAX_RESPONSE_FRAME_BYTES });
  for (const p of pieces) d.push(p);
  const r = d.read();
  t.equal(r.kind, 'message');
  t.equal(r.kind === 'message' ? (r.message as { vms: unknown[] }).vms.length : 0, 8000);
});

t.test('a listing larger than a frame fails like encodeFrame, for the caller to close the connection', async (t) => {
  const s = new StatusSnapshot(new FakeMemory(new Map()), Date.now, 2000);
  s.update(Array.from({ length: 50 }, (_, i) => vm(i + 1, `vm${i}`, null)), []);
  t.throws(() => s.answer({ v: PROTOCOL_VERSION, type: 'vm.status.request', id: 1 }), FrameError);
  t.equal(decode(s.answer({ v: PROTOCOL_VERSION, type: 'vm.status.request', id: 2, target: 'vm3' })).vms.length, 1, 'a small answer still fits');
});

t.test('ResidentMemory reads VmRSS of a live process, null for a gone one, at most once per period', async (t) => {
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  t.teardown(() => { child.kill('SIGKILL'); });
  await new Promise((r) => child.once('spawn', r));
  let now = 0;
  const m = new ResidentMemory(1000, () => now);
  const first = m.read(child.pid!);
  t.ok(first !== null && first > 0, `sleep's RSS: ${first}`);
  t.equal(m.read(999_999_999), null, 'no such process');
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  t.equal(m.read(child.pid!), first, 'cached within the period');
  now = 1000;
  t.equal(m.read(child.pid!), null, 'gone after it');
});

t.test('ResidentMemory forgets the readings of pids no longer asked about: one start/stop cycle leaves nothing', async (t) => {
  let now = 0;
  const m = new ResidentMemory(1000, () => now);
  // Each cycle of a churn is a new QEMU pid, read while it runs (several times a second), then never again.
  for (let cycle = 0; cycle < 500; cycle++) {
    m.read(4_000_000 + cycle);
    now += 600;
    m.read(4_000_000 + cycle);
    now += 600;
  }
  t.ok(m.size <= 2, `readings held after 500 cycles: ${m.size}`);
  now += 1000;
  m.read(1);
  t.equal(m.size, 1, 'only the pid just read');
});

t.test('RestartBudget: max deaths within the window, older ones forgotten', async (t) => {
  let now = 0;
  const b = new RestartBudget(3, 60_000, () => now);
  t.ok(b.spend());
  t.ok(b.spend());
  t.ok(b.spend());
  t.notOk(b.spend(), 'the fourth within a minute is one too many');
  now = 61_000;
  t.ok(b.spend(), 'a minute later the old deaths no longer count');
});
