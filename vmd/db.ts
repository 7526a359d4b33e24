// The parent's SQLite state: VM records, stable ids, runtime records and the event log.
// Only the parent opens it; migrations are the numbered SQL files in vmd/migrations, tracked by PRAGMA user_version.

import Database from 'better-sqlite3';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { VmConfig } from '../share/config.js';
import { VmdError } from '../share/errors.js';
import { packageRoot } from '../share/paths.js';
import type { VmInfo, VmState } from '../share/protocol.js';

export type VmOrigin = VmInfo['origin'];
/** The states of a VM that has a QEMU (a runtime record): the same union as the status listing's, narrowed. */
export type RuntimeState = Extract<VmState, 'starting' | 'running' | 'paused' | 'stopping'>;

/** A VM as stored: owned by the parent, survives restarts. */
export interface VmRecord {
  readonly id: number;
  readonly name: string;
  readonly origin: VmOrigin;
  readonly config: VmConfig;
  readonly ownerUid: number;
  readonly ownerGid: number | null;
}

/** What the parent recorded about a running guest; the vmm process holds the live state machine. */
export interface VmRuntime {
  readonly vmId: number;
  readonly state: RuntimeState;
  readonly pid: number | null;
  readonly uid: number;
  readonly runDir: string;
  readonly qmpSocket: string;
  readonly consoleSocket: string;
  readonly startedAt: string | null;
  readonly restarts: number;
  readonly lastStartMs: number | null;
  readonly bootOnce: string | null;
}

/** A host network object vmd made: removed on `reset switches`, when its switch leaves the config, or at cleanup. */
export interface OwnedNet {
  readonly kind: 'bridge' | 'vxlan' | 'netns';
  readonly name: string;
  readonly netns: string | null;
}

const MIGRATIONS_DIR = join(packageRoot, 'vmd', 'migrations');

interface VmRow { id: number; name: string; origin: VmOrigin; config: string; owner_uid: number; owner_gid: number | null }
interface RuntimeRow {
  vm_id: number; state: RuntimeState; pid: number | null; uid: number; run_dir: string; qmp_socket: string;
  console_socket: string; started_at: string | null; restarts: number; last_start_ms: number | null; boot_once: string | null;
}

/**
 * Apply the numbered migrations newer than the database's user_version, each in a transaction. A database migrated
 * by a newer vmd is refused (this one would misread it); an existing one is first copied to `vmd.db.vN` (VACUUM INTO:
 * a consistent copy while WAL is on), so a failed or regretted upgrade can be undone by hand.
 */
export function migrate(db: Database.Database, dir = MIGRATIONS_DIR, backupPath?: (version: number) => string): number {
  const files = readdirSync(dir).filter((f) => /^\d{4}-.*\.sql$/.test(f)).sort();
  let version = db.pragma('user_version', { simple: true }) as number;
  const latest = files.length === 0 ? 0 : Number(files.at(-1)!.slice(0, 4));
  if (version > latest) {
    throw new VmdError('ERR_CONFIG', `state database ${db.name}: schema version ${version} is newer than this vmd's ${latest}`, {
      hint: `run the vmd that wrote it, or restore an older copy (${db.name}.vN) made before its migration`,
    });
  }
  if (version > 0 && version < latest && backupPath !== undefined) {
    const copy = backupPath(version);
    rmSync(copy, { force: true });
    db.prepare('VACUUM INTO ?').run(copy);
  }
  for (const file of files) {
    const n = Number(file.slice(0, 4));
    if (n <= version) continue;
    const sql = readFileSync(join(dir, file), 'utf8');
    db.transaction(() => {
      db.exec(sql);
      db.pragma(`user_version = ${n}`);
    })();
    version = n;
  }
  return version;
}

/** Typed access to the state file; every write is one statement or one transaction. */
export class StateDb {
  readonly db: Database.Database;
  private readonly stmts;

