// vmd's nftables generator: a pure function from a NetPlan to one script that atomically replaces vmd's own
// tables (NAT, port forwards, address locking, interface groups, the guests' firewalls) and only them.

import { chainRules, counterOf, filters, fwChain, linkComment, type CounterSeed } from './firewall.js';
import {
  bridgeBaseChains, bridgeStampChain, inetBaseChains, inetBridgeStateChains, inetRoutedOriginRule, linkMarkId, stampOf, stateRules,
} from './fw-state.js';
import { checkPlan, type CheckedLink, type CheckedPlan } from './nft-check.js';
import { forwardComment, localnetInterfaces, network6, q, uniqSorted, type NetPlan } from './nft-plan.js';
import { tableLines, type NftFamily, type NftItem, type NftModel } from './nft-model.js';

// The families vmd owns a `vmd` table in; nothing else in nftables is ever touched.
export const NFT_TABLES: readonly (readonly [family: NftFamily, name: 'vmd'])[] = [
  ['inet', 'vmd'],
  ['bridge', 'vmd'],
  ['arp', 'vmd'],
];

/** The preamble that makes the script idempotent: create-if-absent then delete, for each of vmd's tables. */
export function resetTables(): string[] {
  return NFT_TABLES.flatMap(([family, name]) => [`table ${family} ${name}`, `delete table ${family} ${name}`]);
}

/** The declarations of one table, in the order they are written. */
class Block {
  readonly items: NftItem[] = [];
  add(item: NftItem): this {
    this.items.push(item);
    return this;
  }
}

/** A named set or verdict map. */
function setDecl(b: Block, kind: 'set' | 'map', name: string, type: string, items: readonly string[], flags?: string): void {
  b.add({ kind, name, type, flags: flags ?? null, elements: items });
}

function chain(b: Block, name: string, hook: string | null, rules: readonly string[]): void {
  b.add({ kind: 'chain', name, hook, rules });
}

/**
 * What is derived from a checked link, made once while the link is unchanged (checkPlan keeps its object): a start
 * re-renders every link there is, and the same strings and declarations let nft-delta.ts pass over them cheaply.
 */
function once<T>(l: CheckedLink, what: string, make: () => T): T {
  let m = derived.get(l);
  if (m === undefined) derived.set(l, m = new Map());
  let v = m.get(what) as T | undefined;
  if (v === undefined) m.set(what, v = make());
  return v;
}

const derived = new WeakMap<CheckedLink, Map<string, unknown>>();

/** The declarations `add` makes for a link, the same objects each time unless counters are seeded (a replace). */
function linkItems(b: Block, l: CheckedLink, what: string, seed: CounterSeed | undefined, add: (b: Block) => void): void {
  if (seed !== undefined) {
    add(b);
    return;
  }
  b.items.push(...once(l, what, () => {
    const own = new Block();
    add(own);
    return own.items;
  }));
}

/** A link's element in a `links` verdict map: its name, jumping to its lock chain. */
const lockElement = (l: CheckedLink): string => once(l, 'lock element', () => `${q(l.name)} : jump ${l.chain}`);

/** The firewall of some links in one table: verdict maps by direction, base chains, a chain per link and direction. */
function firewallSection(b: Block, family: 'inet' | 'bridge', links: readonly CheckedLink[], seed: CounterSeed | undefined): void {
  const dirs = ['in', 'out'] as const;
  for (const dir of dirs) {
    setDecl(b, 'map', `fw_${dir}`, 'ifname : verdict', links.filter((l) => filters(l, dir)).map((l) => once(l, `fw_${dir}`, () => `${q(l.name)} : jump ${fwChain(l.name, dir)}`)));
  }
  if (family === 'inet') {
    // Host-originated packets a forward translated: the output hook still names the interface of the address
    // they were sent to (lo), so the guest's chain is found by the translated destination instead.
    const dnat = links.filter((l) => l.local !== null && filters(l, 'in'));
    setDecl(b, 'map', 'fw_dnat_in', 'ipv4_addr : verdict', dnat.map((l) => once(l, 'fw_dnat', () => `${l.local!.guest} : jump ${fwChain(l.name, 'in')}`)));
  }
  // The id each filtered link is known by in the connection marks (fw-state.ts).
  const ids = links.map((l) => once(l, `ids ${family}`, () => `${q(l.name)} : ${family === 'inet' ? linkMarkId(l.vmId, l.index ?? 0) : stampOf(linkMarkId(l.vmId, l.index ?? 0))}`));
  if (family === 'inet') {
    setDecl(b, 'map', 'fw_rids', 'ifname : mark', ids);
    chain(b, 'fw_rstate', 'type filter hook prerouting priority mangle; policy accept;', [inetRoutedOriginRule()]);
  } else {
    setDecl(b, 'map', 'fw_ids', 'ifname : mark', ids);
    const stamp = bridgeStampChain();
    chain(b, stamp.name, stamp.hook, stamp.rules);
  }
  for (const c of family === 'inet' ? inetBaseChains() : bridgeBaseChains()) chain(b, c.name, c.hook, c.rules);
  for (const l of links) {
    for (const dir of dirs) {
      if (!filters(l, dir)) continue;
      linkItems(b, l, `fw ${family} ${dir}`, seed, (own) => chain(own, fwChain(l.name, dir), null, chainRules(l, dir, family, seed, stateRules(linkMarkId(l.vmId, l.index ?? 0), dir, family))));
    }
  }
}

