// Process liveness by pid, for processes vmd may not be the parent of (re-adopted QEMUs, dnsmasq, other vmds).

import { readFileSync } from 'node:fs';

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
