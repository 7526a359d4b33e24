// vmd's nftables layer: a pure generator of vmd's own tables (NAT, port forwards, address locking,
// interface groups) from a NetPlan, and the applier that loads, flushes and reads them in a namespace.

import { readFile, writeFile } from 'node:fs/promises';
import { execa } from 'execa';
import { VmdError } from '../../share/errors.js';
import { groupNameError, ifNameError, netnsNameError } from '../../share/names.js';
import type { FilterRule } from '../../share/config.js';
import {
  bridgeBaseChains, chainRules, filters, fwChain, inetBaseChains, inetStateChains, linkComment, type CounterSeed,
} from './firewall.js';
import { formatIPv6, parseIPv6 } from './addr.js';

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

// The families vmd owns a `vmd` table in; nothing else in nftables is ever touched.
export const NFT_TABLES: readonly (readonly [family: 'inet' | 'bridge' | 'arp', name: 'vmd'])[] = [
  ['inet', 'vmd'],
  ['bridge', 'vmd'],
  ['arp', 'vmd'],
];

/** VM names end up inside a double-quoted nft comment, which has no escapes. */
const VMNAME = /^[^"\\\x00-\x1f\x7f]{1,64}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

function invalid(message: string): never {
  throw new VmdError('ERR_INVALID', message);
}

function ipv4(text: string, what: string): number {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (m === null) invalid(`${what}: invalid ipv4 address ${JSON.stringify(text)}`);
  const octets = m.slice(1).map(Number);
  if (octets.some((o, i) => o > 255 || String(o) !== m[i + 1])) invalid(`${what}: invalid ipv4 address ${JSON.stringify(text)}`);
  return ((octets[0]! << 24) | (octets[1]! << 16) | (octets[2]! << 8) | octets[3]!) >>> 0;
}

function dotted(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** A CIDR reduced to its network: `10.0.0.1/24` → `10.0.0.0/24`. */
function network(cidr: string, what: string): { addr: number; len: number; text: string } {
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
function network6(cidr: string, what: string): string {
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

function ifname(name: string, what: string): string {
  if (ifNameError(name) !== null) invalid(`${what}: invalid interface name ${JSON.stringify(name)}`);
  return name;
}

function vmName(name: string): string {
  if (!VMNAME.test(name)) invalid(`invalid vm name ${JSON.stringify(name)}`);
  return name;
}

function port(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 1 || n > 65535) invalid(`${what}: invalid port ${n}`);
  return n;
}

const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
const uniqSorted = (items: Iterable<string>): string[] => [...new Set(items)].sort(byText);
const q = (s: string): string => `"${s}"`;

export { linkComment };

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

/** The preamble that makes the script idempotent: create-if-absent then delete, for each of vmd's tables. */
function resetTables(): string[] {
  return NFT_TABLES.flatMap(([family, name]) => [`table ${family} ${name}`, `delete table ${family} ${name}`]);
}

class Block {
  readonly lines: string[] = [];
  constructor(readonly indent: string) {}
  add(...lines: string[]): this {
    for (const l of lines) this.lines.push(l === '' ? '' : `${this.indent}${l}`);
    return this;
  }
}

function elements(items: readonly string[]): string {
  return `elements = { ${items.join(', ')} }`;
}

/** A named set or verdict map; an empty one has no elements line (nft refuses `elements = { }`). */
function setDecl(b: Block, kind: 'set' | 'map', name: string, type: string, items: readonly string[], flags?: string): void {
  b.add(`${kind} ${name} {`, `\ttype ${type}`);
  if (flags !== undefined) b.add(`\tflags ${flags}`);
  if (items.length > 0) b.add(`\t${elements(items)}`);
  b.add('}', '');
}

function counterDecl(b: Block, name: string, comment: string, seed?: CounterSeed): void {
  const s = seed?.get(comment);
  if (s !== undefined) seed!.delete(comment);
  b.add(`counter ${name} {`, ...(s === undefined ? [] : [`\tpackets ${s.packets} bytes ${s.bytes}`]), `\tcomment ${q(comment)}`, '}', '');
}

function chain(b: Block, name: string, hook: string | null, rules: readonly string[]): void {
  b.add(`chain ${name} {`);
  if (hook !== null) b.add(`\t${hook}`);
  for (const r of rules) b.add(`\t${r}`);
  b.add('}', '');
}

function table(family: string, body: Block): string[] {
  while (body.lines.at(-1) === '') body.lines.pop();
  return [`table ${family} vmd {`, ...body.lines, '}'];
}

interface CheckedLink extends NetLink {
  readonly rules: readonly FilterRule[];
  readonly chain: string;
}

/** The firewall of some links in one table: verdict maps by direction, base chains, a chain per link and direction. */
function firewallSection(b: Block, family: 'inet' | 'bridge', links: readonly CheckedLink[], seed: CounterSeed | undefined): void {
  const dirs = ['in', 'out'] as const;
  for (const dir of dirs) {
    setDecl(b, 'map', `fw_${dir}`, 'ifname : verdict', links.filter((l) => filters(l, dir)).map((l) => `${q(l.name)} : jump ${fwChain(l.name, dir)}`));
  }
  for (const c of family === 'inet' ? inetBaseChains() : bridgeBaseChains()) chain(b, c.name, c.hook, c.rules);
  for (const l of links) for (const dir of dirs) if (filters(l, dir)) chain(b, fwChain(l.name, dir), null, chainRules(l, dir, family, seed));
}

/**
 * Renders the plan as one `nft -f -` script that atomically replaces vmd's tables (and only them). Counters
 * found in `seed` (by comment, as nftCounters returns them) start from those values, so a replace does not
 * reset them; the map is consumed.
 */
export function nftScript(plan: NetPlan, seed?: CounterSeed): string {
  // Validation first: every name and address ends up in nft syntax, so nothing unchecked gets through.
  const switches = [...plan.switches].sort((a, b) => byText(a.name, b.name));
  for (const s of switches) {
    ifname(s.bridge, `switch ${s.name}`);
    if (s.subnet !== null) network(s.subnet, `switch ${s.name}`);
    if (s.group !== null && groupNameError(s.group) !== null) invalid(`switch ${s.name}: invalid group name ${JSON.stringify(s.group)}`);
  }
  const linkNames = new Set<string>();
  const links: CheckedLink[] = [...plan.links].sort((a, b) => byText(a.name, b.name)).map((l) => {
    ifname(l.name, 'link');
    vmName(l.vm);
    if (linkNames.has(l.name)) invalid(`link ${l.name}: listed twice`);
    linkNames.add(l.name);
    if (!MAC.test(l.mac)) invalid(`link ${l.name}: invalid lladdr ${JSON.stringify(l.mac)}`);
    if (l.bridge !== null) ifname(l.bridge, `link ${l.name}`);
    if (l.bridge !== null && l.local !== null) invalid(`link ${l.name}: a local link cannot be on a bridge`);
    if (l.lockIp !== null) ipv4(l.lockIp, `link ${l.name}`);
    if (l.lockIp6 !== undefined && l.lockIp6 !== null) network6(`${l.lockIp6}/128`, `link ${l.name}`);
    if (l.local !== null) {
      ipv4(l.local.host, `link ${l.name}`);
      ipv4(l.local.guest, `link ${l.name}`);
    }
    if (l.index !== undefined && (!Number.isInteger(l.index) || l.index < 0)) invalid(`link ${l.name}: invalid nic index ${l.index}`);
    for (const g of l.groups) if (groupNameError(g) !== null) invalid(`link ${l.name}: invalid group name ${JSON.stringify(g)}`);
    return { ...l, rules: l.rules ?? [], chain: `link_${l.name}` };
  });
  const forwards = [...plan.forwards].sort((a, b) => byText(a.proto, b.proto) || a.hostPort - b.hostPort);
  for (const f of forwards) {
    if (f.proto !== 'tcp' && f.proto !== 'udp') invalid(`forward: invalid protocol ${JSON.stringify(f.proto)}`);
    port(f.hostPort, 'forward');
    port(f.guestPort, 'forward');
    ipv4(f.guest, `forward ${f.proto}/${f.hostPort}`);
    vmName(f.vm);
    ifname(f.via, `forward ${f.proto}/${f.hostPort}`);
  }
  const conflict = forwardConflict([], forwards);
  if (conflict !== null) invalid(conflict);
  const masq = new Map<string, { addr: number; len: number }>();
  for (const c of [...plan.masquerade, ...switches.filter((s) => s.nat && s.subnet !== null).map((s) => s.subnet!)]) {
    const n = network(c, 'masquerade');
    masq.set(n.text, n);
  }
  // Overlapping intervals are an error in an nft set: keep only the widest of nested prefixes.
  const kept: Array<{ addr: number; len: number; text: string }> = [];
  for (const [text, n] of [...masq.entries()].sort((a, b) => a[1].addr - b[1].addr || a[1].len - b[1].len)) {
    const inside = kept.some((k) => k.len <= n.len && ((n.addr & (k.len === 0 ? 0 : (0xffffffff << (32 - k.len)) >>> 0)) >>> 0) === k.addr);
    if (!inside) kept.push({ ...n, text });
  }
  const masqList = kept.map((k) => k.text);
  const masq6List = uniqSorted((plan.masquerade6 ?? []).map((c) => network6(c, 'masquerade6')));

  const groups = new Map<string, Set<string>>();
  for (const s of switches) if (s.group !== null) (groups.get(s.group) ?? groups.set(s.group, new Set()).get(s.group)!).add(s.bridge);
  for (const l of links) for (const g of l.groups) (groups.get(g) ?? groups.set(g, new Set()).get(g)!).add(l.name);
  for (const g of plan.groups ?? []) {
    if (groupNameError(g) !== null) invalid(`invalid group name ${JSON.stringify(g)}`);
    if (!groups.has(g)) groups.set(g, new Set());
  }

  const include = plan.include ?? null;
  if (include !== null && (!include.startsWith('/') || /["\x00-\x1f\x7f]/.test(include))) invalid(`include: invalid path ${JSON.stringify(include)}`);

  const out = [
    '# generated by vmd: its own tables only; each run replaces them atomically',
    ...resetTables(),
  ];
  const empty = switches.length === 0 && links.length === 0 && forwards.length === 0 && masqList.length === 0 && include === null;
  if (empty) return `${out.join('\n')}\n`;

  // --- inet vmd: groups, NAT, forwards, and locking of routed (local) links.
  const inet = new Block('\t');
  for (const [g, members] of [...groups.entries()].sort((a, b) => byText(a[0], b[0]))) {
    setDecl(inet, 'set', `group_${g}`, 'ifname', uniqSorted(members).map(q));
  }
  const routed = links.filter((l) => l.bridge === null && (l.lockMac || l.lockIp !== null));
  for (const l of routed) {
    if (l.lockMac) counterDecl(inet, `mac_${l.name}`, linkComment(l, 'mac-spoof'), seed);
    if (l.lockIp !== null) counterDecl(inet, `ip_${l.name}`, linkComment(l, 'ip-spoof'), seed);
  }
  const fwRouted = links.filter((l) => l.bridge === null && l.rules.length > 0);
  const fwBridged = links.filter((l) => l.bridge !== null && l.rules.length > 0);
  if (fwBridged.length > 0) setDecl(inet, 'set', 'fw_bridges', 'ifname', uniqSorted(fwBridged.map((l) => l.bridge!)).map(q));
  if (masqList.length > 0) setDecl(inet, 'set', 'nat_sources', 'ipv4_addr', masqList, 'interval');
  if (masq6List.length > 0) setDecl(inet, 'set', 'nat6_sources', 'ipv6_addr', masq6List, 'interval');
  if (forwards.length > 0) {
    setDecl(inet, 'map', 'forwards', 'inet_proto . inet_service : verdict',
      forwards.map((f) => `${f.proto} . ${f.hostPort} : jump dnat_${f.proto}_${f.hostPort}`));
    setDecl(inet, 'set', 'localnet', 'ifname', localnetInterfaces(plan).map(q));
  }
  // Per-link dispatch: one lookup per packet whatever the number of links. Issue 5's per-link filter
  // chains hook in the same way (a map keyed by the link in a filter chain jumping to filter_<link>).
  if (routed.length > 0) setDecl(inet, 'map', 'links', 'ifname : verdict', routed.map((l) => `${q(l.name)} : jump ${l.chain}`));
  if (forwards.length > 0) {
    const dispatch = 'meta nfproto ipv4 fib daddr type local meta l4proto . th dport vmap @forwards';
    chain(inet, 'prerouting', 'type nat hook prerouting priority dstnat; policy accept;', [dispatch]);
    chain(inet, 'output', 'type nat hook output priority -100; policy accept;', [dispatch]);
    for (const f of forwards) {
      chain(inet, `dnat_${f.proto}_${f.hostPort}`, null,
        [`meta l4proto ${f.proto} counter dnat ip to ${f.guest}:${f.guestPort} comment ${q(forwardComment(f))}`]);
    }
  }
  const post: string[] = [];
  if (masqList.length > 0) post.push('ip saddr @nat_sources ip daddr != @nat_sources counter masquerade comment "vmd nat"');
  if (masq6List.length > 0) post.push('ip6 saddr @nat6_sources ip6 daddr != @nat6_sources counter masquerade comment "vmd nat6"');
  if (forwards.length > 0) post.push('ip saddr 127.0.0.0/8 oifname @localnet counter masquerade comment "vmd loopback forwards"');
  if (post.length > 0) chain(inet, 'postrouting', 'type nat hook postrouting priority srcnat; policy accept;', post);
  if (routed.length > 0) {
    // Before conntrack (raw), so a spoofed packet never creates a connection or a NAT binding.
    chain(inet, 'prerouting_lock', 'type filter hook prerouting priority raw; policy accept;', ['iifname vmap @links']);
    for (const l of routed) {
      const rules: string[] = [];
      if (l.lockMac) rules.push(`ether saddr != ${l.mac} counter name "mac_${l.name}" drop`);
      if (l.lockIp !== null) rules.push(`meta nfproto ipv4 ip saddr != { 0.0.0.0, ${l.lockIp} } counter name "ip_${l.name}" drop`);
      if (l.lockIp !== null && l.lockIp6) rules.push(`meta nfproto ipv6 ip6 saddr != { ::, fe80::/10, ${network6(`${l.lockIp6}/128`, l.name).slice(0, -4)} } counter name "ip_${l.name}" drop`);
      chain(inet, l.chain, null, rules);
    }
  }
  if (fwBridged.length > 0) for (const c of inetStateChains()) chain(inet, c.name, c.hook, c.rules);
  if (fwRouted.length > 0) firewallSection(inet, 'inet', fwRouted, seed);
  if (include !== null) inet.add(`include ${q(include)}`);
  out.push(...table('inet', inet));

  // --- arp vmd: routed links' ARP never reaches a bridge, so their sender fields are checked here.
  if (routed.length > 0) {
    const arp = new Block('\t');
    for (const l of routed) {
      if (l.lockMac) counterDecl(arp, `mac_${l.name}`, linkComment(l, 'mac-spoof'), seed);
      if (l.lockIp !== null) counterDecl(arp, `ip_${l.name}`, linkComment(l, 'ip-spoof'), seed);
    }
    setDecl(arp, 'map', 'links', 'ifname : verdict', routed.map((l) => `${q(l.name)} : jump ${l.chain}`));
    chain(arp, 'input', 'type filter hook input priority filter; policy accept;', ['iifname vmap @links']);
    for (const l of routed) {
      const rules: string[] = [];
      if (l.lockMac) rules.push(`arp saddr ether != ${l.mac} counter name "mac_${l.name}" drop`);
      if (l.lockIp !== null) rules.push(`arp saddr ip != { 0.0.0.0, ${l.lockIp} } counter name "ip_${l.name}" drop`);
      chain(arp, l.chain, null, rules);
    }
    out.push(...table('arp', arp));
  }

  // --- bridge vmd: locking of bridged links, before the bridge decides anything (stateless: no conntrack here).
  const bridged = links.filter((l) => l.bridge !== null && (l.lockMac || l.lockIp !== null));
  if (bridged.length > 0 || fwBridged.length > 0) {
    const br = new Block('\t');
    for (const l of bridged) {
      if (l.lockMac) counterDecl(br, `mac_${l.name}`, linkComment(l, 'mac-spoof'), seed);
      if (l.lockIp !== null) counterDecl(br, `ip_${l.name}`, linkComment(l, 'ip-spoof'), seed);
    }
    if (bridged.length > 0) {
      setDecl(br, 'map', 'links', 'ifname : verdict', bridged.map((l) => `${q(l.name)} : jump ${l.chain}`));
      chain(br, 'prerouting', 'type filter hook prerouting priority -200; policy accept;', ['iifname vmap @links']);
    }
    if (fwBridged.length > 0) firewallSection(br, 'bridge', fwBridged, seed);
    for (const l of bridged) {
      const rules: string[] = [];
      if (l.lockMac) {
        rules.push(`ether saddr != ${l.mac} counter name "mac_${l.name}" drop`);
        rules.push(`ether type arp arp saddr ether != ${l.mac} counter name "mac_${l.name}" drop`);
      }
      if (l.lockIp !== null) {
        rules.push(`ether type ip ip saddr != { 0.0.0.0, ${l.lockIp} } counter name "ip_${l.name}" drop`);
        rules.push(`ether type arp arp saddr ip != { 0.0.0.0, ${l.lockIp} } counter name "ip_${l.name}" drop`);
        // A VLAN tag would carry the spoofed packet past the checks above.
        rules.push(`ether type { 8021q, 8021ad } counter name "ip_${l.name}" drop`);
      }
      chain(br, l.chain, null, rules);
    }
    out.push(...table('bridge', br));
  }
  return `${out.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------
// Applier: nft and sysctl through execa, in the root namespace or via `ip netns exec NS`.

function inNetns(netns: string | null, argv: readonly string[]): [string, string[]] {
  if (netns === null) return [argv[0]!, argv.slice(1)];
  if (netnsNameError(netns) !== null) invalid(`invalid network namespace name ${JSON.stringify(netns)}`);
  return ['ip', ['netns', 'exec', netns, ...argv]];
}

/** nft's first `Error:` line without its noise: `/dev/stdin:3:1-5: Error: x` → `line 3: x`. */
function nftMessage(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
  const first = lines.find((l) => l.includes('Error:')) ?? lines[0] ?? 'failed without a message';
  const m = /^(?:\S+?:(\d+):[\d-]+:\s*)?Error:\s*(.*)$/.exec(first);
  if (m === null) return first;
  return m[1] === undefined ? m[2]! : `line ${m[1]}: ${m[2]!}`;
}

async function run(netns: string | null, argv: readonly string[], input?: string): Promise<string> {
  const [cmd, args] = inNetns(netns, argv);
  let result;
  try {
    result = await execa(cmd, args, { input: input ?? '', reject: false, stripFinalNewline: false });
  } catch (e) {
    throw new VmdError('ERR_INTERNAL', `${argv[0]}: ${(e as Error).message}`, { cause: e });
  }
  if (result.failed) {
    if (result.exitCode === undefined) throw new VmdError('ERR_INTERNAL', `${argv[0]}: ${result.shortMessage}`);
    const what = argv[0] === 'nft' ? 'nftables' : argv[0]!;
    const message = nftMessage(String(result.stderr)).replace(new RegExp(`^${what}: `), '');
    throw new VmdError('ERR_INTERNAL', `${what}: ${message}`);
  }
  return String(result.stdout);
}

// Loads a script from nftScript atomically (all of it or nothing) in the namespace.
export async function nftApply(script: string, netns: string | null): Promise<void> {
  await run(netns, ['nft', '-f', '-'], script);
}

// Checks a script without applying it (`nft -c`), for tests and `vmd -n`.
export async function nftCheck(script: string, netns: string | null): Promise<void> {
  await run(netns, ['nft', '-c', '-f', '-'], script);
}

/**
 * Checks a script with `include` (nft -c) and returns null when nft accepts it, else what is wrong, naming the
 * included file when the error is in one (`/etc/vmd/nft.d/x.nft:3: syntax error, …`), for a warning.
 */
export async function nftIncludeProblem(script: string, netns: string | null): Promise<string | null> {
  const [cmd, args] = inNetns(netns, ['nft', '-c', '-f', '-']);
  const r = await execa(cmd, args, { input: script, reject: false });
  if (r.exitCode === 0) return null;
  const stderr = String(r.stderr ?? '');
  for (const line of stderr.split('\n')) {
    const m = /^(\S+?):(\d+):[\d-]+:\s*Error:\s*(.*)$/.exec(line.trim());
    if (m !== null && m[1] !== '/dev/stdin') return `${m[1]}:${m[2]}: ${m[3]}`;
  }
  return nftMessage(stderr || String(r.shortMessage));
}

// Removes vmd's tables (only them) from the namespace; their absence is fine.
export async function nftFlush(netns: string | null): Promise<void> {
  await nftApply(`${resetTables().join('\n')}\n`, netns);
}

interface NftJson {
  nftables?: Array<Record<string, Record<string, unknown>>>;
}

// Packet and byte counts by comment (`vm 'web' if0 mac-spoof`, `vm 'web' forward tcp/8080`), summed over vmd's tables.
export async function nftCounters(netns: string | null): Promise<Map<string, { packets: number; bytes: number }>> {
  const counters = new Map<string, { packets: number; bytes: number }>();
  const addTo = (comment: string, packets: unknown, bytes: unknown): void => {
    const c = counters.get(comment) ?? { packets: 0, bytes: 0 };
    counters.set(comment, { packets: c.packets + Number(packets ?? 0), bytes: c.bytes + Number(bytes ?? 0) });
  };
  const ours = (o: Record<string, unknown>): boolean => NFT_TABLES.some(([f, n]) => f === o.family && n === o.table);
  // One listing of the whole ruleset (one exec) rather than one per table: this runs before every replace.
  const json = JSON.parse(await run(netns, ['nft', '-j', 'list', 'ruleset'])) as NftJson;
  for (const entry of json.nftables ?? []) {
    const obj = entry.counter;
    if (obj !== undefined && ours(obj)) addTo(String(obj.comment ?? obj.name), obj.packets, obj.bytes);
    const rule = entry.rule;
    if (rule !== undefined && ours(rule) && typeof rule.comment === 'string' && Array.isArray(rule.expr)) {
      for (const e of rule.expr as Array<Record<string, unknown>>) {
        const c = e.counter;
        if (c !== null && typeof c === 'object') addTo(rule.comment, (c as Record<string, unknown>).packets, (c as Record<string, unknown>).bytes);
      }
    }
  }
  return counters;
}

// Warns about another firewall's forward hook with policy drop (Docker's FORWARD DROP), which vmd's tables cannot override.
export async function foreignForwardDrop(netns: string | null): Promise<string | null> {
  const json = JSON.parse(await run(netns, ['nft', '-j', 'list', 'ruleset'])) as NftJson;
  const found: string[] = [];
  for (const entry of json.nftables ?? []) {
    const c = entry.chain;
    if (c === undefined || c.hook !== 'forward' || c.policy !== 'drop') continue;
    if (NFT_TABLES.some(([f, n]) => f === c.family && n === c.table)) continue;
    found.push(`table ${String(c.family)} ${String(c.table)} chain ${String(c.name)}`);
  }
  if (found.length === 0) return null;
  return `forwarded guest traffic may be dropped: ${found.sort(byText).join(', ')} ${found.length === 1 ? 'has' : 'have'} policy drop on the forward hook (as docker sets it); accept the guests' interfaces there`;
}

const SYSCTL_KEY = /^(net)\.(ipv4|ipv6)\.(conf|neigh)\.([A-Za-z0-9_.-]{1,15})\.([a-z0-9_]+)$/;

/** `net.ipv4.conf.eth0.1.route_localnet` → `net/ipv4/conf/eth0.1/route_localnet`: interface names may hold dots. */
function sysctlPath(key: string): string {
  const m = SYSCTL_KEY.exec(key);
  if (m !== null) return m.slice(1).join('/');
  if (!/^[a-z0-9_]+(\.[a-z0-9_-]+)+$/.test(key)) invalid(`invalid sysctl key ${JSON.stringify(key)}`);
  return key.split('.').join('/');
}

// Sets a sysctl (ip_forward, route_localnet) in the namespace and returns the previous value, so the caller can log a change.
export async function sysctlSet(key: string, value: string, netns: string | null): Promise<string> {
  const path = sysctlPath(key);
  if (!/^[0-9 -]{1,32}$/.test(value)) invalid(`sysctl ${key}: invalid value ${JSON.stringify(value)}`);
  if (netns === null) {
    const file = `/proc/sys/${path}`;
    let previous: string;
    try {
      previous = (await readFile(file, 'utf8')).trim();
      if (previous !== value) await writeFile(file, value);
    } catch (e) {
      throw new VmdError('ERR_INTERNAL', `sysctl ${key}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
    }
    return previous;
  }
  const previous = (await run(netns, ['sysctl', '-n', path])).trim();
  if (previous !== value) await run(netns, ['sysctl', '-q', '-w', `${path}=${value}`]);
  return previous;
}
