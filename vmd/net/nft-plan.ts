// What vmd wants of nftables in one network namespace (a NetPlan: switches, links, forwards, NAT), and the
// validators of each name and address in it, which nft-check.ts applies before anything is rendered.

import { VmdError } from '../../share/errors.js';
import type { FilterRule } from '../../share/config.js';
import { formatIPv6, parseIPv6 } from './addr.js';
import { ifNameError } from '../../share/names.js';

// Everything vmd wants in one network namespace; the caller (links/switches) builds it, nftScript renders it.
export interface NetPlan {
  readonly switches: readonly NetSwitch[];
  readonly links: readonly NetLink[];
  readonly forwards: readonly NetForward[];
  /** Source CIDRs masqueraded when leaving towards anything that is not one of them (local links' /31s, nat switches' subnets). */
  readonly masquerade: readonly string[];
  /**
   * Optional glob of nft files included inside `table inet vmd { … }` (e.g. /etc/vmd/nft.d/*.nft): nft sets are
   * table-local, so this is where a user's own chains can match `@group_NAME`, and they survive every replace.
   */
  readonly include?: string | null;
  /**
   * Group names whose `group_NAME` sets exist even with no member (every group vm.conf names): a user's included
   * rule that matches `@group_NAME` must not break the whole table while no guest of that group runs.
   */
  readonly groups?: readonly string[];
  /** IPv6 source CIDRs masqueraded like `masquerade` (NAT66 for the /96s of `local inet6`). */
  readonly masquerade6?: readonly string[];
}

// A switch as nftables sees it: its bridge, subnet and group.
export interface NetSwitch {
  readonly name: string;
  readonly bridge: string;
  /** CIDR of the switch address, e.g. 10.0.0.1/24, or null. */
  readonly subnet: string | null;
  /** Masquerade the subnet out of the host (added to NetPlan.masquerade). */
  readonly nat: boolean;
  /** Interface group the bridge joins. */
  readonly group: string | null;
}

// A managed link (tap) as nftables sees it.
export interface NetLink {
  /** The tap's name. */
  readonly name: string;
  readonly vmId: number;
  readonly vm: string;
  /** NIC index in the VM, for comments (`if0`); the link name is used when absent. */
  readonly index?: number;
  /** The bridge it is attached to, or null for a routed (local) link. */
  readonly bridge: string | null;
  readonly mac: string;
  readonly lockMac: boolean;
  /** The only source IPv4 the guest may use (0.0.0.0 stays allowed, for DHCP), or null. */
  readonly lockIp: string | null;
  /** Addresses of a local (routed /31) link, or null. */
  readonly local: { readonly host: string; readonly guest: string } | null;
  readonly groups: readonly string[];
  /** Filter rules of its interface block (firewall.ts); none = everything passes. */
  readonly rules?: readonly FilterRule[];
  /** The only global source IPv6 the guest may use (`::` and link-local stay allowed, for DAD and neighbour discovery). */
  readonly lockIp6?: string | null;
  /**
   * A bridged link's only IPv6 source besides `::`: the link-local address of its lladdr (EUI-64), which is also
   * the only target its neighbour advertisements may claim. Set where its IPv4 source is bound.
   */
  readonly lockLinkLocal?: string | null;
  /** Services the guest may not offer, dropped as they leave it: DHCP/DHCPv6 replies; router advertisements and redirects. */
  readonly guard?: { readonly dhcp: boolean; readonly router: boolean } | null;
}

// A port forward: host port to guest address and port.
export interface NetForward {
  readonly proto: 'tcp' | 'udp';
  readonly hostPort: number;
  /** The guest's IPv4 address. */
  readonly guest: string;
  readonly guestPort: number;
  readonly vm: string;
  /** The bridge or link the guest is reached through (gets route_localnet, and 127/8 is masqueraded out of it). */
  readonly via: string;
}

