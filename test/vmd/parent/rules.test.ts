// Tests for the parent's own rules, now that they are functions: the reboot limit, state moves, the staggered start
// and registration of vm.conf's VMs. A real SQLite state file in a temp dir; no daemon, no QEMU.

import tap from 'tap';

const t = tap;
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfigText } from '../../../grammar/parse.js';
import type { Config } from '../../../share/config.js';
import { VmdError } from '../../../share/errors.js';
import type { VmState } from '../../../share/protocol.js';
import { StateDb, type VmRuntime } from '../../../vmd/db.js';
import { configRegister, configUnregisterStopped } from '../../../vmd/parent/config.js';
import type { Parent } from '../../../vmd/parent/context.js';
import { restartCount } from '../../../vmd/parent/launch.js';
import { STATE_MOVES, VmRegistry, stateMoveAllowed, type Entry } from '../../../vmd/parent/registry.js';
import { StaggerQueue } from '../../../vmd/parent/stagger.js';

/** A file that exists, as vm.conf's checks want of a kernel. */
const K = process.execPath;

function config(text: string): Config {
  const r = parseConfigText(text, 'vm.conf');
  if (r.config === null) throw new Error(r.diagnostics.map((d) => d.message).join('; '));
  return r.config;
}

function registry(t: { teardown: (f: () => void) => void }): { db: StateDb; vms: VmRegistry; published: string[][] } {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-parent-'));
  const db = new StateDb(dir);
  t.teardown(() => { db.close(); rmSync(dir, { recursive: true, force: true }); });
  const published: string[][] = [];
  const vms = new VmRegistry(db, (list) => { published.push(list.map((v) => `${v.name}:${v.state}`)); return true; });
  return { db, vms, published };
}

/** Just enough of a Parent for configuration and registration. */
function parentOf(db: StateDb, vms: VmRegistry, cfg: Config): Parent {
  return { env: { selfUid: 0 }, db, vms, config: cfg } as unknown as Parent;
}

const runtime = (vmId: number, state: VmRuntime['state']): VmRuntime => ({
  vmId, state, pid: 4242, uid: 0, runDir: '/nonexistent', qmpSocket: '/q', consoleSocket: '/c', startedAt: null,
  restarts: 0, lastStartMs: null, bootOnce: null,
});

t.test('the reboot limit: the third restart in a row within 6 s of the previous start is refused', async (t) => {
  let c = restartCount({ quick: 0, lastStartMs: null }, false, 1000, 7);
  t.same(c, { quick: 0, lastStartMs: 1000 }, 'a start by hand resets the count');
  c = restartCount(c, true, 3000, 7);
  t.same(c, { quick: 1, lastStartMs: 3000 }, 'a reboot 2 s after the start counts');
  c = restartCount(c, true, 8000, 7);
  t.same(c, { quick: 2, lastStartMs: 8000 }, 'and one 5 s after the previous');
  t.throws(() => restartCount(c, true, 9000, 7), { code: 'ERR_RATE_LIMIT', message: 'vm 7: restarted too quickly' });
  t.same(restartCount(c, true, 14_000, 7), { quick: 0, lastStartMs: 14_000 }, 'a reboot 6 s or more later starts over');
  t.same(restartCount(c, false, 9000, 7), { quick: 0, lastStartMs: 9000 }, 'a start by hand is never refused');
});

t.test('state moves follow the table; an illegal one is refused and writes nothing', async (t) => {
  const all: VmState[] = ['running', 'stopped', 'paused', 'waiting', 'stopping', 'starting'];
  for (const s of all) t.ok(stateMoveAllowed(s, s), `${s} may stay ${s}`);
  t.notOk(stateMoveAllowed('waiting', 'running'), 'a queued VM cannot be running without starting');
  t.notOk(stateMoveAllowed('starting', 'waiting'));
  t.notOk(stateMoveAllowed('stopping', 'starting'), 'a stopping guest is not started again before it stopped');
  t.same(Object.keys(STATE_MOVES).sort(), [...all].sort(), 'every state has its moves');

  const { db, vms } = registry(t);
  const rec = { id: db.vmClaimId('a'), name: 'a', origin: 'adhoc' as const, config: config(`vm "a" { boot "${K}" }\n`).vms[0]!, ownerUid: 0, ownerGid: null };
  const e = vms.add(rec);
  vms.setState(e, 'starting');
  db.runtimePut(runtime(rec.id, 'starting'));
  e.runtime = runtime(rec.id, 'starting');
  vms.setState(e, 'running');
  t.equal(e.state, 'running');
  t.equal(db.runtimeList()[0]!.state, 'running', 'SQLite follows in the same step');
  t.equal(e.runtime.state, 'running', 'and the runtime record in memory');
  t.throws(() => vms.setState(e, 'waiting'), VmdError, 'running -> waiting is refused');
  t.equal(e.state, 'running', 'the refused move changed nothing');
  t.equal(db.runtimeList()[0]!.state, 'running');
  vms.trySetState(e, 'waiting');
  t.equal(e.state, 'running', 'a refused move reported by vmm is logged, not applied');
});

