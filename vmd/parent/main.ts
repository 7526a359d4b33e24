// The parent role (root): reads vm.conf, owns the SQLite state, opens images, spawns QEMU and reaps it.
// parentMain wires the parts of this folder together; it never parses bytes from QEMU or from socket clients.

import { mkdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { VmConfig } from '../../share/config.js';
import { toVmdError } from '../../share/errors.js';
import { socketPath, stateDir as defaultStateDir, vmdUser } from '../../share/paths.js';
import { getpwnam } from '../../share/users.js';
import { probeAccelCached } from '../accel.js';
import { Captures } from '../capture.js';
import { StateDb } from '../db.js';
import { logInfo, logSetVerbose, logWarn } from '../log.js';
import { Network } from '../network.js';
import { configLoad, configRegister, configReload, formatDiag } from './config.js';
import type { Parent, ParentEnv, ParentOptions } from './context.js';
import { parentDispatchControl, parentDispatchVmm } from './dispatch.js';
import { startFailureLogged, vmStart } from './launch.js';
import { qemuLogRemove } from './qemu-log.js';
import { directoriesCheck } from './reach.js';
import { ParentEvents } from './events.js';
import { seedRemove } from './cloud-init.js';
import { guestExited, guestsReconcile } from './lifecycle.js';
import { nvramRemove } from './nvram.js';
import { VmRegistry } from './registry.js';
import { Roles } from './roles.js';
import { StaggerQueue } from './stagger.js';
import { passtSweep } from './passt.js';
import { migrateKeysSweep } from './migrate-tls.js';

export type { ParentOptions } from './context.js';

/** The parent's unchanging facts; null (after logging why) when the unprivileged user is missing. */
function parentEnv(options: ParentOptions): ParentEnv | null {
  const root = process.getuid?.() === 0;
  const stateDir = defaultStateDir();
  let ident = null;
  if (root) {
    const u = getpwnam(vmdUser());
    if (u === null) {
      logWarn(`unknown user ${vmdUser()}: create it (share/setup does) or set VMD_USER`);
      return null;
    }
    ident = { uid: u.uid, gid: u.gid };
  }
  const self = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  return {
    options, root, selfUid: self.uid, ident, qemuIdentity: ident ?? self,
    stateDir, runRoot: join(stateDir, 'run'), sockPath: socketPath(),
  };
}

/** `accel auto`: probed once per daemon with the configured QEMU, the answer kept while boot, QEMU and /dev/kvm stay. */
function accelChooser(p: () => Parent): { auto: () => Promise<'kvm' | 'tcg'>; forVm: (vm: VmConfig) => Promise<'kvm' | 'tcg'> } {
  let probe: Promise<'kvm' | 'tcg'> | null = null;
  const auto = (): Promise<'kvm' | 'tcg'> => {
    const { env, config } = p();
    probe ??= probeAccelCached(join(env.stateDir, 'accel.json'), config.global.qemu === null ? {} : { qemu: config.global.qemu })
      .then((r) => {
        logInfo(`accelerator: ${r.accel} (${r.reason}${r.cached ? ', remembered from an earlier probe' : ''})`);
        return r.accel;
      });
    return probe;
  };
  const forVm = async (vm: VmConfig): Promise<'kvm' | 'tcg'> => {
    const wanted = vm.accel ?? p().config.global.accel;
    return wanted === 'auto' ? auto() : wanted;
  };
  return { auto, forVm };
}

/** Runs the parent until SIGTERM; resolves with the exit status. */
export async function parentMain(options: ParentOptions): Promise<number> {
  logSetVerbose(options.verbose);
  const env = parentEnv(options);
  if (env === null) return 1;
  const loaded = configLoad(options.file, options.macros);
  if (loaded.config === null) {
    for (const d of loaded.diagnostics) logWarn(formatDiag(d));
    return 1;
  }
  mkdirSync(env.runRoot, { recursive: true, mode: 0o755 });
  migrateKeysSweep(env.runRoot);
  try {
    directoriesCheck(env, vmdUser());
  } catch (err) {
    const ve = toVmdError(err);
    logWarn(ve.message);
    if (ve.hint !== undefined) logWarn(`hint: ${ve.hint}`);
    return 1;
  }
  const db = new StateDb(env.stateDir);
  let exitResolve!: (code: number) => void;
  const exited = new Promise<number>((r) => { exitResolve = r; });
  const fatal = (err: unknown): void => {
    logWarn(`fatal: ${toVmdError(err).message}`);
    void shutdown(1);
  };
  const roles = new Roles(env, {
    vmm: (msg, generation) => parentDispatchVmm(p, msg, generation),
    control: (msg, handle) => parentDispatchControl(p, msg, handle),
    fatal,
    shuttingDown: () => p.shuttingDown,
    socketOwner: () => p.config.global.socketOwner,
  });
  const vms = new VmRegistry(db, (list, warnings) => {
    if (roles.control === null) return false;
    roles.control.send({ type: 'control.status', vms: list, warnings });
    return true;
  }, (id) => {
    nvramRemove(env.stateDir, id);
    seedRemove(env.stateDir, id);
  });
  vms.removed = (id) => qemuLogRemove(env.stateDir, id);
  const accel = accelChooser(() => p);
  const p: Parent = {
    env, config: loaded.config, db, vms, roles,
    events: new ParentEvents((msg) => roles.control?.send(msg)),
    network: new Network(loaded.config, db, env.stateDir, env.root),
    captures: new Captures(),
    stagger: new StaggerQueue({
      vms,
      settings: () => p.config.global.staggered,
      start: (e) => vmStart(p, e, env.selfUid, {}).catch((err: unknown) => {
        if (!startFailureLogged(err)) logWarn(`vm "${e.record.name}": ${toVmdError(err).message}`);
      }),
      stopped: () => p.shuttingDown,
    }),
    transfers: new Set(),
    accelFor: accel.forVm,
    onGuestExit: (vmId, pid, reason) => guestExited(p, vmId, pid, reason),
    shuttingDown: false,
  };

  const shutdown = async (code: number): Promise<void> => {
    if (p.shuttingDown) return;
    p.shuttingDown = true;
    p.stagger.stop();
    await Promise.all([roles.stop(), p.captures.stopAll()]);
    await p.network.shutdown().catch(() => undefined);
    try { unlinkSync(env.sockPath); } catch { /* gone */ }
    db.close();
    logInfo('exiting; guests keep running');
    exitResolve(code);
  };
  process.on('SIGTERM', () => void shutdown(0));
  process.on('SIGINT', () => void shutdown(0));
  process.on('SIGHUP', () => {
    configReload(p).catch((err: unknown) => logWarn(`reload: ${toVmdError(err).message}`));
  });

  vms.onMove = (e, from, to) => p.events.moved(e, from, to);
  vms.load();
  // Probe once, in the background, so the first start does not wait for it.
  if (p.config.global.accel === 'auto') void accel.auto();
  configRegister(p, p.config, 'config');
  await p.network.cleanupStale();
  await p.network.switchesUp();
  roles.startVmm();
  await roles.vmmReady;
  await guestsReconcile(p);
  p.network.leasesPrune();
  passtSweep(p);
  db.trimEvents();
  await p.network.sync();
  warningsRefresh(p);
  setInterval(() => warningsRefresh(p), 10_000).unref();
  await roles.startControl();
  p.stagger.queueEnabled(p.config);
  return exited;
}

/** Another firewall dropping forwarded traffic (Docker's FORWARD DROP) is worth a warning in `vmctl status`. */
function warningsRefresh(p: Parent): void {
  p.network.warnings().then((w) => {
    p.vms.warnings = w;
    // Also picks up renamed users and groups in the OWNER column.
    p.vms.publish();
  }, () => undefined);
}
