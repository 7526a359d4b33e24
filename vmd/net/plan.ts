// Network plans: what vmd remembers of each managed link (LinkState), and the NetPlan each namespace's
// nftables tables are rendered from, derived from those links and the configured switches (pure).

import type { FilterRule, InterfaceAllow, InterfaceConfig, PortForward, SwitchConfig } from '../../share/config.js';
import { VmdError } from '../../share/errors.js';
import type { Count } from '../../share/protocol.js';
import { formatIPv4, maskOf, parseIPv4 } from './addr.js';
import type { DnsmasqInstance } from './dnsmasq.js';
import type { NetLink, NetPlan } from './nft-plan.js';

/** A managed link as the parent's Network keeps it, from vmUp (or vmReadopt) to vmDown. */
export interface LinkState {
  readonly vmId: number;
  readonly vm: string;
  readonly index: number;
  readonly name: string;
  readonly netns: string | null;
  readonly mac: string;
  readonly switch: string | null;
  readonly bridge: string | null;
  readonly local: { readonly host: string; readonly guest: string } | null;
  readonly lockMac: boolean;
  readonly forwards: readonly PortForward[];
  readonly groups: readonly string[];
  /** The interface block's filter rules; replaced in place by a reload. */
  rules: readonly FilterRule[];
  dhcp: DnsmasqInstance | null;
  /** The fixed lease (guest IPv4) of a NIC on a `dhcp` switch; forwards on a `nat` switch DNAT to it. */
  readonly fixed?: string | null;
  /** `local inet6`: the /96 of a local link (host ::1 side, guest ::2 side). */
  readonly local6?: { readonly host: string; readonly guest: string } | null;
  /** `allow dhcp`, `allow router` of the interface block. */
  readonly allow?: readonly InterfaceAllow[];
  /** On a switch with `vxlan`: its DHCP server may be another host's, guarded all the same. */
  readonly spanned?: boolean;
}

/**
 * The only source IPv4 a guest may use on a link: its local address, or the fixed lease vmd gave it on a `dhcp`
 * switch (unless `allow router` lets it route others' packets; `locked lladdr` binds it anyway); null when free.
 */
export function lockedIpOf(l: Pick<LinkState, 'local' | 'lockMac' | 'fixed' | 'allow'>): string | null {
  if (l.local !== null) return l.local.guest;
  return l.fixed && (l.lockMac || !l.allow?.includes('router')) ? l.fixed : null;
}

/**
 * What a guest may not offer on a link where vmd serves DHCP (a `dhcp` switch, a local interface, a switch spanning
 * hosts, whose server may be on another one): DHCP replies unless `allow dhcp`, router advertisements and
 * redirects unless `allow router`. Null on other links.
 */
export function guardOf(l: Pick<LinkState, 'local' | 'fixed' | 'allow' | 'spanned'>): { dhcp: boolean; router: boolean } | null {
  if (l.local === null && !l.fixed && l.spanned !== true) return null;
  const g = { dhcp: !l.allow?.includes('dhcp'), router: !l.allow?.includes('router') };
  return g.dhcp || g.router ? g : null;
}

/** The IPv6 link-local address a kernel derives from a MAC (EUI-64, RFC 4291 appendix A). */
export function linkLocalOf(mac: string): string {
  // Asked for every bridged link at every start.
  let known = linkLocalSeen.get(mac);
  if (known === undefined) {
    if (linkLocalSeen.size >= 8192) linkLocalSeen.clear();
    linkLocalSeen.set(mac, known = linkLocalDerive(mac));
  }
  return known;
}

const linkLocalSeen = new Map<string, string>();

function linkLocalDerive(mac: string): string {
  const b = mac.split(':').map((x) => parseInt(x, 16));
  b[0] = b[0]! ^ 2;
  const hex = (x: number, y: number): string => ((x << 8) | y).toString(16);
  return `fe80::${hex(b[0]!, b[1]!)}:${hex(b[2]!, 0xff)}:${hex(0xfe, b[3]!)}:${hex(b[4]!, b[5]!)}`;
}

/** Rules compared as what they do, not where they were written. */
export function sameRules(a: readonly FilterRule[], b: readonly FilterRule[]): boolean {
  const key = (rules: readonly FilterRule[]): string => JSON.stringify(rules.map(({ location: _l, ...r }) => r));
  return key(a) === key(b);
}

export const sum = (counts: ReadonlyArray<Count | undefined>): Count =>
  counts.reduce<Count>((acc, c) => ({ packets: acc.packets + (c?.packets ?? 0), bytes: acc.bytes + (c?.bytes ?? 0) }), { packets: 0, bytes: 0 });

