// DHCP leases on vmd's switches: the fixed lease each guest NIC gets, the dhcp hosts file text that hands them
// out, and dnsmasq's lease file read back for `vmctl links`.

import { readFileSync } from 'node:fs';
import { VmdError } from '../../share/errors.js';
import { formatIPv4, maskOf, parseIPv4 } from './addr.js';
import { defaultRange, invalid, MAC_RE, type DhcpReservation } from './dnsmasq-args.js';

/** One line of a dnsmasq lease file. expiry is epoch seconds, 0 for an infinite lease; `*` fields are null. */
export interface DhcpLease {
  readonly expiry: number;
  readonly mac: string;
  readonly address: string;
  readonly hostname: string | null;
  readonly clientId: string | null;
}

/**
 * The fixed lease of NIC `index` of VM `vmId` on a switch whose host address is `address` (CIDR), as a guest
 * address the default dynamic range never hands out: the pool is the subnet minus network, broadcast, the host
 * address and the dynamic range (for a /24 with the default range: .2–.99, then .200–.254), and NIC i of VM N
 * takes slot 4(N−1)+i of it, or the next free one when `taken` (other guests' fixed leases) holds that.
 * Deterministic for a given set of running guests, and never two guests on one address.
 */
export function fixedLeaseFor(address: string, vmId: number, index: number, taken: ReadonlySet<string> = new Set()): string {
  const spec = { name: `address ${address}` };
  const m = /^([^/]+)\/(\d{1,2})$/.exec(address);
  const len = m ? Number(m[2]) : NaN;
  let addr: number;
  try {
    if (!m || len > 30) throw new Error();
    addr = parseIPv4(m[1]!);
  } catch {
    throw invalid(spec, 'not an IPv4 CIDR of a /30 or larger subnet');
  }
  if (!Number.isSafeInteger(vmId) || vmId < 1 || !Number.isInteger(index) || index < 0 || index > 3) {
    throw invalid(spec, `no fixed lease for vm id ${vmId} interface ${index}`);
  }
  const mask = maskOf(len);
  const net = (addr & mask) >>> 0;
  const bcast = (net | (~mask >>> 0)) >>> 0;
  const [ds, de] = defaultRange(net, bcast, len);
  // The pool as intervals, so a /8 is not a list of 16 million numbers.
  const segments: Array<[number, number]> = [];
  const push = (a: number, b: number): void => {
    for (const [x, y] of addr >= a && addr <= b ? [[a, addr - 1], [addr + 1, b]] : [[a, b]]) if (x! <= y!) segments.push([x!, y!]);
  };
  push(net + 1, ds - 1);
  push(de + 1, bcast - 1);
  const size = segments.reduce((n, [a, b]) => n + b - a + 1, 0);
  const nth = (k: number): number => {
    for (const [a, b] of segments) {
      if (k <= b - a) return a + k;
      k -= b - a + 1;
    }
    return -1;
  };
  const first = ((vmId - 1) * 4 + index) % Math.max(size, 1);
  for (let i = 0; i < size; i++) {
    const candidate = formatIPv4(nth((first + i) % size));
    if (!taken.has(candidate)) return candidate;
  }
  throw new VmdError('ERR_INVALID', `dhcp address range exceeded, vm id ${vmId} interface ${index}: no fixed lease left in ${formatIPv4(net)}/${len}`, {
    hint: 'give the switch a larger subnet',
  });
}

/** dhcp hosts file text for fixed leases (a hosts directory's file holds one): one `mac,address` line each, checked like dnsmasqArgs' hosts. */
export function hostsFileText(hosts: readonly DhcpReservation[]): string {
  return hosts.map((h) => {
    if (!MAC_RE.test(h.mac)) throw new VmdError('ERR_INVALID', `dhcp hosts: bad MAC ${h.mac}`);
    parseIPv4(h.address);
    if (h.hostname !== undefined && !/^[A-Za-z0-9][A-Za-z0-9-]{0,62}$/.test(h.hostname)) throw new VmdError('ERR_INVALID', `dhcp hosts: bad hostname ${h.hostname}`);
    return `${h.mac.toLowerCase()},${h.address}${h.hostname ? `,${h.hostname}` : ''}\n`;
  }).join('');
}

/** A hosts file's `mac,address` lines as a map from MAC to address; a missing file is empty, odd lines are skipped. */
export function readHostsFile(file: string): Map<string, string> {
  const out = new Map<string, string>();
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    const [mac, address] = line.trim().split(',');
    if (mac === undefined || address === undefined || !MAC_RE.test(mac)) continue;
    try {
      parseIPv4(address);
    } catch {
      continue;
    }
    out.set(mac.toLowerCase(), address);
  }
  return out;
}

/** The lease file's guest leases (`<expiry> <mac> <ip> <hostname|*> <client-id|*>`); a missing file is empty, partial lines are skipped. */
export function readLeases(file: string): DhcpLease[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const out: DhcpLease[] = [];
  const lines = text.split('\n');
  // The last piece has no newline after it: dnsmasq may be halfway through writing it.
  lines.pop();
  for (const line of lines) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4 || !/^\d+$/.test(f[0]!) || !MAC_RE.test(f[1]!)) continue;
    try {
      parseIPv4(f[2]!);
    } catch {
      continue;
    }
    out.push({
      expiry: Number(f[0]),
      mac: f[1]!.toLowerCase(),
      address: f[2]!,
      hostname: f[3] === '*' ? null : f[3]!,
      clientId: f[4] === undefined || f[4] === '*' ? null : f[4],
    });
  }
  return out;
}