/** The 128-bit value of an IPv6 address for a raw payload match (`@th,64,128`), as nft writes it. */
function ip6Hex(addr: string): string {
  const full = network6(`${addr}/128`, 'address').slice(0, -4);
  const [head, tail] = full.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return `0x${groups.map((g) => g.padStart(4, '0')).join('')}`;
}

/** Whether a link needs a lock chain: a locked address or a service the guest may not offer. */
const locks = (l: CheckedLink): boolean => l.lockMac || l.lockIp !== null || !!l.guard || !!l.lockLinkLocal;

/**
 * A lock rule's ending: an anonymous counter and the drop, with the link's comment (`vm 'web' if0 ip-spoof`) by
 * which every counter vmd keeps is read and summed. Not named counters: each is an object every later nft run
 * loads into its cache, which cost a start ~5 ms with 1,000 links (2,000 counters) and grew with them.
 * A seed (a replace) goes to the first rule of each comment, so the sum carries over.
 */
function lockDrop(l: CheckedLink, what: 'mac-spoof' | 'ip-spoof' | 'guard', seed: CounterSeed | undefined): string {
  const comment = linkComment(l, what);
  return `${counterOf(seed, comment)} drop comment ${q(comment)}`;
}

// Per-link rules are written without anonymous sets (`!= { a, b }` as `!= a … != b`, one rule per value): each such
// set is a kernel object every later nft run loads into its cache, which made a start's nft run cost ~45 ms CPU at
// 1,000 links instead of ~1 (nft 1.0.6).

/** Drops of the services a guest may not offer: DHCP and DHCPv6 replies; router advertisements and redirects. */
function guardRules(l: CheckedLink, seed: CounterSeed | undefined): string[] {
  // lockDrop for each rule: a seed goes to the first only (one string for all counted it once per rule).
  const matches = [
    ...(l.guard?.dhcp ? ['udp sport 67', 'udp sport 547'] : []),
    ...(l.guard?.router ? ['icmpv6 type nd-router-advert', 'icmpv6 type nd-redirect', 'icmp type redirect'] : []),
  ];
  return matches.map((m) => `${m} ${lockDrop(l, 'guard', seed)}`);
}

/** The lock chain of a routed (local) link in table inet: its MAC and addresses, and the services it may not offer. */
function routedLockRules(l: CheckedLink, seed: CounterSeed | undefined): string[] {
  const rules: string[] = [];
  if (l.lockMac) rules.push(`ether saddr != ${l.mac} ${lockDrop(l, 'mac-spoof', seed)}`);
  if (l.lockIp !== null) rules.push(`meta nfproto ipv4 ip saddr != 0.0.0.0 ip saddr != ${l.lockIp} ${lockDrop(l, 'ip-spoof', seed)}`);
  if (l.lockIp !== null && l.lockIp6) rules.push(`meta nfproto ipv6 ip6 saddr != :: ip6 saddr != fe80::/10 ip6 saddr != ${network6(`${l.lockIp6}/128`, l.name).slice(0, -4)} ${lockDrop(l, 'ip-spoof', seed)}`);
  return [...rules, ...guardRules(l, seed)];
}