/** Interface names as nft and ip(8) take them. */
/** VM names end up inside a double-quoted nft comment, which has no escapes. */
export const VMNAME = /^[^"\\\x00-\x1f\x7f]{1,64}$/;
export const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

export function invalid(message: string): never {
  throw new VmdError('ERR_INVALID', message);
}

export function ipv4(text: string, what: string): number {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (m === null) invalid(`${what}: invalid ipv4 address ${JSON.stringify(text)}`);
  const octets = m.slice(1).map(Number);
  if (octets.some((o, i) => o > 255 || String(o) !== m[i + 1])) invalid(`${what}: invalid ipv4 address ${JSON.stringify(text)}`);
  return ((octets[0]! << 24) | (octets[1]! << 16) | (octets[2]! << 8) | octets[3]!) >>> 0;
}

export function dotted(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** A CIDR reduced to its network: `10.0.0.1/24` → `10.0.0.0/24`. */
export function network(cidr: string, what: string): { addr: number; len: number; text: string } {
  const slash = cidr.indexOf('/');
  if (slash < 0) invalid(`${what}: invalid cidr ${JSON.stringify(cidr)}`);
  const lenText = cidr.slice(slash + 1);
  const len = Number(lenText);
  if (!/^\d{1,2}$/.test(lenText) || len > 32) invalid(`${what}: invalid cidr ${JSON.stringify(cidr)}`);
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  const addr = (ipv4(cidr.slice(0, slash), what) & mask) >>> 0;
  return { addr, len, text: `${dotted(addr)}/${len}` };
}

/** An IPv6 CIDR reduced to its network, in RFC 5952 text: `fd00::1/96` → `fd00::/96`. */
export function network6(cidr: string, what: string): string {
  const known = network6Seen.get(cidr);
  if (known !== undefined) return known;
  const text = network6Parse(cidr, what);
  // Every start re-checks the addresses of every link there is: at 1,000 links parsing them again was a third of a start's CPU.
  if (network6Seen.size >= NETWORK6_SEEN_MAX) network6Seen.clear();
  network6Seen.set(cidr, text);
  return text;
}

/** Valid IPv6 CIDRs already normalised by network6 (invalid ones are not kept: they throw each time, naming `what`). */
const network6Seen = new Map<string, string>();
const NETWORK6_SEEN_MAX = 8192;

function network6Parse(cidr: string, what: string): string {
  const m = /^([0-9A-Fa-f:.]+)\/(\d{1,3})$/.exec(cidr);
  const len = m === null ? NaN : Number(m[2]);
  if (m === null || len > 128) invalid(`${what}: invalid cidr ${JSON.stringify(cidr)}`);
  let b: Uint8Array;
  try {
    b = parseIPv6(m[1]!);
  } catch {
    invalid(`${what}: invalid cidr ${JSON.stringify(cidr)}`);
  }
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, len - 8 * i));
    b[i]! &= (0xff << (8 - keep)) & 0xff;
  }
  return `${formatIPv6(b)}/${len}`;
}

export function ifname(name: string, what: string): string {
  if (ifNameError(name) !== null) invalid(`${what}: invalid interface name ${JSON.stringify(name)}`);
  return name;
}

export function vmName(name: string): string {
  if (!VMNAME.test(name)) invalid(`invalid vm name ${JSON.stringify(name)}`);
  return name;
}

export function port(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 1 || n > 65535) invalid(`${what}: invalid port ${n}`);
  return n;
}

export const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
export const uniqSorted = (items: Iterable<string>): string[] => [...new Set(items)].sort(byText);
export const q = (s: string): string => `"${s}"`;


// The comment on a forward's dnat rule, which is also its key in nftCounters.
export function forwardComment(f: Pick<NetForward, 'vm' | 'proto' | 'hostPort'>): string {
  return `vm '${f.vm}' forward ${f.proto}/${f.hostPort}`;
}

// Refuses a forward of a host port that another VM (or another target) already has, in vmctl's words.
export function forwardConflict(existing: readonly NetForward[], add: readonly NetForward[]): string | null {
  const seen = new Map<string, NetForward>();
  for (const f of [...existing, ...add]) {
    const key = `${f.proto}/${f.hostPort}`;
    const prior = seen.get(key);
    if (prior === undefined) {
      seen.set(key, f);
      continue;
    }
    const same = prior.vm === f.vm && prior.guest === f.guest && prior.guestPort === f.guestPort;
    if (!same) return `port ${key} is already forwarded to vm "${prior.vm}"`;
  }
  return null;
}

// Interfaces that need net.ipv4.conf.IF.route_localnet=1 so forwards answer on 127.0.0.1.
export function localnetInterfaces(plan: NetPlan): string[] {
  return uniqSorted(plan.forwards.map((f) => ifname(f.via, 'forward')));
}

