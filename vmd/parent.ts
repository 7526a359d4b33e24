// The parent role (root): reads vm.conf, owns the SQLite state, opens images, spawns QEMU and reaps it.
// It never parses bytes from QEMU or from socket clients: control decodes requests, vmm speaks QMP.

import { spawn, type ChildProcess } from 'node:child_process';
import {
  chmodSync, chownSync, closeSync, constants as fsc, readSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, statSync,
  renameSync, unlinkSync, writeFileSync,
} from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import {
  DEFAULT_MEMORY, DEFAULT_STAGGER_DELAY, MAX_DISKS, MAX_NICS,
  type Config, type DiskConfig, type InstanceFlag, type InterfaceConfig, type VmConfig,
} from '../share/config.js';
import { VmdError, toVmdError, type ErrorCode, type VmdErrorData } from '../share/errors.js';
import { encodeFrame } from '../share/frame.js';
import {
  isControlToParent, isVmmToParent,
  type ControlToParent, type ParentToControl, type ParentToVmm, type VmmToParent,
} from '../share/ipc.js';
import type { ControlRequest, ControlResponse, StartOptions, VmInfo, VmState } from '../share/protocol.js';
import { encodeStreamHeader, type StreamConfig } from '../share/stream.js';
import { stableMac } from './net/addr.js';
import { socketPath, stateDir as defaultStateDir, vmdUser } from '../share/paths.js';
import { getpwnam, getpwuid, systemUserDb, type UserDb } from '../share/users.js';
import { parseConfigFile, type Diagnostic } from '../grammar/parse.js';
import { probeAccelCached } from './accel.js';
import { StateDb, type VmRecord, type VmRuntime } from './db.js';
import { logInfo, logSetVerbose, logWarn } from './log.js';
import { RestartBudget, RoleChannel } from './proc.js';
import { ResidentMemory } from './status.js';
import { Network } from './network.js';
import { Captures } from './capture.js';
import { diskFormatOf } from '../share/diskformat.js';
import { qemuArgv, type QemuBacking, type QemuNic, type QemuSpec } from './qemu-argv.js';
import { execFileSync } from 'node:child_process';

const RESTART_WINDOW_MS = 6000;
const RESTART_LIMIT = 3;

export interface ParentOptions {
  readonly file: string;
  readonly macros: Readonly<Record<string, string>>;
  readonly verbose: number;
  /** Called once the socket accepts connections (the daemonising launcher waits for it). */
  readonly onReady?: () => void;
}

/**
 * A VM as the parent knows it. What `vmctl status` shows (record, runtime, state) is behind setters that report each
 * change, so control's copy of the listing (vmd/status.ts) is republished without anybody having to remember to.
 */
class Entry {
  #record: VmRecord;
  #runtime: VmRuntime | null = null;
  /** Live state mirrored from vmm; 'waiting' for queued config VMs, 'stopped' otherwise when not running. */
  #state: VmState = 'stopped';
  child: ChildProcess | null = null;
  /** A stop was requested (so an exit is not a reboot). */
  stopRequested = false;
  waiters: Array<{ peer: number; reqId: number; kind: 'stop' | 'wait' }> = [];
  /** Restarts in a row that came less than 6 s after the previous start, for the reboot rate limit. */
  quickRestarts = 0;
  lastStartMs: number | null = null;

  constructor(record: VmRecord, private readonly changed: () => void) {
    this.#record = record;
  }

