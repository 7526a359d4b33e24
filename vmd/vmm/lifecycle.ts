// A guest's lifecycle over QMP: adopting a QEMU the parent started (or one left running by an earlier vmd),
// following its STOP/RESUME/SHUTDOWN events, pausing it, stopping it gracefully or by force.

import { VmdError, toVmdError } from '../../share/errors.js';
import type { GuestHandle } from '../../share/ipc.js';
import type { VmState } from '../../share/protocol.js';
import { logDebug, logWarn } from '../log.js';
import { pidAlive } from '../pid.js';
import { QmpClient } from '../qmp.js';
import { consoleConnect } from './console.js';
import { Guest, guestFinish, guestWatchExit, type Vmm } from './guests.js';

/** QEMU's run states after an outgoing migration: the guest's CPUs are stopped and it may run elsewhere now. */
const MIGRATED = ['postmigrate', 'finish-migrate'];
/** The run states in which a QEMU's guest does not run, none of them to be resumed without being asked. */
const PAUSED = ['paused', ...MIGRATED];

/** Takes a QEMU into the table: connects QMP and the console; returns whether it runs or is paused. */
export async function guestAdopt(vmm: Vmm, h: GuestHandle): Promise<VmState> {
  const old = vmm.guests.get(h.vmId);
  if (old !== undefined && !old.exited && old.handle.pid === h.pid) return old.state;
  // A leftover entry for an earlier QEMU of this VM must not hold on to the new one's sockets.
  if (old !== undefined) guestFinish(vmm, old, 'replaced', false);
  const g = new Guest(h);
  vmm.guests.set(h.vmId, g);
  let qmp: QmpClient;
  try {
    qmp = await QmpClient.connect(h.qmpSocket, { timeoutMs: h.adopted ? 2000 : 10_000, alive: () => pidAlive(h.pid) });
  } catch (err) {
    vmm.guests.delete(h.vmId);
    throw new VmdError('ERR_QEMU', `vm "${h.name}": qmp ${h.qmpSocket}: ${toVmdError(err).message}`, { cause: err });
  }
  g.qmp = qmp;
  qmp.on('event', (name: string, data: unknown) => guestQmpEvent(vmm, g, name, data));
  qmp.on('close', () => guestWatchExit(vmm, g));
  const status = (await qmp.execute('query-status')) as { status?: string; running?: boolean };
  // A guest still waiting for its state after a vmd restart was being received: that receive is gone with the
  // old vmd, and the guest has nothing to run. Refusing it makes the parent terminate it and clean up.
  if (h.adopted && status.status === 'inmigrate') {
    g.exited = true;
    qmp.destroy();
    vmm.guests.delete(h.vmId);
    throw new VmdError('ERR_QEMU', `vm "${h.name}": an unfinished receive`);
  }
  g.state = status.running === false && PAUSED.includes(status.status ?? '') ? 'paused' : 'running';
  if (h.adopted && status.status !== undefined && MIGRATED.includes(status.status)) {
    // Its migration completed (or was finishing) when the vmd conducting it died: whether the target took the
    // guest is unknown here, and resuming it would then run it twice (libvirt leaves such a domain paused too).
    logWarn(`vm "${h.name}": pid ${h.pid} was left by an outgoing migration (qemu ${status.status}): adopted paused; `
      + `if the target runs the guest, stop it here, otherwise unpause it`);
  }
  consoleConnect(g);
  logDebug(`vm ${h.vmId} "${h.name}" pid ${h.pid} ${h.adopted ? 're-adopted' : 'adopted'} (${g.state})`);
  return g.state;
}

/** Follows what QEMU says happened: a shutdown's reason, and pauses or resumes from inside the guest or QMP. */
function guestQmpEvent(vmm: Vmm, g: Guest, name: string, data: unknown): void {
  if (name === 'SHUTDOWN') {
    // A sent or migrated guest's quit is the end of that transfer, and is logged and recorded as such.
    if (g.transfer === 'send' || g.transfer === 'migrate') return;
    const reason = (data as { reason?: unknown } | undefined)?.reason;
    g.shutdownReason = typeof reason === 'string' ? reason : 'shutdown';
  } else if (name === 'STOP' && g.state === 'running') {
    g.state = 'paused';
    vmm.send({ type: 'vm.state', vmId: g.vmId, state: g.state });
  } else if (name === 'RESUME' && g.state === 'paused') {
    g.state = 'running';
    vmm.send({ type: 'vm.state', vmId: g.vmId, state: g.state });
  }
}

/** `vmctl pause` and `unpause`: stops or continues the guest's CPUs; returns the state it is in now. */
export async function guestPause(g: Guest, pause: boolean): Promise<VmState> {
  if (g.qmp === null) throw new VmdError('ERR_QEMU', `vm ${g.handle.name}: no qmp connection`);
  await g.qmp.execute(pause ? 'stop' : 'cont');
  g.state = pause ? 'paused' : 'running';
  return g.state;
}

/** `vmctl stop`: ACPI powerdown, then quit after the stop timeout; `force` quits at once. */
export function guestStop(vmm: Vmm, g: Guest, force: boolean): void {
  if (g.state === 'stopping' && !force) {
    throw new VmdError('ERR_VM_STOPPING', `vm "${g.handle.name}": already stopping`);
  }
  g.state = 'stopping';
  if (g.stopTimer !== null) clearTimeout(g.stopTimer);
  if (force) {
    guestKill(g);
    return;
  }
  g.qmp?.execute('system_powerdown').catch((err: unknown) => logDebug(`vm ${g.vmId} powerdown: ${toVmdError(err).message}`));
  // ACPI is a request the guest may ignore: after the timeout, quit for real (OpenBSD's rc waits 30 s too).
  g.stopTimer = setTimeout(() => {
    logWarn(`vm "${g.handle.name}": no shutdown after ${Math.round(vmm.stopTimeoutMs / 1000)} s, terminating`);
    guestKill(g);
  }, vmm.stopTimeoutMs);
}

/** Quits QEMU over QMP, and SIGKILLs it if it is still there 1.5 s later. */
function guestKill(g: Guest): void {
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

/** Quits a guest's QEMU and waits (bounded) until the process is gone. */
export async function guestQuitAndWait(g: Guest): Promise<void> {
  const pid = g.handle.pid;
  await g.qmp?.execute('quit', undefined, { timeoutMs: 2000 }).catch(() => undefined);
  const deadline = Date.now() + 5000;
  while (pidAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  if (pidAlive(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    while (pidAlive(pid) && Date.now() < deadline + 2000) await new Promise((r) => setTimeout(r, 20));
  }
}