/** A stable MAC for a bridge vmd creates, so its address does not follow whichever port is lowest. */
export function bridgeMac(name: string): string {
  let h = 2166136261;
  for (const c of Buffer.from(name)) h = Math.imul(h ^ c, 16777619) >>> 0;
  return ['fe', 'e1', 'ba', (h >>> 16) & 0xff, (h >>> 8) & 0xff, h & 0xff]
    .map((b) => (typeof b === 'string' ? b : b.toString(16).padStart(2, '0'))).join(':');
}

/** The network of a CIDR written with host bits (`10.1.0.1/24` → `10.1.0.0/24`). */
export function subnetOf(cidr: string): string {
  const [addr, len] = cidr.split('/') as [string, string];
  return `${formatIPv4((parseIPv4(addr) & maskOf(Number(len))) >>> 0)}/${len}`;
}

/** Where switches live and which one a name means, as the Network resolves them. */
export interface SwitchLookup {
  readonly switches: readonly SwitchConfig[];
  nsOf(sw: SwitchConfig): string | null;
  switchByName(name: string): SwitchConfig | undefined;
}

/**
 * A link as nftables sees it; the same object while the link is unchanged (only its rules change in place, on a
 * reload), so the checks and rules derived from it are not made again for every link at every start.
 */
function netLinkOf(l: LinkState): NetLink {
  const known = netLinks.get(l);
  if (known !== undefined && known.rules === l.rules) return known;
  const n: NetLink = {
    name: l.name, vmId: l.vmId, vm: l.vm, index: l.index, bridge: l.bridge, mac: l.mac, lockMac: l.lockMac || l.local !== null,
    lockIp: lockedIpOf(l), local: l.local, groups: l.groups, rules: l.rules, lockIp6: l.local6?.guest ?? null,
    // A bridged guest whose IPv4 is bound gets its IPv6 bound too: to the link-local address of its lladdr.
    lockLinkLocal: l.bridge !== null && lockedIpOf(l) !== null ? linkLocalOf(l.mac) : null, guard: guardOf(l),
  };
  netLinks.set(l, n);
  return n;
}

const netLinks = new WeakMap<LinkState, NetLink>();

/** What nftScript gets for one namespace: the links and enabled switches there, their forwards and NAT. */
export function netPlanOf(ns: string | null, all: Iterable<LinkState>, sw: SwitchLookup): NetPlan {
  const links = [...all].filter((l) => l.netns === ns);
  const switches = sw.switches.filter((s) => s.enabled && sw.nsOf(s) === ns);
  return {
    switches: switches.map((s) => ({ name: s.name, bridge: s.interface, subnet: s.address === null ? null : subnetOf(s.address), nat: s.nat, group: s.group })),
    links: links.map(netLinkOf),
    forwards: links.flatMap((l) => {
      // A local link's guest is reached through its tap; a guest on a nat switch at its fixed lease, through the bridge.
      const nat = l.local === null && l.fixed && l.bridge !== null && sw.switchByName(l.switch ?? '')?.nat === true;
      const guest = l.local?.guest ?? (nat ? l.fixed! : null);
      return guest === null ? [] : l.forwards.map((f) => ({
        proto: f.proto, hostPort: f.hostPort, guest, guestPort: f.guestPort, vm: l.vm, via: l.local !== null ? l.name : l.bridge!,
      }));
    }),
    masquerade: [
      ...links.filter((l) => l.local !== null).map((l) => `${l.local!.host}/31`),
      ...switches.filter((s) => s.nat && s.address !== null).map((s) => subnetOf(s.address!)),
    ],
    masquerade6: links.flatMap((l) => (l.local6 ? [`${l.local6.host}/96`] : [])),
  };
}

/** A forward on a switch needs a guest address vmd knows and a way out: the switch's address, dhcp and nat. */
export function forwardSwitchCheck(vm: string, nic: InterfaceConfig, sw: SwitchConfig): void {
  const missing = [sw.address === null ? 'address' : null, sw.dhcp ? null : 'dhcp', sw.nat ? null : 'nat'].filter((m) => m !== null);
  if (missing.length === 0) return;
  const f = nic.forwards[0]!;
  throw new VmdError('ERR_INVALID', `vm "${vm}": interface ${nic.index}: forward ${f.proto} ${f.hostPort}: switch "${sw.name}" has no ${missing.join(' and no ')}`, {
    hint: `forwards need a switch with address, dhcp and nat, or a local interface`,
  });
}
