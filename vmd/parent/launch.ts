// Launching a guest: the reboot limit, the checks before a start, the QEMU spec and argv, the spawn and its undoing.
// QEMU runs detached as the unprivileged user with the images and taps as inherited descriptors.

import { spawn, type ChildProcess } from 'node:child_process';
import { chownSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_MEMORY, type VmConfig } from '../../share/config.js';
import { errnoMessage } from '../../share/errno.js';
import { VmdError, toVmdError } from '../../share/errors.js';
import type { StartOptions } from '../../share/protocol.js';
import type { VmRuntime } from '../db.js';
import { heapTrimSoon } from '../heap-trim.js';
import { logInfo, logWarn } from '../log.js';
import { qemuArgv } from '../qemu-argv.js';
import type { QemuNic, QemuSpec } from '../qemu-spec.js';
import { fsIdentityOf } from '../user-files.js';
import { seedOpen } from './cloud-init.js';
import type { Parent } from './context.js';
import { diskHoldersCheck } from './disk-holders.js';
import { Descriptors, imagesOpen, type OpenedImages } from './images.js';
import { qemuLogOpen, qemuLogPath } from './qemu-log.js';
import { displayPrepare, displayRemove, displaySeal } from './display-socket.js';
import { nvramOpen } from './nvram.js';
import type { Entry, RestartCount } from './registry.js';
import { passtForwardsCheck, passtQemuNic, passtsStart } from './passt.js';
import { passtStopAll } from '../net/passt-run.js';

const RESTART_WINDOW_MS = 6000;
const RESTART_LIMIT = 3;

/** The kernel command line of a direct boot when vm.conf gives none. */
export const DEFAULT_CMDLINE = 'console=ttyS0';

/**
 * OpenBSD's reboot rate limit: a restart less than 6 s after the previous start counts, the third such one in a row
 * is refused (ERR_RATE_LIMIT); any other start resets the count. Returns the count after this start.
 */
export function restartCount(prev: RestartCount, restart: boolean, now: number, vmId: number): RestartCount {
  if (!restart) return { quick: 0, lastStartMs: now };
  const quick = prev.lastStartMs !== null && now - prev.lastStartMs < RESTART_WINDOW_MS ? prev.quick + 1 : 0;
  if (quick >= RESTART_LIMIT) throw new VmdError('ERR_RATE_LIMIT', `vm ${vmId}: restarted too quickly`);
  return { quick, lastStartMs: now };
}

/**
 * The last lines of QEMU's own log (its stderr), for a start failure's message. QEMU prefixes each line with its
 * program name and echoes the option that failed (`-drive file=/dev/fdset/1,…,id=disk0,…: Failed to get shared
 * "write" lock`); the echo names our descriptors, not the user's files, so only the device id stays.
 */
export function qemuLogTail(path: string): string {
  try {
    const text = readFileSync(path, 'utf8').trim();
    const lines = text.split('\n').filter((l) => l.length > 0).map((l) => l
      .replace(/^qemu-system-[\w-]+: /, '')
      .replace(/^-(?:drive|device|netdev|add-fd) \S*?\bid=([\w.-]+)\S*: /, '$1: ')
      .replace(/^-\w[\w-]* \S+: /, ''));
    return lines.slice(-3).join('; ');
  } catch {
    return '';
  }
}

/** Guests between their spawn and vmm's adoption: their start owns an early exit (guestExited leaves them alone). */
const launching = new WeakSet<Entry>();

/** Whether e's QEMU is still being started, so its exit is the start's failure rather than a guest's exit. */
export function vmLaunching(e: Entry): boolean {
  return launching.has(e);
}

/** Start failures already written to the log, so the callers that log failures of their own do not repeat them. */
const logged = new WeakSet<object>();

/** Whether a start's error was logged by the start itself. */
export function startFailureLogged(err: unknown): boolean {
  return typeof err === 'object' && err !== null && logged.has(err);
}