// inet vmd: groups, NAT, forwards, locking of routed (local) links, their firewall and the bridges' state marks.
function inetTable(p: CheckedPlan, plan: NetPlan, seed: CounterSeed | undefined): NftItem[] {
  const inet = new Block();
  for (const [g, members] of p.groups) setDecl(inet, 'set', `group_${g}`, 'ifname', uniqSorted(members).map(q));
  const routed = p.links.filter((l) => l.bridge === null && locks(l));
  const fwRouted = p.links.filter((l) => l.bridge === null && l.rules.length > 0);
  const fwBridged = p.links.filter((l) => l.bridge !== null && l.rules.length > 0);
  if (fwBridged.length > 0) setDecl(inet, 'set', 'fw_bridges', 'ifname', uniqSorted(fwBridged.map((l) => l.bridge!)).map(q));
  if (p.masq.length > 0) setDecl(inet, 'set', 'nat_sources', 'ipv4_addr', p.masq, 'interval');
  if (p.masq6.length > 0) setDecl(inet, 'set', 'nat6_sources', 'ipv6_addr', p.masq6, 'interval');
  if (p.forwards.length > 0) {
    setDecl(inet, 'map', 'forwards', 'inet_proto . inet_service : verdict',
      p.forwards.map((f) => `${f.proto} . ${f.hostPort} : jump dnat_${f.proto}_${f.hostPort}`));
    setDecl(inet, 'set', 'localnet', 'ifname', localnetInterfaces(plan).map(q));
  }
  // Per-link dispatch: one lookup per packet whatever the number of links.
  if (routed.length > 0) setDecl(inet, 'map', 'links', 'ifname : verdict', routed.map(lockElement));
  if (p.forwards.length > 0) {
    const dispatch = 'meta nfproto ipv4 fib daddr type local meta l4proto . th dport vmap @forwards';
    chain(inet, 'prerouting', 'type nat hook prerouting priority dstnat; policy accept;', [dispatch]);
    chain(inet, 'output', 'type nat hook output priority -100; policy accept;', [dispatch]);
    for (const f of p.forwards) {
      chain(inet, `dnat_${f.proto}_${f.hostPort}`, null,
        [`meta l4proto ${f.proto} ${counterOf(seed, forwardComment(f))} dnat ip to ${f.guest}:${f.guestPort} comment ${q(forwardComment(f))}`]);
    }
  }
  const post: string[] = [];
  if (p.masq.length > 0) post.push('ip saddr @nat_sources ip daddr != @nat_sources counter masquerade comment "vmd nat"');
  if (p.masq6.length > 0) post.push('ip6 saddr @nat6_sources ip6 daddr != @nat6_sources counter masquerade comment "vmd nat6"');
  if (p.forwards.length > 0) post.push('ip saddr 127.0.0.0/8 oifname @localnet counter masquerade comment "vmd loopback forwards"');
  if (post.length > 0) chain(inet, 'postrouting', 'type nat hook postrouting priority srcnat; policy accept;', post);
  if (routed.length > 0) {
    // Before conntrack (raw), so a spoofed packet never creates a connection or a NAT binding.
    chain(inet, 'prerouting_lock', 'type filter hook prerouting priority raw; policy accept;', ['iifname vmap @links']);
    for (const l of routed) linkItems(inet, l, 'inet lock chain', seed, (own) => chain(own, l.chain, null, routedLockRules(l, seed)));
  }
  if (fwBridged.length > 0) for (const c of inetBridgeStateChains()) chain(inet, c.name, c.hook, c.rules);
  if (fwRouted.length > 0) firewallSection(inet, 'inet', fwRouted, seed);
  if (p.include !== null) inet.add({ kind: 'include', name: p.include });
  return inet.items;
}

// arp vmd: routed links' ARP never reaches a bridge, so their sender fields are checked here.
function arpTable(p: CheckedPlan, seed: CounterSeed | undefined): NftItem[] {
  const routed = p.links.filter((l) => l.bridge === null && (l.lockMac || l.lockIp !== null));
  if (routed.length === 0) return [];
  const arp = new Block();
  setDecl(arp, 'map', 'links', 'ifname : verdict', routed.map(lockElement));
  chain(arp, 'input', 'type filter hook input priority filter; policy accept;', ['iifname vmap @links']);
  for (const l of routed) {
    linkItems(arp, l, 'arp lock chain', seed, (own) => chain(own, l.chain, null, [
      ...(l.lockMac ? [`arp saddr ether != ${l.mac} ${lockDrop(l, 'mac-spoof', seed)}`] : []),
      ...(l.lockIp !== null ? [`arp saddr ip != 0.0.0.0 arp saddr ip != ${l.lockIp} ${lockDrop(l, 'ip-spoof', seed)}`] : []),
    ]));
  }
  return arp.items;
}

