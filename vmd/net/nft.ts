// vmd's nftables generator: a pure function from a NetPlan to one script that atomically replaces vmd's own
// tables (NAT, port forwards, address locking, interface groups, the guests' firewalls) and only them.

import type { FilterRule } from '../../share/config.js';
import {
  bridgeBaseChains, chainRules, filters, fwChain, inetBaseChains, inetStateChains, linkComment, type CounterSeed,
} from './firewall.js';
import {
  byText, forwardComment, forwardConflict, GROUP, ifname, invalid, ipv4, localnetInterfaces, MAC, network, network6, port, q, uniqSorted, vmName,
  type NetLink, type NetPlan,
} from './nft-plan.js';

// The families vmd owns a `vmd` table in; nothing else in nftables is ever touched.
export const NFT_TABLES: readonly (readonly [family: 'inet' | 'bridge' | 'arp', name: 'vmd'])[] = [
  ['inet', 'vmd'],
  ['bridge', 'vmd'],
  ['arp', 'vmd'],
];

/** The preamble that makes the script idempotent: create-if-absent then delete, for each of vmd's tables. */
export function resetTables(): string[] {
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
    if (s.group !== null && !GROUP.test(s.group)) invalid(`switch ${s.name}: invalid group name ${JSON.stringify(s.group)}`);
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
    for (const g of l.groups) if (!GROUP.test(g)) invalid(`link ${l.name}: invalid group name ${JSON.stringify(g)}`);
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
    if (!GROUP.test(g)) invalid(`invalid group name ${JSON.stringify(g)}`);
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

