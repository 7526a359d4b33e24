// A guest's graphical console on QEMU's command line: a VGA card and its screen as VNC on a unix socket.
// Pure, called by vmd/qemu-argv.ts; the parent owns the socket's directory and its permissions (vmd/parent/display.ts).

import { CONTROL_CHARS } from '../share/names.js';
import { opts } from './qemu-disks.js';
import type { QemuSpec } from './qemu-spec.js';

/** Longest unix socket path Linux accepts (sun_path is 108 bytes with the NUL). */
const MAX_SOCKET_PATH = 107;

/** Why the display part of a spec cannot run, or null: an absolute, short socket path, and a machine with PCI. */
export function displaySpecError(spec: QemuSpec): string | null {
  const d = spec.display;
  if (d === undefined || d === null) return null;
  if (typeof d.vncSocket !== 'string' || !d.vncSocket.startsWith('/')) return `vnc socket: path must be absolute: ${String(d.vncSocket)}`;
  if (CONTROL_CHARS.test(d.vncSocket)) return 'vnc socket: path contains control characters';
  if (Buffer.byteLength(d.vncSocket) > MAX_SOCKET_PATH) return `vnc socket path too long: ${d.vncSocket}`;
  if (d.vncSocket === spec.qmpSocket || d.vncSocket === spec.consoleSocket) return 'vnc socket must differ from the qmp and console sockets';
  if (spec.machine === 'microvm') return 'machine microvm has no bus for a display';
  return null;
}

/**
 * QEMU's standard VGA (Bochs VBE: every installer and firmware drives it) and a VNC server on the socket. The
 * `-display none` before stays: it concerns local windows, and VNC is a server beside them. No password: the
 * socket's permissions are the access control, and only vmd relays to it.
 */
export function pushDisplayArgs(argv: string[], spec: QemuSpec): void {
  const d = spec.display;
  if (d === undefined || d === null) return;
  argv.push('-device', 'VGA,id=video0');
  argv.push('-vnc', opts([`unix:${d.vncSocket}`]));
}
