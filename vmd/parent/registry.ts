// The VM registry: every VM the parent knows, the one owner of their states, and the status listing control serves.
// A change of what `vmctl status` shows is reported by the entries themselves, so the listing is never stale.

import { DEFAULT_MEMORY } from '../../share/config.js';
import { VmdError } from '../../share/errors.js';
import type { VmInfo, VmState } from '../../share/protocol.js';
import { systemUserDb, type UserDb } from '../../share/users.js';
import type { RuntimeState, StateDb, VmRecord, VmRuntime } from '../db.js';
import { logWarn } from '../log.js';
import { ResidentMemory } from '../status.js';
import { ownerString } from './access.js';

/** The reboot rate limit's memory: restarts in a row less than 6 s after the previous start, and that start. */
export interface RestartCount {
  readonly quick: number;
  readonly lastStartMs: number | null;
}

/**
 * A VM as the parent knows it. What `vmctl status` shows (record, runtime, state) is behind setters that report each
 * change, so control's copy of the listing is republished without anybody having to remember to. The state itself
 * is moved only by VmRegistry.setState.
 */
export class Entry {
  #record: VmRecord;
  #runtime: VmRuntime | null = null;
  /** Live state mirrored from vmm; 'waiting' for queued config VMs, 'stopped' otherwise when not running. */
  #state: VmState = 'stopped';
  /** A stop was requested (so an exit is not a reboot). */
  stopRequested = false;
  waiters: Array<{ peer: number; reqId: number; kind: 'stop' | 'wait' }> = [];
  restarts: RestartCount = { quick: 0, lastStartMs: null };
  #failure: string | null = null;

  constructor(record: VmRecord, private readonly changed: () => void) {
    this.#record = record;
  }

