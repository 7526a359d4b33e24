// The parent's two unprivileged roles: spawning and restarting vmm and control, calls to vmm, and the socket.
// The parent keeps the listening socket and hands control every connection unread: it never reads a client's bytes.

import { chmodSync, chownSync, existsSync, mkdirSync, renameSync, unlinkSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Owner } from '../../share/config.js';
import { VmdError, type VmdErrorData } from '../../share/errors.js';
import {
  readControlToParent, readVmmToParent,
  type ControlToParent, type ParentToControl, type ParentToVmm, type VmmToParent,
} from '../../share/ipc.js';
import type { VmState } from '../../share/protocol.js';
import { AcceptQueue } from '../accept.js';
import { logDebug, logWarn } from '../log.js';
import { RestartBudget, RoleChannel } from '../proc.js';
import { ControlPeers } from './peers.js';
import { socketTempPath } from './reach.js';
import type { ParentEnv } from './env.js';

/** What the roles' messages are handed to; set by parentMain once every part exists. */
export interface RoleHandlers {
  readonly vmm: (msg: VmmToParent, generation: number) => void;
  readonly control: (msg: ControlToParent, handle: Socket | undefined) => void;
  /** A role died past its restart budget: the daemon exits in order. */
  readonly fatal: (err: unknown) => void;
  readonly shuttingDown: () => boolean;
  /** Who owns the socket file (vm.conf `socket owner`), read when it is bound. */
  readonly socketOwner: () => Owner | null;
}

type VmmAnswer = { error: VmdErrorData | null; state?: VmState };

/** The vmm and control processes as the parent sees them: their channels, their restarts, the pending calls. */
export class Roles {
  vmm: RoleChannel<VmmToParent, ParentToVmm> | null = null;
  control: RoleChannel<ControlToParent, ParentToControl> | null = null;
  /** Guests being handed to a (new) vmm: what is asked of such a guest waits for its adoption. */
  readonly adoptions = new Map<number, Promise<void>>();
  // Pending from a vmm's death until its successor is ready, so requests wait for the new vmm instead of failing.
  #vmmReady: Promise<void> = Promise.resolve();
  #vmmReadyResolve: (() => void) | null = null;
  #nextReq = 1;
  readonly #pending = new Map<number, { resolve: (m: VmmAnswer) => void }>();
  // A role that dies is restarted, within a budget; past it the daemon exits in order (guests keep running).
  readonly #vmmBudget = new RestartBudget();
  readonly #controlBudget = new RestartBudget();
  #vmmGeneration = 0;
  #server: Server | null = null;
  /** The connections handed to control, with the kernel's credentials for each. */
  readonly #peers = new ControlPeers();
  // Connections on their way to control, root's and the socket owner's first; they wait here while it restarts.
  readonly #accepts = new AcceptQueue({ isPrivileged: (uid) => uid === 0 || uid === this.handlers.socketOwner()?.uid });

  constructor(private readonly env: ParentEnv, private readonly handlers: RoleHandlers) {}

  get vmmReady(): Promise<void> { return this.#vmmReady; }

  vmmStarted(): void {
    this.#vmmReadyResolve?.();
    this.#vmmReadyResolve = null;
  }

  /** An answer from vmm to one of vmmCall's requests. */
  vmmAnswered(req: number, answer: VmmAnswer): void {
    this.#pending.get(req)?.resolve(answer);
  }

  #vmmDown(): void {
    if (this.#vmmReadyResolve !== null) return;
    this.#vmmReady = new Promise((r) => { this.#vmmReadyResolve = r; });
  }

  startVmm(): void {
    const generation = ++this.#vmmGeneration;
    this.#vmmDown();
    const { ident, options } = this.env;
    this.vmm = new RoleChannel<VmmToParent, ParentToVmm>(
      { role: 'vmm', uid: ident?.uid ?? null, gid: ident?.gid ?? null, verbose: options.verbose },
      readVmmToParent,
      (msg) => this.handlers.vmm(msg, generation),
      () => {
        this.vmm = null;
        this.#vmmDown();
        for (const p of this.#pending.values()) p.resolve({ error: { code: 'ERR_INTERNAL', message: 'vmm process exited' } });
        this.#respawn('vmm', this.#vmmBudget, () => this.startVmm());
      },
    );
  }

  async startControl(): Promise<void> {
    // Bound once: a restarted control gets the connections of the same socket.
    this.#server ??= await this.#listen();
    const { ident, options } = this.env;
    this.control = new RoleChannel<ControlToParent, ParentToControl>(
      { role: 'control', uid: ident?.uid ?? null, gid: ident?.gid ?? null, verbose: options.verbose },
      (m) => this.#peers.check(readControlToParent(m)),
      (msg, handle) => this.handlers.control(msg, handle as Socket | undefined),
      () => {
        this.control = null;
        this.#peers.clear();
        this.#accepts.detach();
        this.#respawn('control', this.#controlBudget, () => void this.startControl().catch((err: unknown) => this.handlers.fatal(err)));
      },
    );
    const owner = this.handlers.socketOwner();
    this.control.send({ type: 'control.config', verbose: options.verbose, ...(owner === null ? {} : { socketOwnerUid: owner.uid }) });
    const channel = this.control;
    this.#accepts.attach((sock, done, ids) => {
      const cred = this.#peers.register(ids);
      logDebug(`control connection ${cred.peer}: uid ${cred.uid} gid ${cred.gid}`);
      channel.send({ type: 'control.connection', ...cred }, sock, done);
    });
  }

