// Which host ports are taken in this network namespace, read from /proc/net (no connection is made), and
// which process holds one: a passt forward that clashes with them fails the start naming both sides.

import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** A bound socket of the host: protocol, local port and the socket's inode. */
export interface HostPort {
  readonly proto: 'tcp' | 'udp';
  readonly port: number;
  readonly inode: string;
}

/**
 * The rows of /proc/net/{tcp,tcp6,udp,udp6} text that hold a port: TCP sockets in LISTEN (state 0A), UDP
 * sockets that are bound (any state). Pure, for the unit test.
 */
export function hostPortsOf(proto: 'tcp' | 'udp', text: string): HostPort[] {
  const out: HostPort[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const port = parseInt(f[1]!.split(':')[1] ?? '', 16);
    if (!Number.isSafeInteger(port) || port === 0) continue;
    if (proto === 'tcp' && f[3] !== '0A') continue;
    out.push({ proto, port, inode: f[9]! });
  }
  return out;
}

/** Every port a host socket holds now, in the calling process's network namespace. */
export function hostPortsNow(): HostPort[] {
  const out: HostPort[] = [];
  for (const [proto, file] of [['tcp', 'tcp'], ['tcp', 'tcp6'], ['udp', 'udp'], ['udp', 'udp6']] as const) {
    try { out.push(...hostPortsOf(proto, readFileSync(`/proc/net/${file}`, 'utf8'))); } catch { /* no IPv6 */ }
  }
  return out;
}

/** `NAME (pid N)` of the process holding socket `inode`, or null when none is visible (another user's, as non-root). */
export function socketHolder(inode: string): string | null {
  const target = `socket:[${inode}]`;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let fds: string[];
    try { fds = readdirSync(`/proc/${d}/fd`); } catch { continue; }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${d}/fd/${fd}`) !== target) continue;
        return `${readFileSync(`/proc/${d}/comm`, 'utf8').trim()} (pid ${d})`;
      } catch { /* gone */ }
    }
  }
  return null;
}
