// The vmm role: owns each running guest's lifecycle over QMP, keeps its console buffered, notices when it dies.
// Unprivileged: it never opens images or touches the network; the parent spawns QEMU and tells vmm to adopt it.

import { connect, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { VmdError, toVmdError, type VmdErrorData } from '../share/errors.js';
import { encodeFrame } from '../share/frame.js';
import { isParentToVmm, type GuestHandle, type ParentToVmm, type VmmToParent } from '../share/ipc.js';
import type { VmState } from '../share/protocol.js';
import { logDebug, logSetVerbose, logWarn } from './log.js';
import { roleMain } from './proc.js';
import { QmpClient } from './qmp.js';

const CONSOLE_RING_BYTES = 64 * 1024;
const PID_POLL_MS = 250;

/**
 * The last N bytes a guest printed, so a late `vmctl console` still sees the boot. The store starts small and
 * doubles up to the capacity as output arrives: most guests print a few KiB at boot, and vmm keeps one per guest.
 */
export class RingBuffer {
  private buf: Buffer;
  private start = 0;
  private length = 0;

  constructor(readonly capacity: number, initial = 4096) {
    this.buf = Buffer.alloc(Math.min(capacity, initial));
  }

  /** Bytes held now (at most the capacity). */
  get size(): number {
    return this.length;
  }

  write(chunk: Buffer): void {
    if (chunk.length >= this.capacity) {
      if (this.buf.length < this.capacity) this.buf = Buffer.alloc(this.capacity);
      chunk.copy(this.buf, 0, chunk.length - this.capacity);
      this.start = 0;
      this.length = this.capacity;
      return;
    }
    const needed = this.length + chunk.length;
    if (needed > this.buf.length && this.buf.length < this.capacity) {
      let size = this.buf.length;
      while (size < needed && size < this.capacity) size *= 2;
      const grown = Buffer.alloc(Math.min(size, this.capacity));
      this.contents().copy(grown);
      this.buf = grown;
      this.start = 0;
    }
    const cap = this.buf.length;
    const end = (this.start + this.length) % cap;
    const first = Math.min(chunk.length, cap - end);
    chunk.copy(this.buf, end, 0, first);
    chunk.copy(this.buf, 0, first);
    if (needed > cap) {
      this.start = (this.start + needed - cap) % cap;
      this.length = cap;
    } else this.length = needed;
  }

  contents(): Buffer {
    const cap = this.buf.length;
    const end = this.start + this.length;
    if (end <= cap) return Buffer.from(this.buf.subarray(this.start, end));
    return Buffer.concat([this.buf.subarray(this.start), this.buf.subarray(0, end - cap)]);
  }
}

/** Whether a pid is a live process (a zombie counts as gone: nobody may be reaping a re-adopted QEMU). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

class Guest {
  qmp: QmpClient | null = null;
  console: Socket | null = null;
  attacher: Socket | null = null;
  readonly ring = new RingBuffer(CONSOLE_RING_BYTES);
  state: VmState = 'running';
  shutdownReason: string | null = null;
  exited = false;
  stopTimer: NodeJS.Timeout | null = null;

  constructor(readonly handle: GuestHandle) {}

  get vmId(): number {
    return this.handle.vmId;
  }
}

/** Runs the vmm role until the parent goes away; guests keep running when it does. */
export function vmmMain(): void {
  const guests = new Map<number, Guest>();
  let stopTimeoutMs = 30_000;

  const send = roleMain<ParentToVmm, VmmToParent>(
    isParentToVmm,
    (msg, handle) => {
      dispatch(msg, handle as Socket | undefined).catch((err: unknown) => logWarn(`${msg.type}: ${toVmdError(err).message}`));
    },
    () => {
      // Leaving guests running is the point: only our connections to them close.
      for (const g of guests.values()) {
        g.qmp?.close();
        g.console?.destroy();
        g.attacher?.destroy();
      }
    },
  );

  const result = (req: number, error: VmdErrorData | null, state?: VmState): void => {
    send(state === undefined ? { type: 'vm.result', req, error } : { type: 'vm.result', req, error, state });
  };

  const guestOf = (vmId: number): Guest => {
    const g = guests.get(vmId);
    if (g === undefined || g.exited) throw new VmdError('ERR_VM_NOT_RUNNING', `vm ${vmId}: not running`);
    return g;
  };

  async function dispatch(msg: ParentToVmm, handle: Socket | undefined): Promise<void> {
    switch (msg.type) {
      case 'vmm.config':
        logSetVerbose(msg.verbose);
        stopTimeoutMs = msg.stopTimeoutMs;
        return;
      case 'log.verbose':
        logSetVerbose(msg.level);
        return;
      case 'vm.adopt':
        try {
          const state = await adopt(msg.guest);
          result(msg.req, null, state);
        } catch (err) {
          result(msg.req, toVmdError(err, 'ERR_QEMU').toJSON());
        }
        return;
      case 'vm.stop':
        try {
          stop(guestOf(msg.vmId), msg.force);
          result(msg.req, null);
        } catch (err) {
          result(msg.req, toVmdError(err).toJSON());
        }
        return;
      case 'vm.pause':
      case 'vm.unpause':
        try {
          const g = guestOf(msg.vmId);
          if (g.qmp === null) throw new VmdError('ERR_QEMU', `vm ${g.handle.name}: no qmp connection`);
          await g.qmp.execute(msg.type === 'vm.pause' ? 'stop' : 'cont');
          g.state = msg.type === 'vm.pause' ? 'paused' : 'running';
          result(msg.req, null, g.state);
        } catch (err) {
          result(msg.req, toVmdError(err, 'ERR_QEMU').toJSON());
        }
        return;
      case 'vm.console.attach':
        if (handle === undefined) return;
        attach(msg.vmId, msg.reqId, msg.name, handle, Buffer.from(msg.remainder, 'base64'));
        return;
      case 'vm.forget': {
        const g = guests.get(msg.vmId);
        if (g !== undefined) finish(g, 'forgotten', false);
        return;
      }
    }
  }

  async function adopt(h: GuestHandle): Promise<VmState> {
    const old = guests.get(h.vmId);
    if (old !== undefined && !old.exited && old.handle.pid === h.pid) return old.state;
    // A leftover entry for an earlier QEMU of this VM must not hold on to the new one's sockets.
    if (old !== undefined) finish(old, 'replaced', false);
    const g = new Guest(h);
    guests.set(h.vmId, g);
    try {
      g.qmp = await QmpClient.connect(h.qmpSocket, { timeoutMs: h.adopted ? 2000 : 10_000 });
    } catch (err) {
      guests.delete(h.vmId);
      throw new VmdError('ERR_QEMU', `vm "${h.name}": qmp ${h.qmpSocket}: ${toVmdError(err).message}`);
    }
    g.qmp.on('event', (name: string, data: unknown) => {
      if (name === 'SHUTDOWN') {
        const reason = (data as { reason?: unknown } | undefined)?.reason;
        g.shutdownReason = typeof reason === 'string' ? reason : 'shutdown';
      } else if (name === 'STOP' && g.state === 'running') {
        g.state = 'paused';
        send({ type: 'vm.state', vmId: g.vmId, state: g.state });
      } else if (name === 'RESUME' && g.state === 'paused') {
        g.state = 'running';
        send({ type: 'vm.state', vmId: g.vmId, state: g.state });
      }
    });
    g.qmp.on('close', () => watchExit(g));
    const status = (await g.qmp.execute('query-status')) as { status?: string; running?: boolean };
    g.state = status.running === false && status.status === 'paused' ? 'paused' : 'running';
    connectConsole(g);
    logDebug(`vm ${h.vmId} "${h.name}" pid ${h.pid} ${h.adopted ? 're-adopted' : 'adopted'} (${g.state})`);
    return g.state;
  }

  function connectConsole(g: Guest, attempt = 0): void {
    if (g.exited) return;
    const sock = connect(g.handle.consoleSocket);
    sock.on('connect', () => {
      g.console = sock;
    });
    // QEMU writes the serial console a byte or so at a time: relay what arrived in one event-loop turn as one write.
    let pending: Buffer[] = [];
    sock.on('data', (chunk: Buffer) => {
      g.ring.write(chunk);
      if (g.attacher === null) return;
      if (pending.length === 0) {
        setImmediate(() => {
          const out = pending.length === 1 ? pending[0]! : Buffer.concat(pending);
          pending = [];
          g.attacher?.write(out);
        });
      }
      pending.push(chunk);
    });
    sock.on('error', (err) => {
      logDebug(`vm ${g.vmId} console: ${err.message}`);
    });
    sock.on('close', () => {
      if (g.console === sock) g.console = null;
      if (!g.exited && attempt < 20 && pidAlive(g.handle.pid)) {
        setTimeout(() => connectConsole(g, attempt + 1), 100);
      }
    });
  }

  function attach(vmId: number, reqId: number, name: string, client: Socket, remainder: Buffer): void {
    const g = guests.get(vmId);
    const fail = (code: 'ERR_CONSOLE_BUSY' | 'ERR_VM_NOT_RUNNING' | 'ERR_CONSOLE', message: string): void => {
      client.end(encodeFrame({ type: 'error', id: reqId, error: { code, message } }));
    };
    client.on('error', () => client.destroy());
    if (g === undefined || g.exited) return fail('ERR_VM_NOT_RUNNING', `vm "${name}": not running`);
    if (g.attacher !== null && !g.attacher.destroyed) {
      return fail('ERR_CONSOLE_BUSY', `console of vm "${name}": already attached by another vmctl`);
    }
    if (g.console === null) return fail('ERR_CONSOLE', `console of vm "${name}": not connected yet, try again`);
    g.attacher = client;
    client.write(encodeFrame({ type: 'vm.console.response', id: reqId, vmId, name }));
    const tail = g.ring.contents();
    if (tail.length > 0) client.write(tail);
    if (remainder.length > 0) g.console.write(remainder);
    client.on('data', (chunk: Buffer) => g.console?.write(chunk));
    client.on('close', () => {
      if (g.attacher === client) g.attacher = null;
    });
    client.resume();
  }

  function stop(g: Guest, force: boolean): void {
    if (g.state === 'stopping' && !force) {
      throw new VmdError('ERR_VM_STOPPING', `vm "${g.handle.name}": already stopping`);
    }
    g.state = 'stopping';
    if (g.stopTimer !== null) clearTimeout(g.stopTimer);
    if (force) {
      kill(g);
      return;
    }
    g.qmp?.execute('system_powerdown').catch((err: unknown) => logDebug(`vm ${g.vmId} powerdown: ${toVmdError(err).message}`));
    // ACPI is a request the guest may ignore: after the timeout, quit for real (OpenBSD's rc waits 30 s too).
    g.stopTimer = setTimeout(() => {
      logWarn(`vm "${g.handle.name}": no shutdown after ${Math.round(stopTimeoutMs / 1000)} s, terminating`);
      kill(g);
    }, stopTimeoutMs);
  }

  function kill(g: Guest): void {
    const pid = g.handle.pid;
    g.qmp?.execute('quit', undefined, { timeoutMs: 1000 }).catch(() => undefined);
    setTimeout(() => {
      if (pidAlive(pid)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone meanwhile */
        }
      }
    }, 1500).unref();
  }

  function watchExit(g: Guest): void {
    if (g.exited) return;
    const started = Date.now();
    const poll = (): void => {
      if (g.exited) return;
      if (!pidAlive(g.handle.pid)) {
        finish(g, g.shutdownReason ?? 'killed', true);
        return;
      }
      // QMP closed but the process lingers: it is wedged, finish it.
      if (Date.now() - started > 5000) {
        try {
          process.kill(g.handle.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      setTimeout(poll, 50);
    };
    poll();
  }

  function finish(g: Guest, reason: string, report: boolean): void {
    if (g.exited) return;
    g.exited = true;
    if (g.stopTimer !== null) clearTimeout(g.stopTimer);
    g.qmp?.close();
    g.console?.destroy();
    g.attacher?.end();
    guests.delete(g.vmId);
    if (report) {
      logDebug(`vm ${g.vmId} "${g.handle.name}" exited: ${reason}`);
      send({ type: 'vm.exited', vmId: g.vmId, pid: g.handle.pid, reason });
    }
  }

  // A guest killed from outside may not close QMP promptly if it was never connected: poll pids too.
  setInterval(() => {
    for (const g of guests.values()) {
      if (!g.exited && !pidAlive(g.handle.pid)) finish(g, g.shutdownReason ?? 'killed', true);
    }
  }, PID_POLL_MS);

  send({ type: 'vmm.ready' });
}