/** Refusals that need no file opened: unsupported features, nothing to boot, a disk another running guest holds. */
function startCheck(p: Parent, e: Entry): void {
  const vm = e.record.config;
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
    const holder = [...p.vms.entries.values()].find((o) => o !== e && o.runtime !== null && o.record.config.disks.some((od) => od.path === d.path));
    if (holder !== undefined) {
      throw new VmdError('ERR_DISK_LOCKED', `vm "${vm.name}": disk ${d.path}: in use by vm "${holder.record.name}"`, {
        hint: 'give each guest its own disk, e.g. an overlay: vmctl create -b BASE NEW.qcow2',
      });
    }
  }
}

export interface StartRequest {
  readonly bootOnce?: StartOptions['bootDevice'];
  /** A guest reboot: subject to the rate limit. */
  readonly restart?: boolean;
  /** A received guest: QEMU waits paused for its state (vmm hands it the stream). */
  readonly incoming?: boolean;
}

/** Starts e's QEMU for requester uid and hands it to vmm; on any failure nothing of the start is left. */
export async function vmStart(p: Parent, e: Entry, uid: number, opts: StartRequest): Promise<void> {
  if (e.runtime !== null || e.state === 'starting') throw new VmdError('ERR_VM_RUNNING', `vm "${e.record.name}": already running`);
  const vm = e.record.config;
  try {
    e.restarts = restartCount(e.restarts, opts.restart === true, Date.now(), e.record.id);
    startCheck(p, e);
  } catch (err) {
    throw startFailed(e, toVmdError(err));
  }
  p.vms.setState(e, 'starting');
  e.failure = null;
  const fds = new Descriptors();
  const runDir = join(p.env.runRoot, String(e.record.id));
  let child: ChildProcess | null = null;
  let netUp = false;
  try {
    passtStopAll(runDir);
    rmSync(runDir, { recursive: true, force: true });
    const images = await imagesOpen(vm, fsIdentityOf(uid), fds, { root: p.env.root, qemu: p.env.qemuIdentity, runDir });
    // QEMU's image locks would refuse a file another guest writes, or one it reads that this guest would write.
    diskHoldersCheck(vm.name, images.layers, [...p.vms.entries.values()]
      .filter((o) => o !== e && o.runtime?.pid != null).map((o) => ({ name: o.record.name, pid: o.runtime!.pid! })));
    const uefi = nvramOpen(p.env.stateDir, e.record.id, vm, fds);
    const seed = await seedOpen({ stateDir: p.env.stateDir, global: p.config.global, root: p.env.root }, e.record.id, vm, fsIdentityOf(uid), fds);
    mkdirSync(runDir, { recursive: true, mode: 0o700 });
    // PRIV: the run directory belongs to QEMU's user, which creates its QMP and console sockets there.
    chownSync(runDir, p.env.qemuIdentity.uid, p.env.qemuIdentity.gid);
    const display = displayPrepare(p, e);
    const logFd = fds.own(qemuLogOpen(p.env.stateDir, e.record.id));
    const accel = await p.accelFor(vm);
    // The guest's links exist before QEMU does: taps reach it as inherited fds like the images.
    const net = await p.network.vmUp(e.record.id, vm);
    netUp = true;
    p.events.linksUp(e, net.nics);
    for (const fd of net.fds) fds.own(fd);
    passtForwardsCheck(p, e, net.nics);
    const nics: QemuNic[] = net.nics.map((n, i) => (n.kind === 'tap'
      ? { kind: 'tap', fd: fds.pass(n.hostFd), mac: n.mac }
      : n.kind === 'passt' ? passtQemuNic(runDir, i, n.mac)
      : { kind: 'user', mac: n.mac, forwards: n.forwards.map((f) => ({ proto: f.proto, hostPort: f.hostPort, guestPort: f.guestPort })) }));
    const spec = { ...qemuSpecFor(e.record.id, vm, { accel, runDir, images, nics, bootOnce: opts.bootOnce ?? null, sandbox: p.env.root }), uefi, seed, display };
    // A received guest starts paused, waiting for its state (vmm hands QEMU the stream with migrate-incoming).
    const argv = qemuArgv(opts.incoming ? { ...spec, incoming: 'defer', paused: true } : spec);
    const rt: VmRuntime = {
      vmId: e.record.id, state: 'starting', pid: null, uid, runDir, qmpSocket: spec.qmpSocket, consoleSocket: spec.consoleSocket,
      startedAt: new Date().toISOString(), restarts: e.restarts.quick, lastStartMs: e.restarts.lastStartMs, bootOnce: opts.bootOnce ?? null,
    };
    // Intent first: a crash between here and the spawn leaves a record the next start cleans up.
    p.db.runtimePut(rt);
    e.runtime = rt;
    e.stopRequested = false;
    launching.add(e);
    // After the record: a crash from here on leaves a run directory the next vmd's sweep clears of passt.
    await passtsStart(p, e, net.nics, runDir);
    child = await qemuSpawn(p, vm, argv, runDir, logFd, fds.passed);
    const pid = child.pid!;
    // QEMU refusing its argv or an image exits at once: that exit, with QEMU's message, ends the start.
    const exited = new Promise<never>((_, reject) => child!.once('exit', (code, signal) => {
      reject(new VmdError('ERR_QEMU', `vm "${vm.name}": qemu exited during start (${signal ?? `status ${code ?? '?'}`})`));
    }));
    const running: VmRuntime = { ...rt, pid };
    p.db.runtimePut(running);
    e.runtime = running;
    // QEMU died before vmm adopted it, or vmm is gone: the parent reaps and reports it too.
    child.on('exit', () => setTimeout(() => p.onGuestExit(e.record.id, pid, 'exited'), 300));
    p.db.event(e.record.id, 'start', `pid ${pid} uid ${uid}`);
    const adopt = p.roles.vmmCall((req) => ({
      type: 'vm.adopt', req,
      guest: { vmId: e.record.id, name: vm.name, pid, qmpSocket: rt.qmpSocket, consoleSocket: rt.consoleSocket, adopted: false },
    }));
    // vmm gives up too once it sees QEMU gone; whichever says so first decides, and the other is not left unhandled.
    adopt.catch(() => undefined);
    exited.catch(() => undefined);
    const res = await Promise.race([adopt, exited]);
    displaySeal(p, e, uid);
    launching.delete(e);
    p.vms.setState(e, res.state === 'paused' ? 'paused' : 'running');
    logInfo(`started ${vm.name} (vm ${e.record.id}) successfully, tty ${rt.consoleSocket}`);
    if (opts.incoming !== true) p.events.vm(e, 'started', opts.restart === true ? { reason: 'reboot' } : {});
  } catch (err) {
    const ve = startFailed(e, await startUndo(p, e, child, netUp, runDir, err));
    launching.delete(e);
    p.events.vm(e, 'start-failed', { reason: ve.message });
    throw ve;
  } finally {
    fds.closeAll();
  }
}

