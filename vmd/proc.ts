// A small generic process framework: start a role as a child, talk to it over typed IPC, notice its death.
// It knows nothing about VMs; parent.ts, vmm.ts and control.ts build on it.

import { fork, type ChildProcess } from 'node:child_process';
import type { Socket, Server } from 'node:net';
import { vmdEntry } from '../share/paths.js';
import { logDebug, logWarn } from './log.js';
import { processUndumpable } from './native.js';

export interface RoleSpawnOptions {
  readonly role: string;
  /** Drop to this uid/gid before any role code runs (both always, see HOST-FACTS §8). */
  readonly uid: number | null;
  readonly gid: number | null;
  readonly verbose: number;
  readonly env?: NodeJS.ProcessEnv;
}

export type Handle = Socket | Server;

/*
 * Node flags of vmd's processes. Each is long-lived and does little JavaScript per message, three run at once, and
 * Node's own floor is ~41 MB each, so memory wins over peak speed. RSS of all three with 100 VMs, 20 of them paused,
 * after 1,100 status requests (test/bench/fleet.bench.ts): 166 MB with only the first flag below, 146 MB with all.
 * - a 1 MiB young generation: ~6 MB less per process;
 * - no optimising compiler (TurboFan) anywhere: optimised code, its background compile threads' memory and the
 *   compiler's own pages never came back, ~5 MB per process, and a status round trip got no slower;
 * - the roles (vmm, control) run with no JIT at all: each only routes messages and bytes, and the interpreter alone
 *   saves another ~1.4 MB each, status round trip unchanged (0.61 vs 0.62 ms median). WebAssembly needs the JIT and
 *   is switched off explicitly, or Node warns about it;
 * - the parent keeps the baseline compiler and optimises its heap for size (~2 MB): it parses vm.conf, which for
 *   1,000 VMs takes 0.3 s as before (0.5 s with TurboFan, which costs more to compile than it saves), but for
 *   10,000 VMs 2.5 s instead of 0.85 s;
 * - gc() for heapTrimSoon (vmd/heap-trim.ts): a full collection after guests and connections go, so that churn does not
 *   pile garbage up in the old generation.
 */

/** The parent's flags, carried by vmd.ts's shebang (a test keeps the two equal) and by daemonise(). */
export const PARENT_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1', '--max-opt=1', '--optimize-for-size', '--expose-gc'];

/** Every child role's flags, given to fork(). */
export const ROLE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1', '--jitless', '--no-expose-wasm', '--expose-gc'];

/**
 * The parent's end of a child role: typed send, read receive, exit notification. `read` decodes every message field by
 * field and throws naming the field: the role runs with less privilege than the parent, so a malformed message
 * means the role is broken or subverted; it is killed without its message (or any later one) being acted on.
 */
export class RoleChannel<In, Out> {
  readonly role: string;
  private child: ChildProcess;
  private stopping = false;
  private refused = false;

  constructor(
    options: RoleSpawnOptions,
    private readonly read: (m: unknown) => In,
    private readonly onMessage: (msg: In, handle: Handle | undefined) => void,
    private readonly onExit: (code: number | null, signal: NodeJS.Signals | null) => void,
  ) {
    this.role = options.role;
    const args = ['--role', options.role, ...Array<string>(options.verbose).fill('-v')];
    this.child = fork(vmdEntry, args, {
      ...(options.uid === null ? {} : { uid: options.uid }),
      ...(options.gid === null ? {} : { gid: options.gid }),
      env: options.env ?? process.env,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'json',
      execArgv: [...ROLE_NODE_FLAGS],
    });
    guardChannel(this.child, (why) => this.refuse(why, undefined));
    this.child.on('message', (raw: unknown, handle: Handle | undefined) => {
      // Messages already queued behind a refused one come from the same broken process: none is acted on.
      if (this.refused) return closeHandle(handle);
      let msg: In;
      try {
        msg = this.read(raw);
      } catch (err) {
        this.refuse(err, handle);
        return;
      }
      this.onMessage(msg, handle);
    });
    this.child.on('exit', (code, signal) => {
      if (!this.stopping) logWarn(`${this.role} process exited (${signal ?? `status ${code}`})`);
      else logDebug(`${this.role} process exited`);
      this.onExit(code, signal);
    });
    this.child.on('error', (err) => logWarn(`${this.role}: ${err.message}`));
  }