  get record(): VmRecord { return this.#record; }
  set record(v: VmRecord) { this.#record = v; this.changed(); }
  get runtime(): VmRuntime | null { return this.#runtime; }
  set runtime(v: VmRuntime | null) { this.#runtime = v; this.changed(); }
  get state(): VmState { return this.#state; }
  set state(v: VmState) { this.#state = v; this.changed(); }
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

interface Identity {
  readonly uid: number;
  readonly gid: number;
}

/** Format a shell-free message for a start failure from QEMU's own log. */
function qemuLogTail(path: string): string {
  try {
    const text = readFileSync(path, 'utf8').trim();
    const lines = text.split('\n').filter((l) => l.length > 0);
    return lines.slice(-3).join('; ').replace(/^qemu-system-x86_64: /, '');
  } catch {
    return '';
  }
}

function errnoMessage(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ENOENT': return 'no such file';
    case 'EACCES': return 'permission denied';
    case 'EISDIR': return 'is a directory';
    case 'ELOOP': return 'too many symbolic links';
    default: return err instanceof Error ? err.message : String(err);
  }
}

/** Whether uid (with its groups) may read (and write) path, by the mode bits, as OpenBSD's vm_checkaccess. */
function mayAccess(path: string, uid: number, gids: readonly number[], write: boolean): boolean {
  if (uid === 0) return true;
  const st = statSync(path);
  if (!st.isFile()) return false;
  const need = write ? 0o6 : 0o4;
  let bits: number;
  if (st.uid === uid) bits = (st.mode >> 6) & 7;
  else if (gids.includes(st.gid)) bits = (st.mode >> 3) & 7;
  else bits = st.mode & 7;
  return (bits & need) === need;
}

/** The user's primary and supplementary groups, plus the gid it connected with. */
function groupsOf(uid: number, gid: number): number[] {
  const users = systemUserDb();
  const user = users.getpwuid(uid);
  const gids = new Set<number>([gid]);
  if (user !== null) {
    gids.add(user.gid);
    for (const g of users.memberGids(user.name)) gids.add(g);
  }
  return [...gids];
}

/** OpenBSD's owner column: `user[:group]`, numeric when unknown, at most 15 characters. */
function ownerString(uid: number, gid: number | null, users: UserDb = systemUserDb()): string {
  const user = users.getpwuid(uid)?.name ?? String(uid);
  const group = gid === null ? '' : `:${users.getgrgid(gid)?.name ?? String(gid)}`;
  return `${user}${group}`.slice(0, 15);
}

/** CURMEM of the parent's own replies (start, receive); status listings are control's (vmd/status.ts). */
const resident = new ResidentMemory();

/** Whether pid is the QEMU vmd started for this VM (pids get reused; the process name tells). */
function isOurQemu(pid: number, vmId: number): boolean {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes(`process=vmd-${vmId}-`);
  } catch {
    return false;
  }
}

/** Runs the parent until SIGTERM; resolves with the exit status. */
export async function parentMain(options: ParentOptions): Promise<number> {
  logSetVerbose(options.verbose);
  const root = process.getuid?.() === 0;
  const stateDirPath = defaultStateDir();
  const runRoot = join(stateDirPath, 'run');
  const sockPath = socketPath();

  let ident: Identity | null = null;
  if (root) {
    const u = getpwnam(vmdUser());
    if (u === null) {
      logWarn(`unknown user ${vmdUser()}: create it (share/setup does) or set VMD_USER`);
      return 1;
    }
    ident = { uid: u.uid, gid: u.gid };
  }
  const qemuIdentity: Identity = ident ?? { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  // Who configured VMs belong to and are started as when vm.conf says nothing: root, or a rootless daemon's user.
  const selfUid = process.getuid?.() ?? 0;

  const loaded = loadConfig(options.file, options.macros);
  if (loaded.config === null) {
    for (const d of loaded.diagnostics) logWarn(formatDiag(d));
    return 1;
  }
  let config: Config = loaded.config;

  mkdirSync(runRoot, { recursive: true, mode: 0o755 });
  const db = new StateDb(stateDirPath);
  const network = new Network(config, db, stateDirPath, root);
  const captures = new Captures();
  let networkWarnings: string[] = [];
  // Control's copy of the status listing: republished on the next turn after a change, and at once before any reply
  // to a client, so whatever a reply reports done shows in the client's next `vmctl status`.
  let statusPublished: string | null = null;
  let statusScheduled = false;
  /** Publishes a pending change now: called before anything reaches a client. */
  const flushStatus = (): void => {
    if (statusScheduled) publishStatus();
  };
  const statusChanged = (): void => {
    if (statusScheduled) return;
    statusScheduled = true;
    setImmediate(() => publishStatus());
  };
  const entries = new EntryMap(statusChanged);
  const byName = (name: string): Entry | undefined => [...entries.values()].find((e) => e.record.name === name);
  const lookup = (target: string): Entry | undefined =>
    /^\d+$/.test(target) ? entries.get(Number(target)) ?? byName(target) : byName(target);

  for (const rec of db.vmList()) {
    entries.set(rec.id, new Entry(rec, statusChanged));
  }
  for (const rt of db.runtimeList()) {
    const e = entries.get(rt.vmId);
    if (e !== undefined) e.runtime = rt;
  }

  // `accel auto`: probed once per daemon, in the background from its start, with the configured QEMU; the answer is
  // kept in the state directory for as long as the host boot, the QEMU binary and /dev/kvm stay the same.
  let accelProbe: Promise<'kvm' | 'tcg'> | null = null;
  const autoAccel = (): Promise<'kvm' | 'tcg'> => {
    accelProbe ??= probeAccelCached(join(stateDirPath, 'accel.json'), config.global.qemu === null ? {} : { qemu: config.global.qemu })
      .then((r) => {
        logInfo(`accelerator: ${r.accel} (${r.reason}${r.cached ? ', remembered from an earlier probe' : ''})`);
        return r.accel;
      });
    return accelProbe;
  };
  const accelFor = async (vm: VmConfig): Promise<'kvm' | 'tcg'> => {
    const wanted = vm.accel ?? config.global.accel;
    return wanted === 'auto' ? autoAccel() : wanted;
  };

  // ---- roles ----
  let control: RoleChannel<ControlToParent, ParentToControl> | null = null;
  let vmm: RoleChannel<VmmToParent, ParentToVmm> | null = null;
  let shuttingDown = false;
  // Pending from a vmm's death until its successor is ready, so requests wait for the new vmm instead of failing.
  let vmmReady: Promise<void> = Promise.resolve();
  let vmmReadyResolve: (() => void) | null = null;
  const vmmDown = (): void => {
    if (vmmReadyResolve !== null) return;
    vmmReady = new Promise((r) => { vmmReadyResolve = r; });
  };
  const vmmUp = (): void => {
    vmmReadyResolve?.();
    vmmReadyResolve = null;
  };
  /** Guests being handed to a (new) vmm: what is asked of such a guest waits for its adoption. */
  const adoptions = new Map<number, Promise<void>>();
  /** Waits until a vmm runs and, with a guest's id, has adopted that guest; ERR_INTERNAL after timeoutMs. */
  const untilVmm = async (vmId: number | null, timeoutMs: number): Promise<void> => {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new VmdError('ERR_INTERNAL', 'vmm process is not running', { hint: 'see vmd\'s log' })), timeoutMs);
    });
    try {
      await Promise.race([vmmReady, late]);
      // Looked up only now: a restarted vmm's adoptions begin as it becomes ready.
      const adopting = vmId === null ? undefined : adoptions.get(vmId);
      if (adopting !== undefined) await Promise.race([adopting, late]);
    } finally {
      clearTimeout(timer);
    }
    if (vmm === null) throw new VmdError('ERR_INTERNAL', 'vmm process is not running', { hint: 'see vmd\'s log' });
  };
  let nextReq = 1;
  const pendingVmm = new Map<number, { resolve: (m: { error: VmdErrorData | null; state?: VmState }) => void }>();

  /**
   * One request to vmm and its answer. `forVm`: a running guest's id, so the request waits for its adoption (a vmm
   * restart may be under way); `handle`: a client socket that travels with the request.
   */
  const vmmCall = async (
    make: (req: number) => ParentToVmm,
    { timeoutMs = 15_000, handle, forVm = null }: { timeoutMs?: number; handle?: Socket; forVm?: number | null } = {},
  ): Promise<{ state?: VmState }> => {
    await untilVmm(forVm, timeoutMs);
    return new Promise((resolve, reject) => {
      const req = nextReq++;
      const timer = setTimeout(() => {
        pendingVmm.delete(req);
        reject(new VmdError('ERR_INTERNAL', 'vmm process did not answer'));
      }, timeoutMs);
      pendingVmm.set(req, {
        resolve: (m) => {
          clearTimeout(timer);
          pendingVmm.delete(req);
          if (m.error !== null) reject(VmdError.from(m.error));
          else resolve(m.state === undefined ? {} : { state: m.state });
        },
      });
      if (vmm === null) reject(new VmdError('ERR_INTERNAL', 'vmm process is not running'));
      else vmm.send(make(req), handle);
    });
  };

  // A role that dies is restarted, within a budget; past it the daemon exits in order (guests keep running).
  const vmmBudget = new RestartBudget();
  const controlBudget = new RestartBudget();
  let vmmGeneration = 0;
  const startVmm = (): void => {
    const generation = ++vmmGeneration;
    vmmDown();
    vmm = new RoleChannel<VmmToParent, ParentToVmm>(
      { role: 'vmm', uid: ident?.uid ?? null, gid: ident?.gid ?? null, verbose: options.verbose },
      isVmmToParent,
      (msg) => {
        switch (msg.type) {
          case 'vmm.ready':
            vmm?.send({ type: 'vmm.config', verbose: options.verbose, stopTimeoutMs: stopTimeoutMs() });
            vmmUp();
            // A restarted vmm knows nothing: hand it every running guest again. At daemon start the
            // reconciliation below does this, after it has told live guests from dead ones.
            if (generation > 1) {
              for (const e of entries.values()) {
                const pid = e.runtime?.pid;
                if (pid != null && e.state !== 'starting' && isOurQemu(pid, e.record.id)) void adoptGuest(e, true);
              }
            }
            break;
          case 'vm.result':
            pendingVmm.get(msg.req)?.resolve(msg);
            break;
          case 'vm.exited':
            onGuestExit(msg.vmId, msg.pid, msg.reason);
            break;
          case 'vm.state': {
            const e = entries.get(msg.vmId);
            if (e !== undefined && e.runtime !== null && (msg.state === 'running' || msg.state === 'paused')) {
              e.state = msg.state;
              db.runtimeSetState(e.record.id, msg.state);
            }
            break;
          }
        }
      },
      () => {
        vmm = null;
        vmmDown();
        for (const p of pendingVmm.values()) p.resolve({ error: { code: 'ERR_INTERNAL', message: 'vmm process exited' } });
        if (shuttingDown) return;
        if (!vmmBudget.spend()) {
          fatal(new VmdError('ERR_INTERNAL', `vmm process: died ${vmmBudget.max + 1} times within ${vmmBudget.windowMs / 1000} s, giving up`));
          return;
        }
        logWarn('restarting the vmm process');
        setTimeout(startVmm, 200);
      },
    );
  };

  let server: Server | null = null;
  let heldConnections: Socket[] = [];
  const listen = async (): Promise<Server> => {
    // A live daemon on the socket is an error; a stale socket file is replaced.
    if (existsSync(sockPath)) {
      const alive = await new Promise<boolean>((resolve) => {
        const s = connect(sockPath);
        s.once('connect', () => { s.destroy(); resolve(true); });
        s.once('error', () => resolve(false));
      });
      if (alive) throw new VmdError('ERR_INVALID', `socket ${sockPath}: another vmd is running`);
      unlinkSync(sockPath);
    }
    mkdirSync(dirname(sockPath), { recursive: true });
    // Bound under a temporary name and renamed into place: the new socket replaces a stale one atomically,
    // and libuv unlinks the *bound* path when the server closes; that must not be the real socket.
    const tmp = `${sockPath}.${process.pid}.tmp`;
    try { unlinkSync(tmp); } catch { /* none */ }
    // The parent accepts and hands every connection to control unread (paused): it never reads a client's
    // bytes. Handing control the listening socket instead lost connections: a received server accepts before
    // the message carrying it is delivered, and such a connection had no listener and hung its client.
    const srv = createServer({ pauseOnConnect: true }, (sock) => {
      if (control !== null) control.send({ type: 'control.connection' }, sock);
      // While a control is being restarted, a few clients wait for it rather than being hung up on.
      else if (heldConnections.length < 64) heldConnections.push(sock);
      else sock.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(tmp, () => resolve());
    });
    // OpenBSD: 0660, root:wheel unless `socket owner` says otherwise.
    const owner = config.global.socketOwner;
    chmodSync(tmp, 0o660);
    if (root) chownSync(tmp, owner?.uid ?? 0, owner?.gid ?? 0);
    renameSync(tmp, sockPath);
    return srv;
  };

  const startControl = async (): Promise<void> => {
    // Bound once: a restarted control gets the connections of the same socket.
    server ??= await listen();
    control = new RoleChannel<ControlToParent, ParentToControl>(
      { role: 'control', uid: ident?.uid ?? null, gid: ident?.gid ?? null, verbose: options.verbose },
      isControlToParent,
      (msg, handle) => onControl(msg, handle as Socket | undefined),
      () => {
        control = null;
        if (shuttingDown) return;
        if (!controlBudget.spend()) {
          fatal(new VmdError('ERR_INTERNAL', `control process: died ${controlBudget.max + 1} times within ${controlBudget.windowMs / 1000} s, giving up`));
          return;
        }
        logWarn('restarting the control process');
        setTimeout(() => void startControl().catch((err: unknown) => fatal(err)), 200);
      },
    );
    control.send({ type: 'control.config', verbose: options.verbose });
    for (const sock of heldConnections.splice(0)) {
      if (!sock.destroyed) control.send({ type: 'control.connection' }, sock);
    }
  };

  let exitResolve!: (code: number) => void;
  const exited = new Promise<number>((r) => { exitResolve = r; });
  const fatal = (err: unknown): void => {
    logWarn(`fatal: ${toVmdError(err).message}`);
    void shutdown(1);
  };

  // ---- VM registration ----
  const registerConfig = (cfg: Config, origin: 'config' | 'load'): void => {
    const byParent = new Map(cfg.vms.map((v) => [v.name, v]));
    for (const vm of cfg.vms) {
      const existing = byName(vm.name);
      if (existing !== undefined) {
        // Running VMs keep their configuration (OpenBSD); `load` skips names that exist.
        if (origin === 'load' || existing.runtime !== null) continue;
      }
      const effective = vm.instanceOf === null ? vm : inherit(byParent.get(vm.instanceOf) ?? byName(vm.instanceOf)?.record.config ?? null, vm);
      const id = db.vmClaimId(vm.name);
      const rec: VmRecord = {
        id, name: vm.name, origin: vm.instanceOf === null ? origin : 'instance', config: effective,
        ownerUid: effective.owner?.uid ?? selfUid, ownerGid: effective.owner?.gid ?? null,
      };
      db.vmPut(rec);
      const e = entries.get(id);
      if (e !== undefined) e.record = rec;
      else entries.set(id, new Entry(rec, statusChanged));
    }
  };

  const unregisterStoppedConfigVms = (): void => {
    for (const e of [...entries.values()]) {
      if (e.runtime === null && e.state !== 'starting') {
        db.vmDelete(e.record.id);
        entries.delete(e.record.id);
      }
    }
  };

  // ---- staggered start ----
  const waiting: number[] = [];
  let staggerTimer: NodeJS.Timeout | null = null;
  const queueEnabled = (cfg: Config): void => {
    for (const vm of cfg.vms) {
      const e = byName(vm.name);
      if (e === undefined || !vm.enabled || e.runtime !== null || waiting.includes(e.record.id)) continue;
      e.state = 'waiting';
      waiting.push(e.record.id);
    }
    if (staggerTimer === null) startBatch();
  };
  const startBatch = (): void => {
    staggerTimer = null;
    const parallel = config.global.staggered?.parallel ?? cpus().length;
    const delay = config.global.staggered?.delay ?? DEFAULT_STAGGER_DELAY;
    for (let n = 0; n < parallel && waiting.length > 0; n++) {
      const id = waiting.shift()!;
      const e = entries.get(id);
      if (e === undefined || e.state !== 'waiting') { n--; continue; }
      e.state = 'stopped';
      vmStart(e, selfUid, {}).catch((err: unknown) => logWarn(`vm "${e.record.name}": ${toVmdError(err).message}`));
    }
    if (waiting.length > 0 && !shuttingDown) staggerTimer = setTimeout(startBatch, delay * 1000);
  };

  // ---- starting a guest ----
  const vmStart = async (e: Entry, uid: number, opts: { bootOnce?: StartOptions['bootDevice']; restart?: boolean; incoming?: boolean }): Promise<void> => {
    if (e.runtime !== null || e.state === 'starting') throw new VmdError('ERR_VM_RUNNING', `vm "${e.record.name}": already running`);
    const vm = e.record.config;
    const now = Date.now();
    if (opts.restart) {
      // OpenBSD's rule: a reboot less than 6 s after the previous start counts; the third such one is refused.
      if (e.lastStartMs !== null && now - e.lastStartMs < RESTART_WINDOW_MS) e.quickRestarts++;
      else e.quickRestarts = 0;
      if (e.quickRestarts >= RESTART_LIMIT) {
        throw new VmdError('ERR_RATE_LIMIT', `vm ${e.record.id}: restarted too quickly`);
      }
    } else e.quickRestarts = 0;
    e.lastStartMs = now;
    if (vm.sev || vm.seves) {
      throw new VmdError('ERR_UNSUPPORTED', `vm "${vm.name}": sev${vm.seves ? 'es' : ''}: not supported on this host`, {
        hint: 'remove sev/seves from the vm block',
      });
    }
    if (vm.boot === null && vm.disks.length === 0 && vm.cdrom === null) {
      throw new VmdError('ERR_NO_BOOT', `vm "${vm.name}": no kernel or disk/cdrom specified`);
    }
    // A disk another running guest has open would fail in QEMU's image lock; say which guest holds it.
    for (const d of vm.disks) {
      const holder = [...entries.values()].find((o) => o !== e && o.runtime !== null && o.record.config.disks.some((od) => od.path === d.path));
      if (holder !== undefined) {
        throw new VmdError('ERR_DISK_LOCKED', `vm "${vm.name}": disk ${d.path}: in use by vm "${holder.record.name}"`, {
          hint: 'give each guest its own disk, e.g. an overlay: vmctl create -b BASE NEW.qcow2',
        });
      }
    }
    e.state = 'starting';
    const fds: number[] = [];
    const runDir = join(runRoot, String(e.record.id));
    let child: ChildProcess | null = null;
    let netUp = false;
    try {
      const gids = groupsOf(uid, getpwuid(uid)?.gid ?? 0);
      // Descriptors QEMU inherits, in stdio order from fd 3: the spec names them by QEMU's numbers.
      const passed: number[] = [];
      const pass = (fd: number): number => {
        passed.push(fd);
        return 3 + passed.length - 1;
      };
      const openChecked = (path: string, what: string, code: ErrorCode, write: boolean): number => {
        let fd: number;
        try {
          if (!mayAccess(path, uid, gids, write)) {
            throw Object.assign(new Error('permission denied'), { code: 'EACCES' });
          }
          fd = openSync(path, (write ? fsc.O_RDWR : fsc.O_RDONLY) | fsc.O_NOCTTY | fsc.O_NONBLOCK);
        } catch (err) {
          throw new VmdError(code, `vm "${vm.name}": ${what} ${path}: ${errnoMessage(err)}`);
        }
        fds.push(fd);
        return fd;
      };
      const disks = vm.disks.map((d: DiskConfig) => {
        const fd = pass(openChecked(d.path, 'disk', 'ERR_DISK_MISSING', true));
        let chain: Array<{ path: string; format: 'raw' | 'qcow2' }> = [];
        if (d.format === 'qcow2') {
          try {
            chain = backingChain(d.path);
          } catch (err) {
            throw new VmdError('ERR_DISK_MISSING', `vm "${vm.name}": disk ${d.path}: ${errnoMessage(err).split('\n')[0]}`);
          }
        }
        // Backing files are opened read-only by the parent too, so QEMU needs no access of its own.
        const backing = chain.map((b) => ({ fd: pass(openChecked(b.path, 'disk base', 'ERR_DISK_MISSING', false)), format: b.format }));
        return { fd, format: d.format, path: d.path, backing };
      });
      let cdrom: { fd: number; path: string } | null = null;
      if (vm.cdrom !== null) {
        try {
          if (!statSync(vm.cdrom).isFile()) throw new VmdError('ERR_CDROM_INVALID', `vm "${vm.name}": cdrom ${vm.cdrom}: not a regular file`);
        } catch (err) {
          if (err instanceof VmdError) throw err;
          throw new VmdError('ERR_CDROM_MISSING', `vm "${vm.name}": cdrom ${vm.cdrom}: ${errnoMessage(err)}`);
        }
        cdrom = { fd: pass(openChecked(vm.cdrom, 'cdrom', 'ERR_CDROM_MISSING', false)), path: vm.cdrom };
      }
      // QEMU reads -kernel via /proc/self/fd/N, and the kernel still checks the file's own mode bits there:
      // a file QEMU's user could not read is handed over as a private copy in the guest's run directory.
      const bootFile = (p: string | null, what: 'kernel' | 'initrd'): number | null => {
        if (p === null) return null;
        const code: ErrorCode = what === 'kernel' ? 'ERR_BIOS_MISSING' : 'ERR_INVALID';
        const fd = openChecked(p, what, code, false);
        if (!root || mayAccess(p, qemuIdentity.uid, [qemuIdentity.gid], false)) return pass(fd);
        mkdirSync(runDir, { recursive: true, mode: 0o700 });
        const copy = join(runDir, what);
        writeFileSync(copy, readFileSync(fd), { mode: 0o644 });
        const cfd = openSync(copy, fsc.O_RDONLY);
        fds.push(cfd);
        unlinkSync(copy);
        return pass(cfd);
      };
      rmSync(runDir, { recursive: true, force: true });
      const kernel = bootFile(vm.boot, 'kernel');
      const initrd = bootFile(vm.initrd, 'initrd');

      mkdirSync(runDir, { recursive: true, mode: 0o700 });
      chownSync(runDir, qemuIdentity.uid, qemuIdentity.gid);
      const logPath = join(runDir, 'qemu.log');
      const logFd = openSync(logPath, 'w', 0o640);
      fds.push(logFd);
      const qmpSocket = join(runDir, 'qmp.sock');
      const consoleSocket = join(runDir, 'console');
      const chosen = await accelFor(vm);
      // The guest's links exist before QEMU does: taps reach it as inherited fds like the images.
      const net = await network.vmUp(e.record.id, vm);
      netUp = true;
      fds.push(...net.fds);
      const nics: QemuNic[] = net.nics.map((n) => (n.kind === 'tap'
        ? { kind: 'tap', fd: pass(n.hostFd), mac: n.mac }
        : { kind: 'user', mac: n.mac, forwards: n.forwards.map((f) => ({ proto: f.proto, hostPort: f.hostPort, guestPort: f.guestPort })) }));
      const spec = qemuSpecFor(e.record.id, vm, { accel: chosen, qmpSocket, consoleSocket, disks, cdrom, kernel, kernelIsLinux: vm.boot !== null && isKernelImage(vm.boot), initrd, nics, bootOnce: opts.bootOnce ?? null, sandbox: root });
      // A received guest starts paused, waiting for its state (vmm hands QEMU the stream with migrate-incoming).
      const argv = qemuArgv(opts.incoming ? { ...spec, incoming: 'defer', paused: true } : spec);
      const startedAt = new Date().toISOString();
      const rt: VmRuntime = {
        vmId: e.record.id, state: 'starting', pid: null, uid, runDir, qmpSocket, consoleSocket,
        startedAt, restarts: e.quickRestarts, lastStartMs: now, bootOnce: opts.bootOnce ?? null,
      };
      // Intent first: a crash between here and the spawn leaves a record the next start cleans up.
      db.runtimePut(rt);
      e.runtime = rt;
      e.stopRequested = false;
      child = spawn(config.global.qemu ?? 'qemu-system-x86_64', argv, {
        detached: true,
        stdio: ['ignore', logFd, logFd, ...passed],
        ...(root ? { uid: qemuIdentity.uid, gid: qemuIdentity.gid } : {}),
        cwd: runDir,
      });
      const spawnError = await new Promise<Error | null>((resolve) => {
        child!.once('spawn', () => resolve(null));
        child!.once('error', (err) => resolve(err));
      });
      if (spawnError !== null) throw new VmdError('ERR_QEMU', `vm "${vm.name}": qemu: ${errnoMessage(spawnError)}`);
      child.unref();
      const pid = child.pid!;
      e.child = child;
      const running: VmRuntime = { ...rt, pid };
      db.runtimePut(running);
      e.runtime = running;
      child.on('exit', () => {
        // QEMU died before vmm adopted it, or vmm is gone: the parent reaps and reports it too.
        setTimeout(() => onGuestExit(e.record.id, pid, 'exited'), 300);
      });
      db.event(e.record.id, 'start', `pid ${pid} uid ${uid}`);
      const res = await vmmCall((req) => ({
        type: 'vm.adopt', req,
        guest: { vmId: e.record.id, name: vm.name, pid, qmpSocket, consoleSocket, adopted: false },
      }));
      e.state = res.state ?? 'running';
      db.runtimeSetState(e.record.id, e.state === 'paused' ? 'paused' : 'running');
      e.runtime = { ...running, state: e.state === 'paused' ? 'paused' : 'running' };
      logInfo(`started ${vm.name} (vm ${e.record.id}) successfully, tty ${consoleSocket}`);
    } catch (err) {
      const tail = e.runtime !== null ? qemuLogTail(join(runDir, 'qemu.log')) : '';
      if (child?.pid !== undefined) {
        try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ }
      }
      cleanupRuntime(e);
      if (netUp) await network.vmDown(e.record.id).catch(() => undefined);
      e.state = 'stopped';
      const ve = toVmdError(err, 'ERR_QEMU');
      if (tail.length > 0 && ve.code === 'ERR_QEMU') {
        const locked = /Failed to get "write" lock|Is another process using the image/.test(tail);
        throw new VmdError(locked ? 'ERR_DISK_LOCKED' : 'ERR_QEMU', `vm "${vm.name}": qemu: ${tail}`);
      }
      throw ve;
    } finally {
      for (const fd of fds) {
        try { closeSync(fd); } catch { /* already closed */ }
      }
    }
  };

  const cleanupRuntime = (e: Entry): void => {
    if (e.runtime !== null) {
      rmSync(e.runtime.runDir, { recursive: true, force: true });
      db.runtimeDelete(e.record.id);
    }
    e.runtime = null;
    e.child = null;
    // Before the links go: a capture on a vanished tap would end anyway, but not as promptly.
    captures.stopVm(e.record.id);
    network.vmDown(e.record.id).catch((err: unknown) => logWarn(`vm "${e.record.name}": network: ${toVmdError(err).message}`));
  };

  /** Waits while a start of the VM is in progress (bounded); the caller looks at the state afterwards. */
  const untilStarted = async (e: Entry, timeoutMs: number): Promise<void> => {
    const until = Date.now() + timeoutMs;
    while (e.state === 'starting' && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  };

  /** Hands a running guest to vmm; until that is done, requests for the guest wait (see untilVmm). */
  const adoptGuest = (e: Entry, adopted: boolean): Promise<void> => {
    const id = e.record.id;
    const p: Promise<void> = adoptGuestNow(e, adopted).finally(() => {
      if (adoptions.get(id) === p) adoptions.delete(id);
    });
    adoptions.set(id, p);
    return p;
  };
  const adoptGuestNow = async (e: Entry, adopted: boolean): Promise<void> => {
    const rt = e.runtime;
    if (rt === null || rt.pid === null) return;
    try {
      const res = await vmmCall((req) => ({
        type: 'vm.adopt', req,
        guest: { vmId: e.record.id, name: e.record.name, pid: rt.pid!, qmpSocket: rt.qmpSocket, consoleSocket: rt.consoleSocket, adopted },
      }));
      e.state = res.state ?? 'running';
      if (rt.state === 'stopping') e.state = 'stopping';
    } catch (err) {
      logWarn(`vm "${e.record.name}": cannot re-adopt pid ${rt.pid}: ${toVmdError(err).message}; terminating it`);
      try { process.kill(rt.pid, 'SIGKILL'); } catch { /* gone */ }
      onGuestExit(e.record.id, rt.pid, 'unadoptable');
    }
  };

  const onGuestExit = (vmId: number, pid: number, reason: string): void => {
    const e = entries.get(vmId);
    if (e === undefined || e.runtime === null || e.runtime.pid !== pid) return;
    if (vmm !== null) vmm.send({ type: 'vm.forget', vmId });
    const reboot = reason === 'guest-reset' && !e.stopRequested && e.runtime.bootOnce === null;
    const starter = e.runtime.uid;
    cleanupRuntime(e);
    e.state = 'stopped';
    db.event(vmId, 'exit', reason);
    logInfo(`vm "${e.record.name}" (vm ${vmId}) ${reboot ? 'rebooted' : `terminated: ${reason}`}`);
    if (reboot) {
      // A guest reboot is a restart of the same VM, subject to the rate limit.
      vmStart(e, starter, { restart: true }).catch((err: unknown) => {
        logWarn(`vm "${e.record.name}": ${toVmdError(err).message}`);
        e.state = 'stopped';
        finishStopped(e);
      });
      return;
    }
    finishStopped(e);
  };

  const finishStopped = (e: Entry): void => {
    for (const w of e.waiters.splice(0)) {
      respond(w.peer, w.kind === 'stop'
        ? { type: 'vm.stop.response', id: w.reqId, vmId: e.record.id, name: e.record.name, result: 'terminated' }
        : { type: 'vm.wait.response', id: w.reqId, vmId: e.record.id, name: e.record.name }, false);
    }
    // OpenBSD removes VMs created by vmctl start when they terminate; configured ones stay, stopped.
    if (e.record.origin === 'adhoc') {
      db.vmDelete(e.record.id);
      entries.delete(e.record.id);
    }
  };

  // ---- requests ----
  const respond = (peer: number, response: ControlResponse, close: boolean): void => {
    flushStatus();
    control?.send({ type: 'control.response', peer, response, close });
  };
  const fail = (peer: number, id: number, err: unknown): void => {
    respond(peer, { type: 'error', id, error: toVmdError(err).toJSON() }, false);
  };

  const info = (e: Entry, users: UserDb = systemUserDb(), withCurmem = true): VmInfo => {
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
    };
  };

  /** Sends control the status listing if it differs from what control has (owner names are looked up afresh). */
  const publishStatus = (): void => {
    statusScheduled = false;
    if (control === null) return;
    const users = systemUserDb();
    const vms = [...entries.values()].sort((a, b) => a.record.id - b.record.id).map((e) => info(e, users, false));
    const key = JSON.stringify([vms, networkWarnings]);
    if (key === statusPublished) return;
    statusPublished = key;
    control.send({ type: 'control.status', vms, warnings: networkWarnings });
  };

  /** OpenBSD's vm_checkperm: root, the starter of a running VM, the VM's owner, or a member of its owner group. */
  const permitted = (e: Entry, uid: number, gid: number): boolean => {
    if (uid === 0) return true;
    // The starter of a running VM (OpenBSD's vm_uid) and, unlike OpenBSD, always its configured owner.
    if (e.runtime !== null && e.runtime.uid === uid) return true;
    if (e.record.ownerUid === uid && e.record.ownerUid !== 0) return true;
    const og = e.record.ownerGid;
    return og !== null && (gid === og || groupsOf(uid, gid).includes(og));
  };

  const requireVm = (target: string): Entry => {
    const e = lookup(target);
    if (e === undefined) throw new VmdError('ERR_VM_NOT_FOUND', `vm "${target}": not found`);
    return e;
  };

  const onControl = (msg: ControlToParent, handle: Socket | undefined): void => {
    switch (msg.type) {
      case 'control.ready':
        // A new control process has no listing yet: it forwards status requests here until this arrives.
        statusPublished = null;
        publishStatus();
        options.onReady?.();
        return;
      case 'control.closed':
        for (const e of entries.values()) e.waiters = e.waiters.filter((w) => w.peer !== msg.peer);
        return;
      case 'control.console':
        onConsole(msg, handle);
        return;
      case 'control.capture':
        onCapture(msg, handle);
        return;
      case 'control.stream':
        onStream(msg, handle);
        return;
      case 'control.request':
        handleRequest(msg.peer, msg.uid, msg.gid, msg.request).catch((err: unknown) => fail(msg.peer, msg.request.id, err));
        return;
    }
  };

  const onConsole = (msg: Extract<ControlToParent, { type: 'control.console' }>, socket: Socket | undefined): void => {
    if (socket === undefined || msg.request.type !== 'vm.console.request') return;
    const reject = (err: VmdError): void => {
      socket.on('error', () => socket.destroy());
      socket.end(encodeFrame({ type: 'error', id: msg.request.id, error: err.toJSON() }));
    };
    const e = lookup(msg.request.target);
    if (e === undefined) return reject(new VmdError('ERR_VM_NOT_FOUND', `vm "${msg.request.target}": not found`));
    if (!permitted(e, msg.uid, msg.gid)) return reject(new VmdError('ERR_PERMISSION', `vm "${e.record.name}": console: permission denied`));
    const notRunning = new VmdError('ERR_VM_NOT_RUNNING', `vm "${e.record.name}": not running`, { hint: `start it with: vmctl start ${e.record.name}` });
    if (e.runtime === null) return reject(notRunning);
    // A start in progress (status already shows its QEMU) finishes first; after a vmm restart the guest is
    // attached once the new vmm has adopted it.
    untilStarted(e, 30_000).then(() => untilVmm(e.record.id, 10_000)).then(() => {
      if (e.runtime === null || e.state === 'starting' || vmm === null) return reject(notRunning);
      vmm.send({ type: 'vm.console.attach', vmId: e.record.id, name: e.record.name, reqId: msg.request.id, remainder: msg.remainder }, socket);
    }, (err: unknown) => reject(toVmdError(err)));
  };

  /** `vmctl capture`: root or the VM's owner, a running VM, a NIC with a host link; then tcpdump streams to the client. */
  const onCapture = (msg: Extract<ControlToParent, { type: 'control.capture' }>, socket: Socket | undefined): void => {
    if (socket === undefined || msg.request.type !== 'vm.capture.request') return;
    const req = msg.request;
    const reject = (err: unknown): void => {
      if (socket.destroyed) return;
      socket.on('error', () => socket.destroy());
      socket.end(encodeFrame({ type: 'error', id: req.id, error: toVmdError(err).toJSON() }));
    };
    try {
      const e = lookup(req.target);
      if (e === undefined) throw new VmdError('ERR_VM_NOT_FOUND', `vm "${req.target}": not found`);
      const name = e.record.name;
      if (!permitted(e, msg.uid, msg.gid)) throw new VmdError('ERR_PERMISSION', `vm "${name}": permission denied`);
      if (e.runtime === null || e.state === 'starting') {
        throw new VmdError('ERR_VM_NOT_RUNNING', `vm "${name}": not running`, { hint: `start it with: vmctl start ${name}` });
      }
      const nics = e.record.config.interfaces.length;
      if (req.interface >= nics) {
        throw new VmdError('ERR_INVALID', `vm "${name}": no interface ${req.interface}`, {
          hint: nics === 0 ? 'it has no network interfaces' : `its interfaces are numbered 0 to ${nics - 1}, as vmctl links ${name} shows`,
        });
      }
      if (!root) throw new VmdError('ERR_UNSUPPORTED', `vm "${name}": capture: needs vmd to run as root`);
      const link = network.linkOf(e.record.id, req.interface);
      if (link === null) {
        throw new VmdError('ERR_INVALID', `vm "${name}": interface ${req.interface}: no host link to capture on (user-mode networking)`, {
          hint: 'attach the interface to a switch, or make it a local interface',
        });
      }
      // tcpdump's own unprivileged user when the system has one, vmd's otherwise; either keeps only CAP_NET_RAW.
      const user = getpwnam('tcpdump') ?? ident ?? { uid: 0, gid: 0 };
      const header = encodeFrame({ type: 'vm.capture.response', id: req.id, vmId: e.record.id, name, interface: req.interface, link: link.name });
      captures.start(
        e.record.id,
        { vm: name, index: req.interface, link: link.name, ...(req.filter === undefined ? {} : { filter: req.filter }) },
        {
          link: link.name, netns: link.netns, uid: user.uid, gid: user.gid,
          ...(req.count === undefined ? {} : { count: req.count }),
          ...(req.snaplen === undefined ? {} : { snaplen: req.snaplen }),
          ...(req.filter === undefined ? {} : { filter: req.filter }),
        },
        socket, header,
      ).catch(reject);
    } catch (err) {
      reject(err);
    }
  };

  // ---- send and receive ----
  /** VMs whose state is being sent or received: one transfer per VM at a time. */
  const transfers = new Set<number>();
  /** A transfer waits for bytes from a pipe, maybe over ssh: bounded only against a vmm that never answers. */
  const TRANSFER_TIMEOUT_MS = 24 * 3600_000;

  const onStream = (msg: Extract<ControlToParent, { type: 'control.stream' }>, socket: Socket | undefined): void => {
    if (socket === undefined) return;
    const reject = (err: unknown): void => {
      socket.on('error', () => socket.destroy());
      socket.end(encodeFrame({ type: 'error', id: msg.request.id, error: toVmdError(err).toJSON() }));
    };
    const req = msg.request;
    if (req.type === 'vm.send.request') {
      try {
        const e = requireVm(req.target);
        if (!permitted(e, msg.uid, msg.gid)) throw new VmdError('ERR_PERMISSION', `vm "${e.record.name}": send: permission denied`);
        if (e.runtime === null || e.state === 'starting' || e.state === 'stopping') {
          throw new VmdError('ERR_VM_NOT_RUNNING', `vm "${e.record.name}": not running`);
        }
        if (transfers.has(e.record.id)) throw new VmdError('ERR_INVALID', `vm "${e.record.name}": already being sent`);
        const header = encodeStreamHeader(streamConfigOf(e.record.id, e.record.config)).toString('base64');
        transfers.add(e.record.id);
        vmmCall((r) => ({
          type: 'vm.send', req: r, vmId: e.record.id, header,
          response: { type: 'vm.send.response', id: req.id, vmId: e.record.id, name: e.record.name },
        }), { timeoutMs: TRANSFER_TIMEOUT_MS, handle: socket, forVm: e.record.id }).then(
          () => logInfo(`vm "${e.record.name}" (vm ${e.record.id}) sent`),
          (err: unknown) => logWarn(`vm "${e.record.name}": send failed, the guest stays: ${toVmdError(err).message}`),
        ).finally(() => transfers.delete(e.record.id));
      } catch (err) {
        reject(err);
      }
      return;
    }
    if (req.type === 'vm.receive.request') {
      receive(msg.uid, req, msg.remainder, socket).catch(reject);
    }
  };

  /** `vmctl receive NAME`: a new VM from the stream's config, through vmStart's checks, then its state from the body. */
  const receive = async (uid: number, req: Extract<ControlRequest, { type: 'vm.receive.request' }>, remainder: string, socket: Socket): Promise<void> => {
    if (byName(req.target) !== undefined) {
      throw new VmdError('ERR_VM_EXISTS', `vm "${req.target}": already exists`, { hint: 'receive it under another name' });
    }
    if (/^\d+$/.test(req.target)) throw new VmdError('ERR_INVALID', `vm name "${req.target}": invalid VM name`);
    const vm = vmFromStream(req.target, req.config);
    const id = db.vmClaimId(vm.name);
    const rec: VmRecord = { id, name: vm.name, origin: 'adhoc', config: vm, ownerUid: vm.owner?.uid ?? uid, ownerGid: vm.owner?.gid ?? null };
    db.vmPut(rec);
    const e = new Entry(rec, statusChanged);
    entries.set(id, e);
    transfers.add(id);
    try {
      await vmStart(e, uid, { incoming: true });
    } catch (err) {
      transfers.delete(id);
      db.vmDelete(id);
      entries.delete(id);
      throw err;
    }
    e.state = 'starting';
    db.runtimeSetState(id, 'starting');
    let error: VmdError | null = null;
    try {
      await vmmCall((r) => ({
        type: 'vm.receive', req: r, vmId: id, remainder,
        response: { type: 'vm.receive.response', id: req.id, phase: 'ready', vm: info(e) },
      }), { timeoutMs: TRANSFER_TIMEOUT_MS, handle: socket });
    } catch (err) {
      error = toVmdError(err);
    }
    transfers.delete(id);
    if (error === null && e.runtime !== null) {
      e.state = 'running';
      db.runtimeSetState(id, 'running');
      db.event(id, 'receive', `from "${req.config.name}"`);
      logInfo(`received ${vm.name} (vm ${id}) successfully, tty ${e.runtime.consoleSocket}`);
      // A reply that reaches the client through vmm: control's listing goes first, as before any reply.
      flushStatus();
      vmm?.send({ type: 'vm.stream.reply', vmId: id, response: { type: 'vm.receive.response', id: req.id, phase: 'done', vm: info(e) } });
      return;
    }
    // Nothing half-made stays: the QEMU, its links and run directory and the VM record go before the client hears.
    const tail = e.runtime === null ? '' : qemuLogTail(join(e.runtime.runDir, 'qemu.log'));
    const pid = e.runtime?.pid ?? null;
    e.stopRequested = true;
    if (pid !== null) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      const deadline = Date.now() + 5000;
      while (isOurQemu(pid, id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      vmm?.send({ type: 'vm.forget', vmId: id });
    }
    if (e.runtime !== null) {
      rmSync(e.runtime.runDir, { recursive: true, force: true });
      db.runtimeDelete(id);
      e.runtime = null;
      e.child = null;
    }
    await network.vmDown(id).catch((err: unknown) => logWarn(`vm "${vm.name}": network: ${toVmdError(err).message}`));
    db.vmDelete(id);
    entries.delete(id);
    const why = error ?? new VmdError('ERR_QEMU', `vm "${vm.name}": receive: the guest exited`);
    const detail = tail.length > 0 && why.code === 'ERR_QEMU' ? new VmdError('ERR_QEMU', `${why.message} (qemu: ${tail})`) : why;
    logWarn(`vm "${vm.name}": receive failed: ${detail.message}`);
    flushStatus();
    vmm?.send({ type: 'vm.stream.reply', vmId: id, response: { type: 'error', id: req.id, error: detail.toJSON() } });
  };

  const handleRequest = async (peer: number, uid: number, gid: number, req: ControlRequest): Promise<void> => {
    switch (req.type) {
      case 'vm.status.request': {
        const list = [...entries.values()]
          .filter((e) => req.target === undefined || String(e.record.id) === req.target || e.record.name === req.target)
          .filter((e) => !req.running || (e.runtime !== null && e.runtime.pid !== null))
          .sort((a, b) => a.record.id - b.record.id);
        // One look at /etc/passwd and /etc/group per listing, not one per VM.
        const users = systemUserDb();
        const vms = list.map((e) => info(e, users));
        respond(peer, { type: 'vm.status.response', id: req.id, vms, warnings: networkWarnings }, false);
        return;
      }
      case 'vm.start.request': {
        let e = lookup(req.target);
        const o = req.options;
        const creating = Object.keys(o).some((k) => k !== 'boot' && k !== 'bootDevice') || o.instanceOf !== undefined;
        if (e !== undefined) {
          // OpenBSD: options other than -b on an existing VM are EALREADY.
          if (creating) throw new VmdError('ERR_VM_EXISTS', `vm "${e.record.name}": already exists`, { hint: 'options apply only when creating a vm; start it by name alone' });
          if (!permitted(e, uid, gid)) throw new VmdError('ERR_PERMISSION', `vm "${e.record.name}": permission denied`);
          const bootOnce = o.bootDevice;
          const warnings: string[] = [];
          await vmStart(e, uid, bootOnce === undefined ? {} : { bootOnce });
          respond(peer, { type: 'vm.start.response', id: req.id, vm: info(e), warnings }, false);
          return;
        }
        if (/^\d+$/.test(req.target)) throw new VmdError('ERR_VM_NOT_FOUND', `vm ${req.target}: not found`);
        // OpenBSD: a non-root user may only start existing VMs or create instances that `allow instance` permits.
        if (uid !== 0 && o.instanceOf === undefined) {
          throw new VmdError('ERR_PERMISSION', `vm "${req.target}": only root may create new vms`, { hint: 'ask for an instance of a vm that allows it: vmctl start -t PARENT NAME' });
        }
        const { vm, warnings, origin } = vmFromOptions(req.target, o, uid, byName, (g) => g === gid || groupsOf(uid, gid).includes(g));
        const id = db.vmClaimId(vm.name);
        const rec: VmRecord = { id, name: vm.name, origin, config: vm, ownerUid: uid, ownerGid: null };
        db.vmPut(rec);
        e = new Entry(rec, statusChanged);
        entries.set(id, e);
        try {
          await vmStart(e, uid, {});
        } catch (err) {
          // A VM made by this request and not started is forgotten again (OpenBSD removes it).
          db.vmDelete(id);
          entries.delete(id);
          throw err;
        }
        respond(peer, { type: 'vm.start.response', id: req.id, vm: info(e), warnings }, false);
        return;
      }
      case 'vm.stop.request': {
        const e = requireVm(req.target);
        if (!permitted(e, uid, gid)) throw new VmdError('ERR_PERMISSION', `vm "${e.record.name}": permission denied`);
        // `vmctl start x; vmctl stop x`: a start still in progress finishes first, then the stop applies.
        await untilStarted(e, 30_000);
        if (e.runtime === null || e.state === 'starting') {
          throw new VmdError('ERR_VM_NOT_RUNNING', `vm "${e.record.name}": not running`);
        }
        if (e.state === 'stopping' && !req.force) throw new VmdError('ERR_VM_STOPPING', `vm "${e.record.name}": already stopping`);
        e.stopRequested = true;
        await vmmCall((r) => ({ type: 'vm.stop', req: r, vmId: e.record.id, force: req.force }), { forVm: e.record.id });
        if (e.runtime !== null) {
          e.state = 'stopping';
          db.runtimeSetState(e.record.id, 'stopping');
        }
        if (req.wait && e.runtime !== null) e.waiters.push({ peer, reqId: req.id, kind: 'stop' });
        else respond(peer, { type: 'vm.stop.response', id: req.id, vmId: e.record.id, name: e.record.name, result: req.wait ? 'terminated' : 'requested' }, false);
        return;
      }
      case 'vm.wait.request': {
        const e = requireVm(req.target);
        if (!permitted(e, uid, gid)) throw new VmdError('ERR_PERMISSION', `vm "${e.record.name}": permission denied`);
        if (e.runtime === null) throw new VmdError('ERR_VM_NOT_RUNNING', `vm "${e.record.name}": not running`);
        e.waiters.push({ peer, reqId: req.id, kind: 'wait' });
        return;
      }
      case 'vm.pause.request':
      case 'vm.unpause.request': {
        const e = requireVm(req.target);
        if (!permitted(e, uid, gid)) throw new VmdError('ERR_PERMISSION', `vm "${e.record.name}": permission denied`);
        if (e.runtime === null || e.state === 'starting') throw new VmdError('ERR_VM_NOT_RUNNING', `vm "${e.record.name}": not running`);
        const pause = req.type === 'vm.pause.request';
        if (pause && e.state === 'paused') throw new VmdError('ERR_VM_PAUSED', `vm "${e.record.name}": already paused`);
        if (!pause && e.state !== 'paused') throw new VmdError('ERR_VM_NOT_PAUSED', `vm "${e.record.name}": not paused`);
        const res = await vmmCall((r) => ({ type: pause ? 'vm.pause' : 'vm.unpause', req: r, vmId: e.record.id }), { forVm: e.record.id });
        e.state = res.state ?? (pause ? 'paused' : 'running');
        db.runtimeSetState(e.record.id, e.state === 'paused' ? 'paused' : 'running');
        respond(peer, { type: pause ? 'vm.pause.response' : 'vm.unpause.response', id: req.id, vmId: e.record.id, name: e.record.name }, false);
        return;
      }
      case 'config.load.request': {
        const res = loadConfig(req.path, options.macros);
        if (res.config === null) throw configError(res.diagnostics);
        registerConfig(res.config, 'load');
        queueEnabled(res.config);
        respond(peer, { type: 'ok.response', id: req.id }, false);
        return;
      }
      case 'config.reload.request': {
        await reload();
        respond(peer, { type: 'ok.response', id: req.id }, false);
        return;
      }
      case 'config.reset.request': {
        if (req.mode === 'all' || req.mode === 'vms') {
          for (const e of entries.values()) {
            if (e.runtime !== null) {
              e.stopRequested = true;
              await vmmCall((r) => ({ type: 'vm.stop', req: r, vmId: e.record.id, force: true }), { forVm: e.record.id }).catch(() => undefined);
            }
          }
          waiting.length = 0;
          // Give the killed guests a moment to be reaped, so their links and rules go with them.
          const deadline = Date.now() + 10_000;
          while ([...entries.values()].some((e) => e.runtime !== null) && Date.now() < deadline) {
            await new Promise((r) => setTimeout(r, 50));
          }
          unregisterStoppedConfigVms();
        }
        if (req.mode === 'all' || req.mode === 'switches') await network.reset(true);
        else await network.reset(false);
        respond(peer, { type: 'ok.response', id: req.id }, false);
        return;
      }
      case 'log.verbose.request':
        logSetVerbose(req.level);
        vmm?.send({ type: 'log.verbose', level: req.level });
        control?.send({ type: 'log.verbose', level: req.level });
        respond(peer, { type: 'ok.response', id: req.id }, false);
        return;
      case 'vm.links.request': {
        const links = await network.linksInfo((id, name) => req.target === undefined || String(id) === req.target || name === req.target);
        respond(peer, { type: 'vm.links.response', id: req.id, links }, false);
        return;
      }
      case 'vm.firewall.request': {
        const e = requireVm(req.target);
        if (!permitted(e, uid, gid)) throw new VmdError('ERR_PERMISSION', `vm "${e.record.name}": permission denied`);
        if (req.index !== undefined && !e.record.config.interfaces.some((n) => n.index === req.index)) {
          throw new VmdError('ERR_INVALID', `vm "${e.record.name}": interface ${req.index}: no such interface`, {
            hint: e.record.config.interfaces.length === 0 ? 'the vm has no interfaces' : `interfaces are numbered 0 to ${e.record.config.interfaces.length - 1}`,
          });
        }
        const interfaces = await network.firewallInfo(e.record.id, e.record.config, req.index);
        respond(peer, { type: 'vm.firewall.response', id: req.id, interfaces }, false);
        return;
      }
      case 'vm.console.request':
        throw new VmdError('ERR_PROTOCOL', 'console requests arrive with their socket');
      case 'vm.capture.request':
        throw new VmdError('ERR_PROTOCOL', 'capture requests arrive with their socket');
      case 'vm.send.request':
      case 'vm.receive.request':
        throw new VmdError('ERR_PROTOCOL', `${req.type}: arrives with its socket`);
    }
  };

  /**
   * A reload leaves running VMs as they are (OpenBSD), except their filter rules: those of the new vm.conf
   * replace the old ones at once, as SmartOS fwadm updates a running zone's firewall.
   */
  const reloadRules = async (cfg: Config): Promise<string[]> => {
    const failed: string[] = [];
    const byParent = new Map(cfg.vms.map((v) => [v.name, v]));
    for (const vm of cfg.vms) {
      const e = byName(vm.name);
      if (e === undefined || e.runtime === null || e.record.origin === 'adhoc') continue;
      const effective = vm.instanceOf === null ? vm : inherit(byParent.get(vm.instanceOf) ?? byName(vm.instanceOf)?.record.config ?? null, vm);
      const old = e.record.config;
      // Only NICs that still line up take new rules; a changed interface list waits for the next start.
      const interfaces = old.interfaces.map((nic) => {
        const next = effective.interfaces.find((n) => n.index === nic.index);
        return next === undefined ? { ...nic, rules: [] } : { ...nic, rules: next.rules };
      });
      const updated: VmConfig = { ...old, interfaces };
      try {
        if (await network.vmRules(e.record.id, updated)) {
          e.record = { ...e.record, config: updated };
          db.vmPut(e.record);
          logInfo(`vm "${vm.name}": filter rules replaced`);
        }
      } catch (err) {
        const message = `vm "${vm.name}": filter rules not replaced: ${toVmdError(err).message}`;
        logWarn(message);
        failed.push(message);
      }
    }
    return failed;
  };

  const reload = async (): Promise<void> => {
    const res = loadConfig(options.file, options.macros);
    if (res.config === null) {
      for (const d of res.diagnostics) logWarn(formatDiag(d));
      throw configError(res.diagnostics);
    }
    // OpenBSD: every VM that is not running is dropped, then the file is read again.
    waiting.length = 0;
    unregisterStoppedConfigVms();
    config = res.config;
    await network.configure(config);
    const failed = await reloadRules(config);
    registerConfig(config, 'config');
    queueEnabled(config);
    logInfo(`configuration reloaded from ${options.file}`);
    if (failed.length > 0) throw new VmdError('ERR_INTERNAL', failed.join('; '), { hint: 'the previous rules stay in force; see vmd\'s log' });
  };

  const shutdown = async (code: number): Promise<void> => {
    if (shuttingDown) return;
    shuttingDown = true;
    if (staggerTimer !== null) clearTimeout(staggerTimer);
    server?.close();
    for (const sock of heldConnections.splice(0)) sock.destroy();
    await Promise.all([control?.stop(), vmm?.stop(), captures.stopAll()]);
    await network.shutdown().catch(() => undefined);
    try { unlinkSync(sockPath); } catch { /* gone */ }
    db.close();
    logInfo('exiting; guests keep running');
    exitResolve(code);
  };

  process.on('SIGTERM', () => void shutdown(0));
  process.on('SIGINT', () => void shutdown(0));
  process.on('SIGHUP', () => {
    reload().catch((err: unknown) => logWarn(`reload: ${toVmdError(err).message}`));
  });

  // ---- start ----
  // Probe once, in the background, so the first start does not wait for it.
  if (config.global.accel === 'auto') void autoAccel();
  registerConfig(config, 'config');
  await network.cleanupStale();
  await network.switchesUp();
  startVmm();
  await vmmReady;
  // Reconcile the recorded runtime with reality: re-adopt live guests, clean up after dead ones.
  for (const e of [...entries.values()]) {
    const rt = e.runtime;
    if (rt === null) continue;
    if (rt.pid !== null && isOurQemu(rt.pid, e.record.id)) {
      e.state = rt.state === 'paused' ? 'paused' : 'running';
      await network.vmReadopt(e.record.id, e.record.config);
      await adoptGuest(e, true);
    } else {
      logInfo(`vm "${e.record.name}": recorded pid ${rt.pid ?? '-'} is gone, cleaning up`);
      cleanupRuntime(e);
      e.state = 'stopped';
      db.event(e.record.id, 'exit', 'gone-while-vmd-was-down');
      finishStopped(e);
    }
  }
  db.trimEvents();
  await network.sync();
  // Another firewall dropping forwarded traffic (Docker's FORWARD DROP) is worth a warning in `vmctl status`.
  const refreshWarnings = (): void => {
    network.warnings().then((w) => {
      networkWarnings = w;
      // Also picks up renamed users and groups in the OWNER column.
      publishStatus();
    }, () => undefined);
  };
  refreshWarnings();
  setInterval(refreshWarnings, 10_000).unref();
  await startControl();
  queueEnabled(config);
  return exited;

  function stopTimeoutMs(): number {
    const env = Number(process.env.VMD_STOP_TIMEOUT);
    return Number.isFinite(env) && env > 0 ? env * 1000 : 30_000;
  }
}

function loadConfig(file: string, macros: Readonly<Record<string, string>>) {
  return parseConfigFile(file, { macros });
}

function formatDiag(d: Diagnostic): string {
  return d.file !== null && d.line !== null ? `${d.file}:${d.line}: ${d.message}` : d.message;
}

function configError(diags: readonly Diagnostic[]): VmdError {
  const first = diags.find((d) => d.severity === 'error');
  return new VmdError('ERR_CONFIG', first === undefined ? 'configuration failed' : formatDiag(first));
}

/** A VmConfig for `vmctl start NAME -m … -i …` (or an instance with -t), with OpenBSD's defaults and checks. */
function vmFromOptions(
  name: string, o: StartOptions, uid: number, byName: (n: string) => Entry | undefined, inGroup: (gid: number) => boolean,
): { vm: VmConfig; warnings: string[]; origin: 'adhoc' | 'instance' } {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) throw new VmdError('ERR_INVALID', `vm name "${name}": invalid VM name`, { hint: 'use letters, digits, ".", "_" and "-", not first' });
  if (name.length > 63) throw new VmdError('ERR_INVALID', `vm name "${name.slice(0, 20)}…": vm name too long`);
  const warnings: string[] = [];
  const location = { file: '(vmctl start)', line: 0 };
  let parent: VmConfig | null = null;
  if (o.instanceOf !== undefined) {
    const p = byName(o.instanceOf);
    if (p === undefined) throw new VmdError('ERR_PARENT_INVALID', `vm "${o.instanceOf}": invalid template`);
    parent = p.record.config;
    if (uid !== 0) {
      const allow = parent.allowInstance;
      const owner = allow?.owner ?? parent.owner;
      // OpenBSD's vm_checkperm on the instance owner: that user (not root's uid 0 of a `:group`), or the group.
      const mayCreate = owner !== null && ((owner.uid === uid && owner.uid !== 0) || (owner.gid !== null && inGroup(owner.gid)));
      if (allow === null || !mayCreate) {
        throw new VmdError('ERR_PERMISSION', `vm "${name}": no permission to create an instance of "${parent.name}"`);
      }
      // vm_instance: each override needs its `allow instance` flag; OpenBSD logs `no permission to set …`.
      const overrides: Array<[boolean, InstanceFlag, string]> = [
        [o.memory !== undefined, 'memory', 'memory'],
        [(o.disks?.length ?? 0) > 0, 'disk', 'disks'],
        [o.interfaces !== undefined || (o.nets?.length ?? 0) > 0 || (o.forwards?.length ?? 0) > 0, 'interface', 'interfaces'],
        [o.boot !== undefined || o.initrd !== undefined || o.cmdline !== undefined, 'boot', 'boot image'],
        [o.cdrom !== undefined, 'cdrom', 'cdrom'],
      ];
      for (const [given, flag, what] of overrides) {
        if (given && !allow.flags.includes(flag)) {
          throw new VmdError('ERR_PERMISSION', `vm "${name}": no permission to set ${what}`, { hint: `vm "${parent.name}" allows instances to set: ${allow.flags.join(', ') || 'nothing'}` });
        }
      }
    }
  }
  const nets = o.nets ?? [];
  const count = Math.max(o.interfaces ?? 0, nets.length);
  const interfaces: InterfaceConfig[] = [];
  for (let i = 0; i < count; i++) {
    const n = nets[i];
    interfaces.push({
      index: i, name: null, local: n?.kind === 'local', switch: n?.kind === 'switch' ? n.switch : null, group: null,
      lladdr: null, locked: false, rdomain: null, up: true,
      forwards: i === 0 ? (o.forwards ?? []).map((f) => ({ ...f, location })) : [],
      rules: [], location,
    });
  }
  if ((o.disks?.length ?? 0) > MAX_DISKS) throw new VmdError('ERR_INVALID', `vm "${name}": too many disks`);
  if (interfaces.length > MAX_NICS) throw new VmdError('ERR_INVALID', `vm "${name}": too many network interfaces`);
  const disks = (o.disks ?? []).map((spec): DiskConfig => {
    const m = /^(raw|qcow2):(\/.*)$/.exec(spec);
    const path = m ? m[2]! : spec;
    return { path, format: m ? (m[1] as 'raw' | 'qcow2') : diskFormatOf(path) };
  });
  const own: VmConfig = {
    name, instanceOf: parent?.name ?? null, enabled: true,
    memory: o.memory ?? null, cpus: null,
    boot: o.boot ?? null, initrd: o.initrd ?? null, cmdline: o.cmdline ?? null,
    bootDevice: o.bootDevice ?? null, cdrom: o.cdrom ?? null,
    disks, interfaces, owner: { uid, gid: null, user: null, group: null }, allowInstance: null,
    sev: false, seves: false, accel: null, location,
  };
  const vm = parent === null ? { ...own, memory: own.memory ?? DEFAULT_MEMORY } : inherit(parent, own);
  if (vm.boot === null && vm.disks.length === 0 && vm.cdrom === null) {
    throw new VmdError('ERR_NO_BOOT', `vm "${name}": no kernel or disk/cdrom specified`);
  }
  if (vm.boot === null && vm.disks.length === 0) warnings.push('starting without disks');
  if (vm.boot === null && vm.interfaces.length === 0) warnings.push('starting without network interfaces');
  return { vm, warnings, origin: parent === null ? 'adhoc' : 'instance' };
}

/** The configuration a send stream carries: what the guest runs with now, its NICs with the MACs it has. */
function streamConfigOf(id: number, vm: VmConfig): StreamConfig {
  return {
    name: vm.name,
    memory: vm.memory ?? DEFAULT_MEMORY,
    cpus: vm.cpus ?? 1,
    boot: vm.boot, initrd: vm.initrd, cmdline: vm.cmdline, cdrom: vm.cdrom,
    disks: vm.disks.map((d) => ({ path: d.path, format: d.format })),
    interfaces: vm.interfaces.map((n) => ({
      local: n.local, switch: n.switch, lladdr: n.lladdr ?? stableMac(id, vm.name, n.index), locked: n.locked,
      group: n.group, rdomain: n.rdomain,
      forwards: n.forwards.map((f) => ({ proto: f.proto, hostPort: f.hostPort, guestPort: f.guestPort })),
      rules: n.rules.map((r) => ({ action: r.action, direction: r.direction, quick: r.quick, protos: r.protos, from: r.from, to: r.to, text: r.text })),
    })),
    owner: vm.owner === null ? null : { uid: vm.owner.uid, gid: vm.owner.gid },
  };
}

/** A VmConfig for `vmctl receive NAME` from a stream's (already decoded) configuration. */
function vmFromStream(name: string, c: StreamConfig): VmConfig {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) throw new VmdError('ERR_INVALID', `vm name "${name}": invalid VM name`, { hint: 'use letters, digits, ".", "_" and "-", not first' });
  const location = { file: '(vmctl receive)', line: 0 };
  return {
    name, instanceOf: null, enabled: true, memory: c.memory, cpus: c.cpus,
    boot: c.boot, initrd: c.initrd, cmdline: c.cmdline, bootDevice: null, cdrom: c.cdrom,
    disks: c.disks.map((d) => ({ path: d.path, format: d.format })),
    interfaces: c.interfaces.map((n, index) => ({
      index, name: null, local: n.local, switch: n.switch, group: n.group, lladdr: n.lladdr, locked: n.locked,
      rdomain: n.rdomain, up: true,
      forwards: n.forwards.map((f) => ({ ...f, location })),
      rules: n.rules.map((r) => ({ ...r, location })),
    location })),
    owner: c.owner === null ? null : { uid: c.owner.uid, gid: c.owner.gid, user: null, group: null },
    allowInstance: null, sev: false, seves: false, accel: null, location,
  };
}

