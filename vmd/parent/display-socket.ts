// A guest's VNC socket: its own directory, made before QEMU starts, and its owner, set once QEMU has bound it.
// QEMU (unprivileged) makes the socket; the parent then takes the directory back, so only root and the VM's owner reach it.
//
// Why a directory of its own beside the run directory (RUN/ID.display/vnc.sock), not in RUN/ID: the parent connects
// to the socket as root and hands the connection to control, so the path it connects to must be one no unprivileged
// user can change. QEMU's run directory is QEMU's user's; a symlink planted there (vnc.sock -> /run/docker.sock)
// would have root connect to any socket on the host. RUN is root's, so RUN/ID.display is the directory the parent
// made; once QEMU has bound its socket the parent makes that directory root's (0711), checks with lstat that
// vnc.sock is a socket of QEMU's user (not a link, not anything else), and only then gives it to the VM's owner.

import { chmodSync, chownSync, lstatSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { VmdError } from '../../share/errors.js';
import type { Parent } from './context.js';
import type { Entry } from './registry.js';

/** The directory of VM `id`'s VNC socket, beside its run directory. */
export function displayDir(runRoot: string, id: number): string {
  return join(runRoot, `${id}.display`);
}

/** The VNC socket QEMU serves VM `id`'s screen on. */
export function displaySocket(runRoot: string, id: number): string {
  return join(displayDir(runRoot, id), 'vnc.sock');
}

/** Before QEMU starts: an empty directory QEMU's user may create its socket in, or nothing for a VM without display. */
export function displayPrepare(p: Parent, e: Entry): { vncSocket: string } | null {
  const dir = displayDir(p.env.runRoot, e.record.id);
  rmSync(dir, { recursive: true, force: true });
  if (e.record.config.display !== 'vnc') return null;
  mkdirSync(dir, { mode: 0o700 });
  // PRIV: QEMU runs as its own user and binds the socket here; the directory is taken back in displaySeal.
  if (p.env.root) chownSync(dir, p.env.qemuIdentity.uid, p.env.qemuIdentity.gid);
  return { vncSocket: displaySocket(p.env.runRoot, e.record.id) };
}

/**
 * Once QEMU runs (it binds before its QMP monitor answers): the directory becomes root's and the socket the owner's,
 * 0600, or 0660 with the owner group. Throws when the socket is not QEMU's, which fails the start.
 */
export function displaySeal(p: Parent, e: Entry, uid: number): void {
  if (e.record.config.display !== 'vnc') return;
  const dir = displayDir(p.env.runRoot, e.record.id);
  const path = displaySocket(p.env.runRoot, e.record.id);
  // PRIV: root takes the directory back first, so that nothing in it can change between the check and the chown.
  if (p.env.root) chownSync(dir, 0, 0);
  chmodSync(dir, 0o711);
  const st = lstatSync(path, { throwIfNoEntry: false });
  if (st === undefined || !st.isSocket() || st.uid !== p.env.qemuIdentity.uid) {
    throw new VmdError('ERR_QEMU', `vm "${e.record.name}": display: ${path}: not a socket of qemu's user`, {
      hint: 'qemu did not make its VNC socket; see vmctl log',
    });
  }
  // The configured owner, else whoever started it (OpenBSD's vm_uid), as vm_checkperm allows both.
  const owner = e.record.ownerUid !== 0 ? e.record.ownerUid : uid;
  const group = e.record.ownerGid;
  // PRIV: the socket goes to the VM's owner (and its owner group), so QEMU's user cannot reach the screen either.
  if (p.env.root) chownSync(path, owner, group ?? 0);
  chmodSync(path, group === null ? 0o600 : 0o660);
}

/**
 * Whether the socket may be connected to as root: its directory sealed (root's, so nothing in it can change), the
 * socket a socket. A guest whose start a vmd crash interrupted before displaySeal has an unsealed one: refused.
 */
export function displaySealed(p: Parent, id: number): boolean {
  const dir = lstatSync(displayDir(p.env.runRoot, id), { throwIfNoEntry: false });
  const sock = lstatSync(displaySocket(p.env.runRoot, id), { throwIfNoEntry: false });
  const owner = p.env.root ? 0 : process.getuid?.() ?? 0;
  return dir !== undefined && dir.isDirectory() && dir.uid === owner && (dir.mode & 0o022) === 0 && sock !== undefined && sock.isSocket();
}

/** After the guest: its display directory goes with the run directory. */
export function displayRemove(p: Parent, id: number): void {
  rmSync(displayDir(p.env.runRoot, id), { recursive: true, force: true });
}