  /** A malformed message: log why, drop the socket that came with it, kill the role; the exit handler restarts it. */
  private refuse(err: unknown, handle: Handle | undefined): void {
    closeHandle(handle);
    if (this.refused) return;
    this.refused = true;
    logWarn(`${this.role} process: malformed message: ${escapeForLog(err instanceof Error ? err.message : String(err))}`);
    this.child.kill('SIGKILL');
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Sends a message, with a descriptor if given; `onSent` once it is written to the channel or could not be. */
  send(msg: Out, handle?: Handle, onSent?: (err: Error | null) => void): void {
    if (!this.child.connected) {
      if (onSent !== undefined) queueMicrotask(() => onSent(new Error(`${this.role}: channel closed`)));
      return;
    }
    if (handle === undefined) this.child.send(msg as object, onSent);
    else this.child.send(msg as object, handle, { keepOpen: false }, onSent);
  }

  /** Ask the role to finish (IPC disconnect), then kill it if it does not go in time. */
  async stop(timeoutMs = 3000): Promise<void> {
    this.stopping = true;
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    if (this.child.connected) this.child.disconnect();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    await exited;
    clearTimeout(timer);
  }
}

/**
 * Longest line a role may leave unfinished on its channel: Node buffers a line until its newline without a bound. The
 * largest message a role sends is a console request with the bytes read past it, under 3 MB.
 */
const MAX_CHANNEL_LINE = 16 * 1024 * 1024;

/** A symbol-keyed property of Node's own objects, found by its description; undefined when Node has none. */
function findNodeInternal(o: object, description: string): { key: symbol; value: unknown } | undefined {
  const key = Object.getOwnPropertySymbols(o).find((s) => s.description === description);
  return key === undefined ? undefined : { key, value: (o as Record<symbol, unknown>)[key] };
}

/**
 * Node's channel code reads a role's bytes before any reader does: a line that is not JSON throws inside the channel's
 * read callback, and a forged internal message (NODE_HANDLE_ACK with no socket sent) fails an assertion in its
 * listener. Uncaught, either ends the root parent, so both are caught here and refuse the role, as does a line past
 * MAX_CHANNEL_LINE. This reaches into Node's internals (the channel handle and its line buffer, Node 20);
 * test/vmd/proc.test.ts sends each of these and fails if a Node release moves them.
 */
function guardChannel(child: ChildProcess, refuse: (why: string) => void): void {
  const pipe = findNodeInternal(child, 'kChannelHandle')?.value as { onread?: unknown } | undefined;
  if (typeof pipe?.onread !== 'function') {
    logWarn('node: the child process channel is not where vmd looks for it: a role can end the parent with a bad line');
    return;
  }
  const onread = pipe.onread as (...args: unknown[]) => unknown;
  pipe.onread = function guardedOnread(this: unknown, ...args: unknown[]): unknown {
    try {
      return onread.apply(this, args);
    } catch {
      refuse('channel: a line that is not JSON');
      return undefined;
    } finally {
      const pending = findNodeInternal(pipe, 'kJSONBuffer');
      if (typeof pending?.value === 'string' && pending.value.length > MAX_CHANNEL_LINE) {
        (pipe as Record<symbol, unknown>)[pending.key] = '';
        refuse(`channel: a line longer than ${MAX_CHANNEL_LINE} characters`);
      }
    }
  };
  const emit = child.emit as (this: ChildProcess, event: string | symbol, ...args: unknown[]) => boolean;
  child.emit = function guardedEmit(this: ChildProcess, event: string | symbol, ...args: unknown[]): boolean {
    if (event !== 'internalMessage') return emit.call(this, event, ...args);
    try {
      return emit.call(this, event, ...args);
    } catch {
      refuse('channel: a Node internal message that does not fit');
      return false;
    }
  } as typeof child.emit;
}

/** A role's words for the log: control characters escaped (no forged log lines), at most 300 characters. */
function escapeForLog(text: string): string {
  const escaped = text.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return escaped.length > 300 ? `${escaped.slice(0, 300)}...` : escaped;
}

/** Closes a socket or server that came with a message nobody will act on, so its descriptor does not leak. */
function closeHandle(handle: Handle | undefined): void {
  if (handle === undefined) return;
  if ('destroy' in handle) handle.destroy();
  else handle.close();
}

/** The child's end: validated receive, send to the parent, exit when the parent goes away. */
export function roleMain<In, Out>(
  accept: (m: unknown) => m is In,
  onMessage: (msg: In, handle: Handle | undefined, send: (m: Out, h?: Handle) => void) => void,
  onShutdown: () => Promise<void> | void,
): (m: Out, h?: Handle) => void {
  const send = (m: Out, h?: Handle): void => {
    if (!process.connected || process.send === undefined) return;
    if (h === undefined) process.send(m as object);
    else process.send(m as object, h, { keepOpen: false });
  };
  let shuttingDown = false;
  const shutdown = (): void => {
    if (shuttingDown) return;
    shuttingDown = true;
    Promise.resolve(onShutdown()).finally(() => process.exit(0));
  };
  process.on('message', (msg: unknown, handle: Handle | undefined) => {
    if (!accept(msg)) {
      logWarn('unexpected message from the parent, exiting');
      process.exit(1);
    }
    onMessage(msg, handle, send);
  });
  // The parent owns our lifetime: when it goes (orderly or killed), so do we.
  process.on('disconnect', shutdown);
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', () => undefined);
  process.on('SIGHUP', () => undefined);
  // Node opens its debugger on 127.0.0.1:9229 at SIGUSR1, and any local user could then run code in this role.
  // Whoever shares the role's uid may send the signal (QEMU runs as the same user); a listener keeps Node from it.
  process.on('SIGUSR1', () => undefined);
  // For the same reason: QEMU's user must not ptrace the role or write into its memory through /proc.
  processUndumpable();
  return send;
}

/**
 * How often a role may be restarted: at most `max` deaths within `windowMs`. A role that keeps dying (a bug hit by
 * every start, an exhausted resource) must end the daemon cleanly instead of being respawned forever.
 */
export class RestartBudget {
  private deaths: number[] = [];

  constructor(readonly max = 5, readonly windowMs = 60_000, private readonly now: () => number = Date.now) {}

  /** Records a death; false when this one exceeds the budget. */
  spend(): boolean {
    const now = this.now();
    this.deaths = this.deaths.filter((t) => now - t < this.windowMs);
    this.deaths.push(now);
    return this.deaths.length <= this.max;
  }
}