/** The lock chain of a bridged link: what it may send, checked before the bridge decides anything. */
function bridgeLockRules(l: CheckedLink, seed: CounterSeed | undefined): string[] {
  const rules: string[] = [];
  if (l.lockMac) {
    rules.push(`ether saddr != ${l.mac} ${lockDrop(l, 'mac-spoof', seed)}`);
    rules.push(`ether type arp arp saddr ether != ${l.mac} ${lockDrop(l, 'mac-spoof', seed)}`);
  }
  if (l.lockIp !== null) {
    rules.push(`ether type ip ip saddr != 0.0.0.0 ip saddr != ${l.lockIp} ${lockDrop(l, 'ip-spoof', seed)}`);
    // ARP claiming an address the guest was not given (replies included).
    rules.push(`ether type arp arp saddr ip != 0.0.0.0 arp saddr ip != ${l.lockIp} ${lockDrop(l, 'ip-spoof', seed)}`);
    // A VLAN tag would carry the spoofed packet past the checks above.
    rules.push(`ether type 8021q ${lockDrop(l, 'ip-spoof', seed)}`, `ether type 8021ad ${lockDrop(l, 'ip-spoof', seed)}`);
  }
  if (l.lockLinkLocal) {
    rules.push(`ether type ip6 ip6 saddr != :: ip6 saddr != ${l.lockLinkLocal} ${lockDrop(l, 'ip-spoof', seed)}`);
    // Neighbour advertisements claiming another address (the target field, after type, code, checksum and flags).
    rules.push(`icmpv6 type nd-neighbor-advert @th,64,128 != ${ip6Hex(l.lockLinkLocal)} ${lockDrop(l, 'ip-spoof', seed)}`);
  }
  return [...rules, ...guardRules(l, seed)];
}

// bridge vmd: locking of bridged links and their firewall (stateless here: the state comes marked from inet).
function bridgeTable(p: CheckedPlan, seed: CounterSeed | undefined): NftItem[] {
  const bridged = p.links.filter((l) => l.bridge !== null && locks(l));
  const fwBridged = p.links.filter((l) => l.bridge !== null && l.rules.length > 0);
  if (bridged.length === 0 && fwBridged.length === 0) return [];
  const br = new Block();
  if (bridged.length > 0) {
    setDecl(br, 'map', 'links', 'ifname : verdict', bridged.map(lockElement));
    chain(br, 'prerouting', 'type filter hook prerouting priority -200; policy accept;', ['iifname vmap @links']);
  }
  if (fwBridged.length > 0) firewallSection(br, 'bridge', fwBridged, seed);
  for (const l of bridged) linkItems(br, l, 'bridge lock chain', seed, (own) => chain(own, l.chain, null, bridgeLockRules(l, seed)));
  return br.items;
}

/**
 * vmd's tables for a plan as declarations: `inet` whenever the plan holds anything, `arp` and `bridge` only when
 * they have something to declare. Counters found in `seed` (by comment) start from those values; the map is consumed.
 */
export function nftModel(plan: NetPlan, seed?: CounterSeed): NftModel {
  const p = checkPlan(plan);
  const model = new Map<NftFamily, readonly NftItem[]>();
  const empty = p.switches.length === 0 && p.links.length === 0 && p.forwards.length === 0 && p.masq.length === 0 && p.include === null;
  if (empty) return model;
  model.set('inet', inetTable(p, plan, seed));
  const arp = arpTable(p, seed);
  if (arp.length > 0) model.set('arp', arp);
  const bridge = bridgeTable(p, seed);
  if (bridge.length > 0) model.set('bridge', bridge);
  return model;
}

/** The script that atomically replaces vmd's tables (and only them) with a model's. */
export function modelScript(model: NftModel): string {
  const out = ['# generated by vmd: its own tables only; each run replaces them atomically', ...resetTables()];
  for (const family of ['inet', 'arp', 'bridge'] as const) {
    const items = model.get(family);
    if (items !== undefined) out.push(...tableLines(family, items));
  }
  return `${out.join('\n')}\n`;
}

/**
 * Renders the plan as one `nft -f -` script that atomically replaces vmd's tables (and only them). Counters
 * found in `seed` (by comment, as nftCounters returns them) start from those values, so a replace does not
 * reset them; the map is consumed.
 */
export function nftScript(plan: NetPlan, seed?: CounterSeed): string {
  return modelScript(nftModel(plan, seed));
}