/** Instance inheritance (OpenBSD vm_instance): unset cpus, memory, NICs, cdrom and owner come from the parent. */
function inherit(parent: VmConfig | null, child: VmConfig): VmConfig {
  if (parent === null) return child;
  for (const d of child.disks) {
    if (parent.disks.some((p) => p.path === d.path)) {
      throw new VmdError('ERR_INVALID', `vm "${child.name}": disk ${d.path} cannot be reused`, { hint: 'give the instance its own overlay: vmctl create -b BASE NEW.qcow2' });
    }
  }
  return {
    ...child,
    memory: child.memory ?? parent.memory,
    cpus: child.cpus ?? parent.cpus,
    boot: child.boot ?? parent.boot,
    initrd: child.initrd ?? parent.initrd,
    cmdline: child.cmdline ?? parent.cmdline,
    cdrom: child.cdrom ?? parent.cdrom,
    interfaces: child.interfaces.length > 0 ? child.interfaces : parent.interfaces,
    owner: child.owner ?? parent.owner,
    accel: child.accel ?? parent.accel,
  };
}

/** The kernel command line of a direct boot when vm.conf gives none. */
export const DEFAULT_CMDLINE = 'console=ttyS0';

/** Whether a boot image is a kernel QEMU loads itself (bzImage "HdrS" header, or ELF: PVH/multiboot) rather than firmware. */
export function isKernelImage(path: string): boolean {
  try {
    const fd = openSync(path, 'r');
    try {
      const head = Buffer.alloc(0x206);
      const n = readSync(fd, head, 0, head.length, 0);
      if (n >= 4 && head.subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) return true;
      return n >= 0x206 && head.toString('latin1', 0x202, 0x206) === 'HdrS';
    } finally {
      closeSync(fd);
    }
  } catch {
    return false;
  }
}

