// The hypervisor firewall: pf-style rules of an interface block compiled to nftables chains, one pair
// (towards the guest, from the guest) per link. Pure: nft.ts places the chains in vmd's tables.
//
// pf decides by the last matching rule unless a `quick` rule matches first. nftables decides by the first
// terminal verdict, so a link's chain holds its quick rules in order, then its other rules in reverse order:
// the first of those that matches is exactly the rule pf would have let decide. `pass` is `return` (the
// packet goes on to the other link's chain and to the rest of the host's firewall), `block` is `drop`.
//
// State (pf's `keep state`): replies of a connection a link passed pass whatever its rules say; only the link's
// own connections count (fw-state.ts, which also holds the base chains). Routed (local) links are filtered in
// `inet vmd`, bridged links in `bridge vmd`.

import type { FilterRule, PortRange, RuleProto } from '../../share/config.js';
import { VmdError } from '../../share/errors.js';

export type Direction = 'in' | 'out';
type Family = 'inet' | 'bridge';

/** What the compiler needs of a link. */
export interface FirewallLink {
  readonly name: string;
  readonly vm: string;
  readonly index?: number;
  readonly rules: readonly FilterRule[];
}

/**
 * The comment on a link's counters, which is also their key in nftCounters: `vm 'web' if0 mac-spoof`,
 * `vm 'web' if0 rule 2` (rules numbered from 1, as written).
 */
export function linkComment(link: Pick<FirewallLink, 'vm' | 'index' | 'name'>, what: string): string {
  // nft strings cannot hold a double quote (nft 1.0.6 has no escape), hence the single quotes.
  const nic = link.index === undefined ? link.name : `if${link.index}`;
  return `vm '${link.vm}' ${nic} ${what}`;
}

export function ruleComment(link: Pick<FirewallLink, 'vm' | 'index' | 'name'>, n: number): string {
  return linkComment(link, `rule ${n + 1}`);
}

/** The chain of a link for one direction. */
export function fwChain(link: string, dir: Direction): string {
  return `fw${dir}_${link}`;
}

/** Whether a link has anything to filter in a direction. */
export function filters(link: FirewallLink, dir: Direction): boolean {
  return link.rules.some((r) => r.direction === null || r.direction === dir);
}

// ---- address and port sets

interface Prefix {
  readonly v6: boolean;
  readonly addr: bigint;
  readonly len: number;
  readonly text: string;
}

function parsePrefix(cidr: string): Prefix {
  const slash = cidr.lastIndexOf('/');
  const addr = slash < 0 ? cidr : cidr.slice(0, slash);
  const v6 = addr.includes(':');
  const bits = v6 ? 128 : 32;
  const len = slash < 0 ? bits : Number(cidr.slice(slash + 1));
  if (!Number.isInteger(len) || len < 0 || len > bits) throw new VmdError('ERR_INVALID', `firewall: invalid address ${JSON.stringify(cidr)}`);
  let value = 0n;
  if (v6) {
    const [head, tail] = addr.split('::') as [string, string | undefined];
    const h = head === '' ? [] : head.split(':');
    const t = tail === undefined || tail === '' ? [] : tail.split(':');
    const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
    if (groups.length !== 8 || groups.some((g) => !/^[0-9a-f]{1,4}$/i.test(g))) {
      throw new VmdError('ERR_INVALID', `firewall: invalid address ${JSON.stringify(cidr)}`);
    }
    for (const g of groups) value = (value << 16n) | BigInt(parseInt(g, 16));
  } else {
    const octets = addr.split('.');
    if (octets.length !== 4 || octets.some((o) => !/^\d{1,3}$/.test(o) || Number(o) > 255)) {
      throw new VmdError('ERR_INVALID', `firewall: invalid address ${JSON.stringify(cidr)}`);
    }
    for (const o of octets) value = (value << 8n) | BigInt(o);
  }
  const mask = ((1n << BigInt(len)) - 1n) << BigInt(bits - len);
  const masked = value & mask;
  return { v6, addr: masked, len, text: len === bits ? addr : `${addr}/${len}` };
}

/** nft refuses overlapping intervals in a set: keep only the widest of nested prefixes. */
function widest(prefixes: readonly Prefix[]): Prefix[] {
  const sorted = [...prefixes].sort((a, b) => a.len - b.len);
  const kept: Prefix[] = [];
  for (const p of sorted) {
    const bits = p.v6 ? 128 : 32;
    const inside = kept.some((k) => k.v6 === p.v6 && (p.addr >> BigInt(bits - k.len)) === (k.addr >> BigInt(bits - k.len)));
    if (!inside) kept.push(p);
  }
  return kept.sort((a, b) => (a.addr < b.addr ? -1 : a.addr > b.addr ? 1 : a.len - b.len));
}