  get record(): VmRecord { return this.#record; }
  set record(v: VmRecord) { this.#record = v; this.changed(); }
  get runtime(): VmRuntime | null { return this.#runtime; }
  set runtime(v: VmRuntime | null) {
    this.#runtime = v;
    if (v !== null) this.restarts = { quick: v.restarts, lastStartMs: v.lastStartMs };
    this.changed();
  }
  get state(): VmState { return this.#state; }
  /** Why the last start failed, until the next start: `vmctl status` shows it. */
  get failure(): string | null { return this.#failure; }
  set failure(v: string | null) { this.#failure = v; this.changed(); }
  /** For VmRegistry.setState only: every other move goes through it. */
  moveState(v: VmState): void { this.#state = v; this.changed(); }
}

/** The parent's VMs by id; adding or removing one is a change of the status listing too. */
class EntryMap extends Map<number, Entry> {
  constructor(private readonly changed: () => void) {
    super();
  }

  override set(id: number, e: Entry): this {
    super.set(id, e);
    this.changed?.();
    return this;
  }

  override delete(id: number): boolean {
    const had = super.delete(id);
    if (had) this.changed();
    return had;
  }
}

/**
 * The moves a VM's state may make. Adoption after a vmd restart moves a `stopped` entry straight to what its QEMU is
 * doing; a received guest is `starting` again while its state streams in; a stopping guest can still be paused.
 */
export const STATE_MOVES: Readonly<Record<VmState, readonly VmState[]>> = {
  stopped: ['waiting', 'starting', 'running', 'paused', 'stopping'],
  waiting: ['stopped', 'starting'],
  starting: ['running', 'paused', 'stopped'],
  running: ['paused', 'stopping', 'stopped', 'starting'],
  paused: ['running', 'stopping', 'stopped', 'starting'],
  stopping: ['stopped', 'running', 'paused'],
};

const RUNTIME_STATES: readonly VmState[] = ['starting', 'running', 'paused', 'stopping'];

/** Whether a VM may move from one state to another (staying put is always allowed). */
export function stateMoveAllowed(from: VmState, to: VmState): boolean {
  return from === to || STATE_MOVES[from].includes(to);
}

/** CURMEM of the parent's own replies (start, receive); status listings are control's (vmd/status.ts). */
const resident = new ResidentMemory();

/** Every VM the parent knows, by id and name, and the listing control answers `vmctl status` from. */
export class VmRegistry {
  readonly entries: Map<number, Entry>;
  /** Warnings shown under `vmctl status` (another firewall dropping forwarded traffic). */
  warnings: string[] = [];
  #published: string | null = null;
  /** Told of every state move made (`vmctl events` reports pauses and resumes from here). */
  onMove: ((e: Entry, from: VmState, to: VmState) => void) | null = null;
  #scheduled = false;
  /** Called after a VM is forgotten, for what it kept outside SQLite (QEMU's logs). */
  removed: (id: number) => void = () => undefined;

  /** `forget` removes what a VM keeps outside SQLite (its UEFI variables, its cloud-init seed) when it is removed. */
  constructor(
    private readonly db: StateDb,
    private readonly sendStatus: (vms: VmInfo[], warnings: string[]) => boolean,
    private readonly forget: (id: number) => void = () => undefined,
  ) {
    this.entries = new EntryMap(() => this.changed());
  }

  /** A new entry whose changes reach the listing. */
  make(record: VmRecord): Entry {
    return new Entry(record, () => this.changed());
  }

  /** Loads the records and runtimes SQLite holds (at daemon start). */
  load(): void {
    for (const rec of this.db.vmList()) this.entries.set(rec.id, this.make(rec));
    for (const rt of this.db.runtimeList()) {
      const e = this.entries.get(rt.vmId);
      if (e !== undefined) e.runtime = rt;
    }
  }

  byName(name: string): Entry | undefined {
    for (const e of this.entries.values()) if (e.record.name === name) return e;
    return undefined;
  }

  /** A VM by id (all digits) or name, as vmctl's targets name them. */
  lookup(target: string): Entry | undefined {
    return /^\d+$/.test(target) ? this.entries.get(Number(target)) ?? this.byName(target) : this.byName(target);
  }

  require(target: string): Entry {
    const e = this.lookup(target);
    if (e === undefined) throw new VmdError('ERR_VM_NOT_FOUND', `vm "${target}": not found`);
    return e;
  }

  /** Adds a VM made by a request (start, receive, config), recorded in SQLite first. */
  add(record: VmRecord): Entry {
    this.db.vmPut(record);
    const e = this.make(record);
    this.entries.set(record.id, e);
    return e;
  }

  /** Forgets a VM: its record, its entry and its files. */
  remove(id: number): void {
    this.db.vmDelete(id);
    this.entries.delete(id);
    this.removed(id);
    this.forget(id);
  }

  /**
   * The one way a VM's state changes: checked against STATE_MOVES, then written to memory and, while the VM has a
   * runtime record, to SQLite in the same step. An illegal move is a bug: refused with ERR_INTERNAL, nothing written.
   */
  setState(e: Entry, to: VmState): void {
    const from = e.state;
    if (!stateMoveAllowed(from, to)) {
      throw new VmdError('ERR_INTERNAL', `vm "${e.record.name}": state ${from} cannot become ${to}`);
    }
    const rt = e.runtime;
    if (rt !== null && RUNTIME_STATES.includes(to) && rt.state !== to) {
      this.db.runtimeSetState(e.record.id, to as RuntimeState);
      e.runtime = { ...rt, state: to as RuntimeState };
    }
    e.moveState(to);
    if (from !== to) this.onMove?.(e, from, to);
  }

  /** setState for moves reported by others (vmm's events): an illegal one is logged, not thrown. */
  trySetState(e: Entry, to: VmState): void {
    try {
      this.setState(e, to);
    } catch (err) {
      logWarn((err as Error).message);
    }
  }

  info(e: Entry, users: UserDb = systemUserDb(), withCurmem = true): VmInfo {
    const rt = e.runtime;
    // As soon as QEMU exists it has a pid worth showing, even while vmm is still adopting it.
    const running = rt !== null && rt.pid !== null;
    const uid = running ? rt!.uid : e.record.ownerUid;
    const gid = e.record.ownerGid;
    return {
      id: e.record.id,
      name: e.record.name,
      pid: running ? rt!.pid : null,
      vcpus: e.record.config.cpus ?? 1,
      maxmem: e.record.config.memory ?? DEFAULT_MEMORY,
      curmem: running && withCurmem ? resident.read(rt!.pid!) : null,
      tty: running ? rt!.consoleSocket : null,
      owner: ownerString(uid, gid, users),
      uid,
      gid,
      state: e.state,
      started: running ? rt!.startedAt : null,
      origin: e.record.origin,
      ...(e.failure !== null && e.runtime === null ? { failure: e.failure } : {}),
    };
  }

  /** The listing, in id order, filtered as `vmctl status [-r] [NAME]` asks. */
  list(target?: string, runningOnly = false): VmInfo[] {
    // One name-service view per listing; its answers are cached, so owners shared by many VMs are looked up once.
    const users = systemUserDb();
    return [...this.entries.values()]
      .filter((e) => target === undefined || String(e.record.id) === target || e.record.name === target)
      .filter((e) => !runningOnly || (e.runtime !== null && e.runtime.pid !== null))
      .sort((a, b) => a.record.id - b.record.id)
      .map((e) => this.info(e, users));
  }

  /** Control's copy of the listing is republished on the next turn after a change. */
  changed(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => this.publish());
  }

  /** Publishes a pending change now: called before anything reaches a client, so replies never outrun the listing. */
  flush(): void {
    if (this.#scheduled) this.publish();
  }

  /** Forgets what control had (a new control process starts with no listing) and publishes. */
  republish(): void {
    this.#published = null;
    this.publish();
  }

  /** Sends control the listing if it differs from what control has (owner names are looked up afresh). */
  publish(): void {
    this.#scheduled = false;
    const users = systemUserDb();
    const vms = [...this.entries.values()].sort((a, b) => a.record.id - b.record.id).map((e) => this.info(e, users, false));
    const key = JSON.stringify([vms, this.warnings]);
    if (key === this.#published) return;
    if (this.sendStatus(vms, this.warnings)) this.#published = key;
  }
}
