// QEMU's own log per VM (its stdout and stderr), kept in the state directory across starts until the VM is removed.
// Each start rotates it (qemu.log, .1, .2), so the files are bounded in number; logrotate bounds them in size.

import { mkdirSync, openSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';

/** Generations kept: the current start's log and the two before it. */
export const QEMU_LOG_KEEP = 3;
/** Lines `vmctl log VM` shows at most. */
export const QEMU_LOG_MAX_LINES = 1000;

export function qemuLogDir(stateDir: string, vmId: number): string {
  return join(stateDir, 'log', String(vmId));
}

export function qemuLogPath(stateDir: string, vmId: number): string {
  return join(qemuLogDir(stateDir, vmId), 'qemu.log');
}

/**
 * Rotates the VM's log and opens a fresh one for QEMU to inherit as stdout and stderr. O_APPEND, so logrotate's
 * copytruncate can shorten it under a running QEMU without leaving a hole.
 */
// PRIV: the log directory is root's (0700): QEMU writes through the inherited descriptor, never by path.
export function qemuLogOpen(stateDir: string, vmId: number): number {
  mkdirSync(qemuLogDir(stateDir, vmId), { recursive: true, mode: 0o700 });
  const path = qemuLogPath(stateDir, vmId);
  for (let n = QEMU_LOG_KEEP - 1; n >= 1; n--) {
    try {
      renameSync(n === 1 ? path : `${path}.${n - 1}`, `${path}.${n}`);
    } catch {
      // That generation does not exist yet.
    }
  }
  return openSync(path, 'a', 0o640);
}

/** The last `max` lines of the VM's QEMU logs, oldest generation first; empty when it has none. */
export function qemuLogLines(stateDir: string, vmId: number, max: number = QEMU_LOG_MAX_LINES): string[] {
  const path = qemuLogPath(stateDir, vmId);
  const lines: string[] = [];
  for (let n = QEMU_LOG_KEEP - 1; n >= 0; n--) {
    try {
      const text = readFileSync(n === 0 ? path : `${path}.${n}`, 'utf8');
      lines.push(...text.split('\n').filter((l) => l.length > 0));
    } catch {
      // Not (yet) rotated this far.
    }
  }
  return lines.slice(-max);
}

/** Removes the VM's logs with the VM itself. */
export function qemuLogRemove(stateDir: string, vmId: number): void {
  rmSync(qemuLogDir(stateDir, vmId), { recursive: true, force: true });
}
