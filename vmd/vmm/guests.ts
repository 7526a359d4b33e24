// The vmm role's table of guests: what vmm holds for each running QEMU, and the one way a guest leaves it.
// A guest is finished once (exit, send, replacement, forget); the parent hears of every exit it did not ask for.

import type { Socket } from 'node:net';
import { VmdError } from '../../share/errors.js';
import type { MetricsListen } from '../../share/config.js';
import type { GuestHandle, ParentToVmm, VmmToParent } from '../../share/ipc.js';
import type { VmState } from '../../share/protocol.js';
import type { CarriedCount } from '../../share/migrate-counters.js';
import { heapTrimSoon } from '../heap-trim.js';
import { logDebug } from '../log.js';
import { pidAlive } from '../pid.js';
import type { QmpClient } from '../qmp.js';
import { RingBuffer } from './ring.js';

const CONSOLE_RING_BYTES = 64 * 1024;
const PID_POLL_MS = 250;

/** One guest's QEMU as vmm sees it: its connections, its console backlog and where its lifecycle stands. */
export class Guest {
  qmp: QmpClient | null = null;
  console: Socket | null = null;
  attacher: Socket | null = null;
  readonly ring = new RingBuffer(CONSOLE_RING_BYTES);
  state: VmState = 'running';
  shutdownReason: string | null = null;
  exited = false;
  stopTimer: NodeJS.Timeout | null = null;
  /** A send, receive or live migration in progress holds the guest's migration. */
  transfer: 'send' | 'receive' | 'migrate' | null = null;
  /** A migration's wait for the parent's reading of the guest's firewall counters (vmd/vmm/migrate-counters.ts). */
  countersWaiter: ((counters: readonly CarriedCount[]) => void) | null = null;
  /** Attach requests waiting for the console connection (just after a start or a vmm restart). */
  consoleWaiters: Array<() => void> = [];

  constructor(readonly handle: GuestHandle) {}

  /** Runs the attach requests that waited for the console (connected now, or the guest gone). */
  wakeConsoleWaiters(): void {
    for (const w of this.consoleWaiters.splice(0)) w();
  }

  get vmId(): number {
    return this.handle.vmId;
  }
}

/** Everything the vmm role owns, passed to each of its parts. */
export interface Vmm {
  readonly guests: Map<number, Guest>;
  /** Receive connections by VM id, kept until the parent says what the last reply is (also when the guest is gone). */
  readonly receivers: Map<number, Socket>;
  /** How long a graceful stop waits for the guest before quitting it (the parent's `vmm.config` sets it). */
  stopTimeoutMs: number;
  /** Sends a message to the parent. */
  readonly send: (msg: VmmToParent) => void;
  /** The metrics endpoint (vmd/vmm/metrics.ts), set once the role runs. */
  metrics: MetricsPort | null;
}

/** What the rest of vmm tells the metrics endpoint: where to listen, and the parent's answers. */
export interface MetricsPort {
  configure(listen: MetricsListen | null): void;
  parentAnswered(msg: Extract<ParentToVmm, { type: 'vmm.metrics.data' }>): void;
  close(): void;
}

/** The vmm role's state before the parent has configured it. */
export function vmmCreate(send: (msg: VmmToParent) => void): Vmm {
  return { guests: new Map(), receivers: new Map(), stopTimeoutMs: 30_000, send, metrics: null };
}

/** The guest of a VM that is running now, or ERR_VM_NOT_RUNNING. */
export function guestRunning(vmm: Vmm, vmId: number): Guest {
  const g = vmm.guests.get(vmId);
  if (g === undefined || g.exited) throw new VmdError('ERR_VM_NOT_RUNNING', `vm ${vmId}: not running`);
  return g;
}

/** Takes a guest out of the table and closes vmm's connections to it; `report` tells the parent it exited. */
export function guestFinish(vmm: Vmm, g: Guest, reason: string, report: boolean): void {
  if (g.exited) return;
  g.exited = true;
  if (g.stopTimer !== null) clearTimeout(g.stopTimer);
  g.qmp?.close();
  g.console?.destroy();
  g.attacher?.end();
  vmm.guests.delete(g.vmId);
  g.wakeConsoleWaiters();
  heapTrimSoon();
  if (report) {
    logDebug(`vm ${g.vmId} "${g.handle.name}" exited: ${reason}`);
    vmm.send({ type: 'vm.exited', vmId: g.vmId, pid: g.handle.pid, reason });
  }
}

/** After QMP closed: waits for the process to go, and kills it if it lingers wedged for 5 s. */
export function guestWatchExit(vmm: Vmm, g: Guest): void {
  if (g.exited) return;
  const started = Date.now();
  const poll = (): void => {
    if (g.exited) return;
    if (!pidAlive(g.handle.pid)) {
      guestFinish(vmm, g, g.shutdownReason ?? 'killed', true);
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

/** A guest killed from outside may not close QMP promptly if it was never connected: polls the pids too. */
export function guestsWatchPids(vmm: Vmm): NodeJS.Timeout {
  return setInterval(() => {
    for (const g of vmm.guests.values()) {
      if (!g.exited && !pidAlive(g.handle.pid)) guestFinish(vmm, g, g.shutdownReason ?? 'killed', true);
    }
  }, PID_POLL_MS);
}

/** When vmm ends: closes only its connections; leaving the guests running is the point. */
export function guestsRelease(vmm: Vmm): void {
  vmm.metrics?.close();
  for (const g of vmm.guests.values()) {
    g.qmp?.close();
    g.console?.destroy();
    g.attacher?.destroy();
  }
}