/** Everything QEMU needs for this VM except the argv layout itself (qemu-argv.ts owns that). */
function qemuSpecFor(
  id: number, vm: VmConfig,
  rt: {
    accel: 'kvm' | 'tcg'; qmpSocket: string; consoleSocket: string;
    disks: Array<{ fd: number; format: 'raw' | 'qcow2'; path: string; backing: QemuBacking[] }>;
    cdrom: { fd: number; path: string } | null;
    kernel: number | null; kernelIsLinux: boolean; initrd: number | null; nics: QemuNic[];
    bootOnce: 'cdrom' | 'disk' | 'net' | null; sandbox: boolean;
  },
): QemuSpec {
  return {
    id, name: vm.name,
    memory: vm.memory ?? DEFAULT_MEMORY,
    cpus: vm.cpus ?? 1,
    accel: rt.accel,
    kernel: rt.kernel === null || !rt.kernelIsLinux ? null : { fd: rt.kernel },
    firmware: rt.kernel !== null && !rt.kernelIsLinux ? { fd: rt.kernel } : null,
    initrd: rt.initrd === null ? null : { fd: rt.initrd },
    // vmd's console is the first serial port: a directly booted kernel without a cmdline is told so.
    cmdline: rt.kernel !== null && rt.kernelIsLinux ? vm.cmdline ?? DEFAULT_CMDLINE : null,
    bootDevice: rt.bootOnce ?? vm.bootDevice,
    cdrom: rt.cdrom === null ? null : { fd: rt.cdrom.fd },
    disks: rt.disks.map((d) => ({ fd: d.fd, format: d.format, ...(d.backing.length > 0 ? { backing: d.backing } : {}) })),
    nics: rt.nics,
    qmpSocket: rt.qmpSocket,
    consoleSocket: rt.consoleSocket,
    sandbox: rt.sandbox,
  };
}

/** The backing chain below a qcow2 image, nearest first, as qemu-img sees it (paths absolute). */
function backingChain(path: string): Array<{ path: string; format: 'raw' | 'qcow2' }> {
  const out = execFileSync('qemu-img', ['info', '-U', '--backing-chain', '--output=json', path], { encoding: 'utf8', timeout: 10_000 });
  const chain = JSON.parse(out) as Array<{ 'full-backing-filename'?: string; 'backing-filename-format'?: string }>;
  const result: Array<{ path: string; format: 'raw' | 'qcow2' }> = [];
  for (const layer of chain) {
    const next = layer['full-backing-filename'];
    if (next === undefined) break;
    result.push({ path: next, format: layer['backing-filename-format'] === 'qcow2' ? 'qcow2' : 'raw' });
  }
  return result;
}
