// A guest's life after its start: handing it to vmm, its exit (a reboot is a restart), and adoption at daemon start.
// Guests outlive vmd: at start the parent tells live QEMUs from dead ones and re-adopts or cleans up (OpenBSD's vm.c).

import { readFileSync } from 'node:fs';
import { toVmdError } from '../../share/errors.js';
import type { ControlResponse, VmState } from '../../share/protocol.js';
import { logInfo, logWarn } from '../log.js';
import type { Parent } from './context.js';
import { copyImagesRecorded, copyImagesRecovered } from './copy-storage.js';
import { runtimeCleanup, startFailureLogged, vmLaunching, vmStart } from './launch.js';
import type { Entry } from './registry.js';

/** Whether pid is the QEMU vmd started for this VM (pids get reused; the process name tells). */
export function isOurQemu(pid: number, vmId: number): boolean {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes(`process=vmd-${vmId}-`);
  } catch {
    return false;
  }
}

/** Whether pid is a QEMU started to receive a guest (`-incoming`): still `starting`, it never got all of it. */
function isIncomingQemu(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('-incoming');
  } catch {
    return false;
  }
}

/** Waits while a start of the VM is in progress (bounded); the caller looks at the state afterwards. */
export async function untilStarted(e: Entry, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (e.state === 'starting' && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
}

/** Hands a running guest to vmm; until that is done, requests for the guest wait (see Roles.untilVmm). */
export function guestAdopt(p: Parent, e: Entry, adopted: boolean): Promise<void> {
  const id = e.record.id;
  const promise: Promise<void> = guestAdoptNow(p, e, adopted).finally(() => {
    if (p.roles.adoptions.get(id) === promise) p.roles.adoptions.delete(id);
  });
  p.roles.adoptions.set(id, promise);
  return promise;
}

async function guestAdoptNow(p: Parent, e: Entry, adopted: boolean): Promise<void> {
  const rt = e.runtime;
  if (rt === null || rt.pid === null) return;
  try {
    const res = await p.roles.vmmCall((req) => ({
      type: 'vm.adopt', req,
      guest: { vmId: e.record.id, name: e.record.name, pid: rt.pid!, qmpSocket: rt.qmpSocket, consoleSocket: rt.consoleSocket, adopted },
    }));
    const live: VmState = rt.state === 'stopping' ? 'stopping' : res.state ?? 'running';
    p.vms.trySetState(e, live);
  } catch (err) {
    logWarn(`vm "${e.record.name}": cannot re-adopt pid ${rt.pid}: ${toVmdError(err).message}; terminating it`);
    try { process.kill(rt.pid, 'SIGKILL'); } catch { /* gone */ }
    guestExited(p, e.record.id, rt.pid, 'unadoptable');
  }
}

/** A restarted vmm knows nothing: every running guest is handed to it again. */
export function guestsAdoptAgain(p: Parent): void {
  for (const e of p.vms.entries.values()) {
    const pid = e.runtime?.pid;
    if (pid != null && e.state !== 'starting' && isOurQemu(pid, e.record.id)) void guestAdopt(p, e, true);
  }
}

/** A guest's QEMU is gone: its run is cleaned up, and a guest-initiated reset starts it again (rate-limited). */
export function guestExited(p: Parent, vmId: number, pid: number, reason: string): void {
  const e = p.vms.entries.get(vmId);
  // A QEMU that dies while it is being started is its start's failure to report and undo (launch.ts).
  if (e === undefined || e.runtime === null || e.runtime.pid !== pid || vmLaunching(e)) return;
  p.roles.vmm?.send({ type: 'vm.forget', vmId });
  // A one-time boot device (-B) is not carried over: the reboot boots what the VM is configured to, so an
  // installer booted from the CD reboots into the disk it installed (vmctl(8): "for the next boot").
  const reboot = reason === 'guest-reset' && !e.stopRequested;
  const starter = e.runtime.uid;
  runtimeCleanup(p, e);
  p.vms.setState(e, 'stopped');
  p.db.event(vmId, 'exit', reason);
  p.events.vm(e, reboot ? 'rebooted' : 'stopped', { reason });
  logInfo(`vm "${e.record.name}" (vm ${vmId}) ${reboot ? 'rebooted' : `terminated: ${reason}`}`);
  if (!reboot) {
    guestStopped(p, e);
    return;
  }
  // A guest reboot is a restart of the same VM, subject to the rate limit.
  vmStart(p, e, starter, { restart: true }).catch((err: unknown) => {
    if (!startFailureLogged(err)) logWarn(`vm "${e.record.name}": ${toVmdError(err).message}`);
    guestStopped(p, e);
  });
}

/** Answers those waiting for the VM to stop; a VM made by `vmctl start` is forgotten (OpenBSD). */
export function guestStopped(p: Parent, e: Entry): void {
  for (const w of e.waiters.splice(0)) {
    const response: ControlResponse = w.kind === 'stop'
      ? { type: 'vm.stop.response', id: w.reqId, vmId: e.record.id, name: e.record.name, result: 'terminated' }
      : { type: 'vm.wait.response', id: w.reqId, vmId: e.record.id, name: e.record.name };
    p.vms.flush();
    p.roles.control?.send({ type: 'control.response', peer: w.peer, response, close: false });
  }
  if (e.record.origin === 'adhoc') p.vms.remove(e.record.id);
}

/** At daemon start: re-adopts the guests whose QEMU still runs, cleans up after those that died while vmd was down. */
export async function guestsReconcile(p: Parent): Promise<void> {
  for (const e of [...p.vms.entries.values()]) {
    const rt = e.runtime;
    if (rt === null) continue;
    // A receive or migration the daemon died in the middle of: the guest is whole only where it came from (a
    // migration's source resumes it when the client loses the target), so this half never runs.
    if (rt.pid !== null && rt.state === 'starting' && isOurQemu(rt.pid, e.record.id) && isIncomingQemu(rt.pid)) {
      logInfo(`vm "${e.record.name}": pid ${rt.pid} was still receiving the guest, terminating it`);
      try { process.kill(rt.pid, 'SIGKILL'); } catch { /* gone */ }
      const deadline = Date.now() + 5000;
      while (isOurQemu(rt.pid, e.record.id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      // Disks a --copy-storage receive made go with it.
      await copyImagesRecovered(rt.runDir).catch((err: unknown) => logWarn(`vm "${e.record.name}": copy-storage: ${toVmdError(err).message}`));
      runtimeCleanup(p, e);
      p.db.event(e.record.id, 'exit', 'receive-interrupted');
      guestStopped(p, e);
    } else if (rt.pid !== null && isOurQemu(rt.pid, e.record.id)) {
      // A QEMU recorded as still starting has been running for a while: it is adopted as running.
      p.vms.setState(e, rt.state === 'starting' ? 'running' : rt.state);
      await p.network.vmReadopt(e.record.id, e.record.config);
      await guestAdopt(p, e, true);
    } else {
      logInfo(`vm "${e.record.name}": recorded pid ${rt.pid ?? '-'} is gone, cleaning up`);
      // It may have resumed before it died: the images it was given may be the guest's only disks now.
      const left = rt.state === 'starting' ? copyImagesRecorded(rt.runDir) : [];
      if (left.length > 0) logWarn(`vm "${e.record.name}": copy-storage: kept ${left.join(', ')}: the receive may have completed`);
      runtimeCleanup(p, e);
      p.db.event(e.record.id, 'exit', 'gone-while-vmd-was-down');
      p.events.vm(e, 'stopped', { reason: 'gone-while-vmd-was-down' });
      guestStopped(p, e);
    }
  }
}