  constructor(stateDir: string) {
    mkdirSync(stateDir, { recursive: true, mode: 0o755 });
    this.db = new Database(join(stateDir, 'vmd.db'));
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    migrate(this.db, MIGRATIONS_DIR, (v) => join(stateDir, `vmd.db.v${v}`));
    this.stmts = {
      vms: this.db.prepare<[], VmRow>('SELECT id, name, origin, config, owner_uid, owner_gid FROM vm ORDER BY id'),
      idOf: this.db.prepare<[string], { id: number }>('SELECT id FROM vm_id WHERE name = ?'),
      maxId: this.db.prepare<[], { m: number | null }>('SELECT max(id) AS m FROM vm_id'),
      claim: this.db.prepare('INSERT INTO vm_id (name, id) VALUES (?, ?)'),
      unclaim: this.db.prepare('DELETE FROM vm_id WHERE name = ? AND id = ?'),
      upsertVm: this.db.prepare(`INSERT INTO vm (id, name, origin, config, owner_uid, owner_gid, created_at)
        VALUES (@id, @name, @origin, @config, @ownerUid, @ownerGid, @now)
        ON CONFLICT(id) DO UPDATE SET origin = excluded.origin, config = excluded.config,
          owner_uid = excluded.owner_uid, owner_gid = excluded.owner_gid`),
      deleteVm: this.db.prepare('DELETE FROM vm WHERE id = ?'),
      runtimes: this.db.prepare<[], RuntimeRow>('SELECT * FROM runtime'),
      putRuntime: this.db.prepare(`INSERT OR REPLACE INTO runtime
        (vm_id, state, pid, uid, run_dir, qmp_socket, console_socket, started_at, restarts, last_start_ms, boot_once)
        VALUES (@vmId, @state, @pid, @uid, @runDir, @qmpSocket, @consoleSocket, @startedAt, @restarts, @lastStartMs, @bootOnce)`),
      setState: this.db.prepare('UPDATE runtime SET state = ? WHERE vm_id = ?'),
      deleteRuntime: this.db.prepare('DELETE FROM runtime WHERE vm_id = ?'),
      event: this.db.prepare('INSERT INTO event (at, vm_id, kind, detail) VALUES (?, ?, ?, ?)'),
      trimEvents: this.db.prepare('DELETE FROM event WHERE id <= (SELECT max(id) FROM event) - 10000'),
      owned: this.db.prepare<[], { kind: OwnedNet['kind']; name: string; netns: string }>('SELECT kind, name, netns FROM owned_net ORDER BY kind, name'),
      own: this.db.prepare('INSERT OR IGNORE INTO owned_net (kind, name, netns) VALUES (?, ?, ?)'),
      disown: this.db.prepare('DELETE FROM owned_net WHERE kind = ? AND name = ? AND netns = ?'),
    };
  }

  vmList(): VmRecord[] {
    return this.stmts.vms.all().map((r) => ({
      id: r.id, name: r.name, origin: r.origin, config: JSON.parse(r.config) as VmConfig,
      ownerUid: r.owner_uid, ownerGid: r.owner_gid,
    }));
  }

  /** The id a name has had before, or the next free one; ids are never reused by another name. */
  vmClaimId(name: string): number {
    return this.db.transaction(() => {
      const known = this.stmts.idOf.get(name);
      if (known) return known.id;
      const id = (this.stmts.maxId.get()?.m ?? 0) + 1;
      this.stmts.claim.run(name, id);
      return id;
    })();
  }

  /** The id a name already has, if any: a start that fails gives back only an id it claimed itself. */
  vmIdOf(name: string): number | undefined {
    return this.stmts.idOf.get(name)?.id;
  }

  /** Gives back an id claimed for a VM that never started, so a refused `vmctl start` uses up no id. */
  vmUnclaimId(name: string, id: number): void {
    this.stmts.unclaim.run(name, id);
  }

  /**
   * Gives `name` the id `id` if no VM record holds it (a received guest keeps the id it had, and with it its
   * local addresses); a name that had the id before loses it, and `name`'s own earlier id is free for later names
   * (the one exception to ids never being reused by another name: the guest moved away). False when taken.
   */
  vmClaimIdAs(name: string, id: number): boolean {
    return this.db.transaction(() => {
      if (this.db.prepare('SELECT 1 FROM vm WHERE id = ?').get(id) !== undefined) return false;
      this.db.prepare('DELETE FROM vm_id WHERE id = ? OR name = ?').run(id, name);
      this.stmts.claim.run(name, id);
      return true;
    })();
  }

  vmPut(rec: VmRecord): void {
    this.stmts.upsertVm.run({
      id: rec.id, name: rec.name, origin: rec.origin, config: JSON.stringify(rec.config),
      ownerUid: rec.ownerUid, ownerGid: rec.ownerGid, now: new Date().toISOString(),
    });
  }

  vmDelete(id: number): void {
    this.stmts.deleteVm.run(id);
  }

  runtimeList(): VmRuntime[] {
    return this.stmts.runtimes.all().map((r) => ({
      vmId: r.vm_id, state: r.state, pid: r.pid, uid: r.uid, runDir: r.run_dir, qmpSocket: r.qmp_socket,
      consoleSocket: r.console_socket, startedAt: r.started_at, restarts: r.restarts, lastStartMs: r.last_start_ms,
      bootOnce: r.boot_once,
    }));
  }

  runtimePut(rt: VmRuntime): void {
    this.stmts.putRuntime.run({ ...rt });
  }

  runtimeSetState(vmId: number, state: RuntimeState): void {
    this.stmts.setState.run(state, vmId);
  }

  runtimeDelete(vmId: number): void {
    this.stmts.deleteRuntime.run(vmId);
  }

  event(vmId: number | null, kind: string, detail: string | null = null): void {
    this.stmts.event.run(new Date().toISOString(), vmId, kind, detail);
  }

  /** Bridges, VXLAN ports and namespaces vmd created (and so may remove). */
  ownedList(): OwnedNet[] {
    return this.stmts.owned.all().map((r) => ({ kind: r.kind, name: r.name, netns: r.netns === '' ? null : r.netns }));
  }

  ownedAdd(o: OwnedNet): void {
    this.stmts.own.run(o.kind, o.name, o.netns ?? '');
  }

  ownedRemove(o: OwnedNet): void {
    this.stmts.disown.run(o.kind, o.name, o.netns ?? '');
  }

  trimEvents(): void {
    this.stmts.trimEvents.run();
  }

  close(): void {
    this.db.close();
  }
}