  #respawn(role: string, budget: RestartBudget, start: () => void): void {
    if (this.handlers.shuttingDown()) return;
    if (!budget.spend()) {
      this.handlers.fatal(new VmdError('ERR_INTERNAL', `${role} process: died ${budget.max + 1} times within ${budget.windowMs / 1000} s, giving up`));
      return;
    }
    logWarn(`restarting the ${role} process`);
    setTimeout(start, 200);
  }

  /** Waits until a vmm runs and, with a guest's id, has adopted that guest; ERR_INTERNAL after timeoutMs. */
  async untilVmm(vmId: number | null, timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new VmdError('ERR_INTERNAL', 'vmm process is not running', { hint: 'see vmd\'s log' })), timeoutMs);
    });
    try {
      await Promise.race([this.#vmmReady, late]);
      // Looked up only now: a restarted vmm's adoptions begin as it becomes ready.
      const adopting = vmId === null ? undefined : this.adoptions.get(vmId);
      if (adopting !== undefined) await Promise.race([adopting, late]);
    } finally {
      clearTimeout(timer);
    }
    if (this.vmm === null) throw new VmdError('ERR_INTERNAL', 'vmm process is not running', { hint: 'see vmd\'s log' });
  }

  /**
   * One request to vmm and its answer. `forVm`: a running guest's id, so the request waits for its adoption (a vmm
   * restart may be under way); `handle`: a client socket that travels with the request.
   */
  async vmmCall(
    make: (req: number) => ParentToVmm,
    { timeoutMs = 15_000, handle, forVm = null }: { timeoutMs?: number; handle?: Socket; forVm?: number | null } = {},
  ): Promise<{ state?: VmState }> {
    await this.untilVmm(forVm, timeoutMs);
    return new Promise((resolve, reject) => {
      const req = this.#nextReq++;
      const timer = setTimeout(() => {
        this.#pending.delete(req);
        reject(new VmdError('ERR_INTERNAL', 'vmm process did not answer'));
      }, timeoutMs);
      this.#pending.set(req, {
        resolve: (m) => {
          clearTimeout(timer);
          this.#pending.delete(req);
          if (m.error !== null) reject(VmdError.from(m.error));
          else resolve(m.state === undefined ? {} : { state: m.state });
        },
      });
      if (this.vmm === null) reject(new VmdError('ERR_INTERNAL', 'vmm process is not running'));
      else this.vmm.send(make(req), handle);
    });
  }

  /** Binds the control socket; a live daemon on it is an error, a stale socket file is replaced. */
  async #listen(): Promise<Server> {
    const sockPath = this.env.sockPath;
    // Its length was checked at start-up (reach.ts): Node would cut a longer name short and bind another.
    const tmp = socketTempPath(sockPath);
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
    try { unlinkSync(tmp); } catch { /* none */ }
    // Handing control the listening socket instead lost connections: a received server accepts before the message
    // carrying it is delivered, and such a connection had no listener and hung its client.
    const srv = createServer({ pauseOnConnect: true }, (sock) => this.#accepts.push(sock));
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(tmp, () => resolve());
    });
    // OpenBSD: 0660, root:wheel unless `socket owner` says otherwise.
    const owner = this.handlers.socketOwner();
    chmodSync(tmp, 0o660);
    // PRIV: the socket's owner is vm.conf's `socket owner`, or root.
    if (this.env.root) chownSync(tmp, owner?.uid ?? 0, owner?.gid ?? 0);
    renameSync(tmp, sockPath);
    return srv;
  }

  /** Stops accepting, hangs up on held clients and stops both roles. */
  async stop(): Promise<void> {
    this.#server?.close();
    this.#accepts.close();
    await Promise.all([this.control?.stop(), this.vmm?.stop()]);
  }
}