/** Overlapping or adjacent port ranges merged, for the same reason. */
function mergePorts(ports: readonly PortRange[]): PortRange[] {
  const sorted = [...ports].sort((a, b) => a.from - b.from);
  const out: Array<{ from: number; to: number }> = [];
  for (const p of sorted) {
    const last = out.at(-1);
    if (last !== undefined && p.from <= last.to + 1) last.to = Math.max(last.to, p.to);
    else out.push({ from: p.from, to: p.to });
  }
  return out;
}

function anySet(items: readonly string[]): string {
  return items.length === 1 ? items[0]! : `{ ${items.join(', ')} }`;
}

function portSet(ports: readonly PortRange[]): string {
  return anySet(mergePorts(ports).map((p) => (p.from === p.to ? String(p.from) : `${p.from}-${p.to}`)));
}

const NFT_PROTO: Record<RuleProto, string> = { tcp: 'tcp', udp: 'udp', icmp: 'icmp', icmp6: 'ipv6-icmp' };

/**
 * The nft match expressions of one rule, one string per nft rule (a rule with IPv4 and IPv6 addresses becomes
 * two); none when it cannot match anything (e.g. IPv4 sources with IPv6 destinations).
 */
export function ruleMatches(rule: FilterRule): string[] {
  const from = rule.from.addresses.map(parsePrefix);
  const to = rule.to.addresses.map(parsePrefix);
  const ports: string[] = [];
  if (rule.from.ports.length > 0) ports.push(`th sport ${portSet(rule.from.ports)}`);
  if (rule.to.ports.length > 0) ports.push(`th dport ${portSet(rule.to.ports)}`);
  const protoMatch = (protos: readonly RuleProto[]): string | null =>
    protos.length === 0 ? null : `meta l4proto ${anySet(protos.map((p) => NFT_PROTO[p]))}`;

  if (from.length === 0 && to.length === 0) {
    // No addresses: one rule for both families; icmp (1) and ipv6-icmp (58) only occur in their own family.
    return [[protoMatch(rule.protos), ...ports].filter((x): x is string => x !== null).join(' ')];
  }
  const out: string[] = [];
  for (const v6 of [false, true]) {
    const f = from.filter((p) => p.v6 === v6);
    const t = to.filter((p) => p.v6 === v6);
    if ((from.length > 0 && f.length === 0) || (to.length > 0 && t.length === 0)) continue;
    const protos = rule.protos.filter((p) => (v6 ? p !== 'icmp' : p !== 'icmp6'));
    if (rule.protos.length > 0 && protos.length === 0) continue;
    const ip = v6 ? 'ip6' : 'ip';
    const parts: Array<string | null> = [
      f.length > 0 ? `${ip} saddr ${anySet(widest(f).map((p) => p.text))}` : null,
      t.length > 0 ? `${ip} daddr ${anySet(widest(t).map((p) => p.text))}` : null,
      protoMatch(protos),
      ...ports,
    ];
    out.push(parts.filter((x): x is string => x !== null).join(' '));
  }
  return out;
}

/** Seeds for counters carried over an atomic replace: comment → totals, taken by the first rule that has it. */
export type CounterSeed = Map<string, { packets: number; bytes: number }>;

/** A rule's anonymous counter, starting from its comment's seed when there is one (which it takes). */
export function counterOf(seed: CounterSeed | undefined, comment: string): string {
  const s = seed?.get(comment);
  if (s === undefined) return 'counter';
  seed!.delete(comment);
  return `counter packets ${s.packets} bytes ${s.bytes}`;
}

// Traffic rules never cut: ARP is not IP, and neighbour discovery and the DHCP exchange with vmd's dnsmasq
// keep a guest reachable and its lease alive whatever the rules say (vm.conf.5).
const ND = 'icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } return';

/**
 * The rules of a link's chain for one direction, in nft's first-match order, with the preamble for its family
 * and then `head` (the link's state rules, fw-state.ts). Seeds are consumed as counters are rendered.
 */
export function chainRules(link: FirewallLink, dir: Direction, family: Family, seed?: CounterSeed, head: readonly string[] = []): string[] {
  const lines: string[] = [];
  if (family === 'bridge') {
    // A VLAN tag would carry a packet past every match below; a filtered link carries no tagged frames.
    const vlan = linkComment(link, 'vlan');
    lines.push(`ether type { 8021q, 8021ad } ${counterOf(seed, vlan)} drop comment ${JSON.stringify(vlan)}`);
    lines.push('ether type != { ip, ip6 } return');
  }
  lines.push(ND, ...head);
  const indexed = link.rules.map((rule, n) => ({ rule, n })).filter(({ rule }) => rule.direction === null || rule.direction === dir);
  const order = [...indexed.filter((x) => x.rule.quick), ...indexed.filter((x) => !x.rule.quick).reverse()];
  for (const { rule, n } of order) {
    const comment = ruleComment(link, n);
    const verdict = rule.action === 'pass' ? 'return' : 'drop';
    for (const m of ruleMatches(rule)) {
      lines.push(`${m === '' ? '' : `${m} `}${counterOf(seed, comment)} ${verdict} comment ${JSON.stringify(comment)}`);
    }
  }
  return lines;
}
