// Tests for the parent's SQLite state: numbered migrations, stable ids, runtime records surviving a reopen.
// Uses a real database file in a temp dir, opened twice as a daemon restart would.

import t from 'tap';
import Database from 'better-sqlite3';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { migrate, StateDb, type VmRecord } from '../../vmd/db.js';
import { packageRoot } from '../../share/paths.js';

const vmConfig = (name: string) => ({
  name, instanceOf: null, enabled: true, memory: 268435456, cpus: null, boot: '/k', initrd: null, cmdline: null,
  bootDevice: null, cdrom: null, disks: [], interfaces: [], owner: null, allowInstance: null, sev: false, seves: false,
  accel: null, location: { file: 'x', line: 1 },
});

t.test('migrations are numbered files applied once, tracked by user_version', async (t) => {
  const files = readdirSync(join(packageRoot, 'vmd', 'migrations')).filter((f) => f.endsWith('.sql')).sort();
  t.ok(files.length >= 1);
  t.match(files[0], /^0001-/);
  const dir = mkdtempSync(join(tmpdir(), 'vmd-db-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const db = new Database(join(dir, 'a.db'));
  const v = migrate(db);
  t.equal(v, Number(files[files.length - 1]!.slice(0, 4)));
  t.equal(migrate(db), v, 'a second run applies nothing');
  // A later migration is applied on top, and only it.
  const extra = join(dir, 'migrations');
  mkdirSync(extra);
  for (const f of files) writeFileSync(join(extra, f), '-- already applied\n');
  writeFileSync(join(extra, '0099-test.sql'), 'CREATE TABLE probe (x INTEGER);');
  t.equal(migrate(db, extra), 99);
  t.same(db.prepare('SELECT count(*) AS n FROM probe').get(), { n: 0 });
  db.close();
});

t.test('a database a newer vmd migrated is refused, and an older one is copied before its migration', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-db-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const files = readdirSync(join(packageRoot, 'vmd', 'migrations')).filter((f) => f.endsWith('.sql')).sort();
  const latest = Number(files.at(-1)!.slice(0, 4));
  // An older vmd's database: only the first migration applied, one VM recorded.
  const old = new Database(join(dir, 'vmd.db'));
  old.exec(readFileSync(join(packageRoot, 'vmd', 'migrations', files[0]!), 'utf8'));
  old.pragma('user_version = 1');
  old.prepare("INSERT INTO vm_id (name, id) VALUES ('kept', 1)").run();
  old.close();
  const db = new StateDb(dir);
  db.close();
  const copy = new Database(join(dir, 'vmd.db.v1'), { readonly: true });
  t.equal(copy.pragma('user_version', { simple: true }), 1, 'the copy is the database as it was');
  t.same(copy.prepare('SELECT name FROM vm_id').all(), [{ name: 'kept' }]);
  copy.close();
  // A newer vmd's database: refused, untouched.
  const newer = new Database(join(dir, 'vmd.db'));
  newer.pragma(`user_version = ${latest + 1}`);
  newer.close();
  t.throws(() => new StateDb(dir), { code: 'ERR_CONFIG', message: new RegExp(`vmd\\.db: schema version ${latest + 1} is newer than this vmd's ${latest}`) });
  const after = new Database(join(dir, 'vmd.db'), { readonly: true });
  t.equal(after.pragma('user_version', { simple: true }), latest + 1, 'left as it was');
  after.close();
});

t.test('ids are stable per name across removal and reopen; runtime survives a restart', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-db-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  let db = new StateDb(dir);
  const a = db.vmClaimId('a');
  const b = db.vmClaimId('b');
  t.same([a, b], [1, 2]);
  t.equal(db.vmClaimId('a'), 1, 'the same name keeps its id');
  const rec: VmRecord = { id: a, name: 'a', origin: 'adhoc', config: vmConfig('a'), ownerUid: 1000, ownerGid: null };
  db.vmPut(rec);
  db.runtimePut({
    vmId: a, state: 'running', pid: 4242, uid: 1000, runDir: '/r/1', qmpSocket: '/r/1/qmp.sock',
    consoleSocket: '/r/1/console', startedAt: 'now', restarts: 0, lastStartMs: 1, bootOnce: null,
  });
  db.event(a, 'start', 'pid 4242');
  db.close();

  db = new StateDb(dir);
  t.same(db.vmList().map((r) => [r.id, r.name, r.ownerUid]), [[1, 'a', 1000]]);
  t.same(db.runtimeList().map((r) => [r.vmId, r.pid, r.state]), [[1, 4242, 'running']], 'runtime record survives');
  db.runtimeSetState(a, 'paused');
  t.equal(db.runtimeList()[0]!.state, 'paused');
  db.vmDelete(a);
  t.same(db.runtimeList(), [], 'runtime goes with its vm');
  t.equal(db.vmClaimId('a'), 1, 'a removed vm gets its old id back');
  t.equal(db.vmClaimId('c'), 3, 'ids are never reused by another name');
  db.close();
});

t.test('a received guest keeps its id when no VM record holds it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-db-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const db = new StateDb(dir);
  t.teardown(() => db.close());
  const a = db.vmClaimId('a');
  db.vmPut({ id: a, name: 'a', origin: 'adhoc', config: vmConfig('a'), ownerUid: 0, ownerGid: null });
  t.equal(db.vmClaimIdAs('moved', a), false, 'an id a VM holds is refused');
  t.equal(db.vmClaimIdAs('moved', 7), true, 'a never used id is given');
  t.equal(db.vmClaimId('moved'), 7, 'and stays the name\'s');
  db.vmDelete(a);
  t.equal(db.vmClaimIdAs('moved', a), true, 'an id whose VM is gone is given too');
  t.equal(db.vmClaimId('moved'), a, 'the name has its new id');
  t.not(db.vmClaimId('a'), a, 'the old holder\'s name gets another one');
});