/** Keeps why a start failed for `vmctl status` until the next start, and logs it: a queued start has nobody else to tell. */
function startFailed(e: Entry, err: VmdError): VmdError {
  e.failure = err.message;
  logWarn(`vm "${e.record.name}": start failed: ${err.message.replace(`vm "${e.record.name}": `, '')}`);
  logged.add(err);
  return err;
}

/** Undoes a failed start (QEMU, links, run directory, runtime record) and says why, in QEMU's words when it has some. */
async function startUndo(p: Parent, e: Entry, child: ChildProcess | null, netUp: boolean, runDir: string, err: unknown): Promise<VmdError> {
  const tail = e.runtime !== null ? qemuLogTail(qemuLogPath(p.env.stateDir, e.record.id)) : '';
  if (child?.pid !== undefined) {
    try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ }
  }
  runtimeCleanup(p, e);
  if (netUp) await p.network.vmDown(e.record.id).catch(() => undefined);
  p.vms.setState(e, 'stopped');
  const ve = toVmdError(err, 'ERR_QEMU');
  if (tail.length > 0 && ve.code === 'ERR_QEMU') {
    const locked = /Failed to get (?:shared )?"\w+" lock|Is another process using the image/.test(tail);
    return new VmdError(locked ? 'ERR_DISK_LOCKED' : 'ERR_QEMU', `vm "${e.record.config.name}": qemu: ${tail}`, {
      cause: err, ...(locked ? { hint: 'another process, perhaps another guest, has the image or its backing file open' } : {}),
    });
  }
  return ve;
}