t.test('the status listing is republished after a change, once per turn', async (t) => {
  const { db, vms, published } = registry(t);
  const cfg = config(`vm "a" { boot "${K}" }\nvm "b" { boot "${K}" }\n`);
  configRegister(parentOf(db, vms, cfg), cfg, 'config');
  await new Promise((r) => setImmediate(r));
  t.same(published, [['a:stopped', 'b:stopped']], 'two additions, one listing');
  vms.setState(vms.byName('a')!, 'waiting');
  vms.flush();
  t.same(published.at(-1), ['a:waiting', 'b:stopped'], 'flush publishes a pending change at once');
  await new Promise((r) => setImmediate(r));
  t.equal(published.length, 2, 'nothing changed since: nothing sent');
});

t.test('the staggered start: parallel VMs at a time, a delay between batches, disabled ones never', async (t) => {
  const { db, vms } = registry(t);
  const cfg = config([
    'staggered start parallel 2 delay 1',
    ...['a', 'b', 'c', 'd', 'e'].map((n) => `vm "${n}" { boot "${K}" }`),
    `vm "off" {\n disable\n boot "${K}"\n}`, '',
  ].join('\n'));
  configRegister(parentOf(db, vms, cfg), cfg, 'config');
  const started: string[] = [];
  const q = new StaggerQueue({
    vms,
    // The grammar's delay is whole seconds; the test shortens it to keep the suite fast.
    settings: () => ({ parallel: 2, delay: 0.05 }),
    start: (e: Entry) => started.push(e.record.name),
    stopped: () => false,
  });
  t.teardown(() => q.stop());
  t.equal(cfg.global.staggered?.parallel, 2, 'vm.conf says parallel 2');
  q.queueEnabled(cfg);
  t.same(started, ['a', 'b'], 'the first batch at once');
  t.same(['c', 'd', 'e'].map((n) => vms.byName(n)!.state), ['waiting', 'waiting', 'waiting'], 'the rest are waiting');
  t.equal(vms.byName('off')!.state, 'stopped', 'a disabled VM is not queued');
  // d is removed before its turn: it does not use up a place in the batch.
  vms.remove(vms.byName('d')!.record.id);
  await new Promise((r) => setTimeout(r, 200));
  t.same(started, ['a', 'b', 'c', 'e'], 'the next batch after the delay, skipping the removed VM');
  q.queueEnabled(cfg);
  t.same(started.filter((n) => n === 'c').length, 1, 'a VM already started is not queued again while it is starting');
});

t.test('registration: running VMs keep their configuration, load skips names that exist, instances inherit', async (t) => {
  const { db, vms } = registry(t);
  const first = config(`vm "a" {\n memory 1G\n boot "${K}"\n}\nvm "b" {\n memory 1G\n boot "${K}"\n}\nvm "a" instance "i" {\n enable\n}\n`);
  const p = parentOf(db, vms, first);
  configRegister(p, first, 'config');
  const a = vms.byName('a')!;
  t.equal(vms.byName('i')!.record.config.memory, 1024 * 1024 * 1024, 'the instance inherits memory');
  t.equal(vms.byName('i')!.record.origin, 'instance');
  // a runs; b does not.
  vms.setState(a, 'starting');
  a.runtime = runtime(a.record.id, 'running');
  db.runtimePut(a.runtime);
  const second = config(`vm "a" {\n memory 2G\n boot "${K}"\n}\nvm "b" {\n memory 2G\n boot "${K}"\n}\n`);
  configUnregisterStopped(p);
  t.same([...vms.entries.values()].map((e) => e.record.name), ['a'], 'a reload drops every VM that does not run');
  configRegister(p, second, 'config');
  t.equal(vms.byName('a')!.record.config.memory, 1024 * 1024 * 1024, 'the running VM keeps its configuration');
  t.equal(vms.byName('b')!.record.config.memory, 2 * 1024 * 1024 * 1024, 'the stopped one is read afresh');
  t.equal(vms.byName('a')!.record.id, a.record.id, 'ids are stable');
  const loaded = config(`vm "b" {\n memory 3G\n boot "${K}"\n}\nvm "c" { boot "${K}" }\n`);
  configRegister(p, loaded, 'load');
  t.equal(vms.byName('b')!.record.config.memory, 2 * 1024 * 1024 * 1024, 'load skips a name that exists');
  t.equal(vms.byName('c')!.record.origin, 'load');
  t.same(db.vmList().map((r) => r.name).sort(), ['a', 'b', 'c'], 'SQLite holds what the registry holds');
});