/** Spawns QEMU detached (a vmd restart does not kill guests), as QEMU's user, with the passed descriptors from fd 3. */
async function qemuSpawn(p: Parent, vm: VmConfig, argv: string[], runDir: string, logFd: number, passed: number[]): Promise<ChildProcess> {
  // PRIV: QEMU is started as the unprivileged user; only root can hand it the descriptors it could not open itself.
  const child = spawn(p.config.global.qemu ?? 'qemu-system-x86_64', argv, {
    detached: true,
    stdio: ['ignore', logFd, logFd, ...passed],
    ...(p.env.root ? { uid: p.env.qemuIdentity.uid, gid: p.env.qemuIdentity.gid } : {}),
    cwd: runDir,
  });
  const spawnError = await new Promise<Error | null>((resolve) => {
    child.once('spawn', () => resolve(null));
    child.once('error', (err) => resolve(err));
  });
  if (spawnError !== null) throw new VmdError('ERR_QEMU', `vm "${vm.name}": qemu: ${errnoMessage(spawnError)}`, { cause: spawnError });
  child.unref();
  return child;
}

/** Removes what a guest's run left: its run directory, runtime record, captures and links. */
export function runtimeCleanup(p: Parent, e: Entry): void {
  if (e.runtime !== null) {
    passtStopAll(e.runtime.runDir);
    rmSync(e.runtime.runDir, { recursive: true, force: true });
    displayRemove(p, e.record.id);
    p.db.runtimeDelete(e.record.id);
  }
  e.runtime = null;
  // Before the links go: a capture on a vanished tap would end anyway, but not as promptly.
  p.captures.stopVm(e.record.id);
  p.events.linksDown(e);
  p.network.vmDown(e.record.id).catch((err: unknown) => logWarn(`vm "${e.record.name}": network: ${toVmdError(err).message}`));
  heapTrimSoon();
}

/** Everything QEMU needs for this VM except the argv layout itself (qemu-argv.ts owns that). */
export function qemuSpecFor(
  id: number, vm: VmConfig,
  rt: { accel: 'kvm' | 'tcg'; runDir: string; images: OpenedImages; nics: QemuNic[]; bootOnce: 'cdrom' | 'disk' | 'net' | null; sandbox: boolean },
): QemuSpec {
  const { kernel, initrd, cdrom, disks, kernelIsLinux } = rt.images;
  return {
    id, name: vm.name,
    memory: vm.memory ?? DEFAULT_MEMORY,
    cpus: vm.cpus ?? 1,
    accel: rt.accel,
    ...(vm.machine == null ? {} : { machine: vm.machine }),
    kernel: kernel === null || !kernelIsLinux ? null : { fd: kernel },
    firmware: kernel !== null && !kernelIsLinux ? { fd: kernel } : null,
    initrd: initrd === null ? null : { fd: initrd },
    // vmd's console is the first serial port: a directly booted kernel without a cmdline is told so.
    cmdline: kernelIsLinux ? vm.cmdline ?? DEFAULT_CMDLINE : null,
    bootDevice: rt.bootOnce ?? vm.bootDevice,
    cdrom: cdrom === null ? null : { fd: cdrom.fd },
    disks: disks.map((d, i) => ({
      fd: d.fd, format: d.format, ...(d.backing.length > 0 ? { backing: d.backing } : {}),
      ...(vm.disks[i]?.bus === undefined ? {} : { bus: vm.disks[i]!.bus }),
    })),
    nics: rt.nics,
    qmpSocket: join(rt.runDir, 'qmp.sock'),
    consoleSocket: join(rt.runDir, 'console'),
    sandbox: rt.sandbox,
  };
}
