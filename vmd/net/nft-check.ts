// The check pass in front of nftScript: every name and address of a NetPlan is validated (it ends up in nft
// syntax, so nothing unchecked gets through) and the plan comes back sorted, deduplicated and normalised.

import type { FilterRule } from '../../share/config.js';
import {
  byText, forwardConflict, ifname, invalid, ipv4, MAC, network, network6, port, vmName,
  type NetForward, type NetLink, type NetPlan, type NetSwitch,
} from './nft-plan.js';
import { groupNameError } from '../../share/names.js';

/** A link that passed the checks, with its rules defaulted and the name of its lock chain. */
export interface CheckedLink extends NetLink {
  readonly rules: readonly FilterRule[];
  readonly chain: string;
}

/** A NetPlan after checkPlan: what nftScript renders. */
export interface CheckedPlan {
  readonly switches: readonly NetSwitch[];
  readonly links: readonly CheckedLink[];
  readonly forwards: readonly NetForward[];
  readonly masq: readonly string[];
  readonly masq6: readonly string[];
  /** Group name → member interfaces, sorted by name. */
  readonly groups: ReadonlyArray<readonly [string, ReadonlySet<string>]>;
  readonly include: string | null;
}

function checkLink(l: NetLink): CheckedLink {
  const what = `link ${l.name}`;
  ifname(l.name, 'link');
  vmName(l.vm);
  if (!MAC.test(l.mac)) invalid(`${what}: invalid lladdr ${JSON.stringify(l.mac)}`);
  if (l.bridge !== null) ifname(l.bridge, what);
  if (l.bridge !== null && l.local !== null) invalid(`${what}: a local link cannot be on a bridge`);
  if (l.lockIp !== null) ipv4(l.lockIp, what);
  if (l.lockIp6 !== undefined && l.lockIp6 !== null) network6(`${l.lockIp6}/128`, what);
  if (l.lockLinkLocal !== undefined && l.lockLinkLocal !== null && !network6(`${l.lockLinkLocal}/128`, what).startsWith('fe80:')) {
    invalid(`${what}: not a link-local address ${JSON.stringify(l.lockLinkLocal)}`);
  }
  if (l.local !== null) {
    ipv4(l.local.host, what);
    ipv4(l.local.guest, what);
  }
  if (l.index !== undefined && (!Number.isInteger(l.index) || l.index < 0)) invalid(`${what}: invalid nic index ${l.index}`);
  for (const g of l.groups) if (groupNameError(g) !== null) invalid(`${what}: invalid group name ${JSON.stringify(g)}`);
  // Every property written out, in one order: objects spread from links made at different times came out with as
  // many hidden classes as links, and every pass over 1,000 of them went through V8's slowest property lookups.
  return {
    name: l.name, vmId: l.vmId, vm: l.vm, index: l.index, bridge: l.bridge, mac: l.mac, lockMac: l.lockMac, lockIp: l.lockIp,
    local: l.local, groups: l.groups, rules: l.rules ?? [], lockIp6: l.lockIp6 ?? null, lockLinkLocal: l.lockLinkLocal ?? null,
    guard: l.guard ?? null, chain: `link_${l.name}`,
  };
}

/**
 * checkLink, the same object for a link that did not change since the last plan: every start re-checks every link
 * there is, and nft.ts and nft-delta.ts recognise an unchanged link's declarations by that identity.
 */
function checkLinkCached(l: NetLink): CheckedLink {
  const same = checkedSame.get(l);
  if (same !== undefined) return same;
  const key = JSON.stringify(l);
  const known = checkedLinks.get(key);
  const c = known ?? checkLink(l);
  if (checkedLinks.size >= CHECKED_LINKS_MAX) checkedLinks.clear();
  checkedLinks.set(key, c);
  checkedSame.set(l, c);
  return c;
}

const checkedSame = new WeakMap<NetLink, CheckedLink>();
const checkedLinks = new Map<string, CheckedLink>();
const CHECKED_LINKS_MAX = 8192;

function checkForward(f: NetForward): void {
  if (f.proto !== 'tcp' && f.proto !== 'udp') invalid(`forward: invalid protocol ${JSON.stringify(f.proto)}`);
  port(f.hostPort, 'forward');
  port(f.guestPort, 'forward');
  ipv4(f.guest, `forward ${f.proto}/${f.hostPort}`);
  vmName(f.vm);
  ifname(f.via, `forward ${f.proto}/${f.hostPort}`);
}

/** The masqueraded sources as an nft interval set allows them: overlapping prefixes are an error there, so only the widest of nested ones is kept. */
function masqueraded(plan: NetPlan, switches: readonly NetSwitch[]): string[] {
  const masq = new Map<string, { addr: number; len: number }>();
  for (const c of [...plan.masquerade, ...switches.filter((s) => s.nat && s.subnet !== null).map((s) => s.subnet!)]) {
    const n = network(c, 'masquerade');
    masq.set(n.text, n);
  }
  const kept: Array<{ addr: number; len: number; text: string }> = [];
  for (const [text, n] of [...masq.entries()].sort((a, b) => a[1].addr - b[1].addr || a[1].len - b[1].len)) {
    const inside = kept.some((k) => k.len <= n.len && ((n.addr & (k.len === 0 ? 0 : (0xffffffff << (32 - k.len)) >>> 0)) >>> 0) === k.addr);
    if (!inside) kept.push({ ...n, text });
  }
  return kept.map((k) => k.text);
}

/** Validates a plan for nftScript; throws ERR_INVALID naming the first bad name or address. */
export function checkPlan(plan: NetPlan): CheckedPlan {
  const switches = [...plan.switches].sort((a, b) => byText(a.name, b.name));
  for (const s of switches) {
    ifname(s.bridge, `switch ${s.name}`);
    if (s.subnet !== null) network(s.subnet, `switch ${s.name}`);
    if (s.group !== null && groupNameError(s.group) !== null) invalid(`switch ${s.name}: invalid group name ${JSON.stringify(s.group)}`);
  }
  const linkNames = new Set<string>();
  const links = [...plan.links].sort((a, b) => byText(a.name, b.name)).map((l) => {
    if (linkNames.has(l.name)) invalid(`link ${l.name}: listed twice`);
    linkNames.add(l.name);
    return checkLinkCached(l);
  });
  const forwards = [...plan.forwards].sort((a, b) => byText(a.proto, b.proto) || a.hostPort - b.hostPort);
  for (const f of forwards) checkForward(f);
  const conflict = forwardConflict([], forwards);
  if (conflict !== null) invalid(conflict);
  const masq6 = [...new Set((plan.masquerade6 ?? []).map((c) => network6(c, 'masquerade6')))].sort(byText);
  const groups = new Map<string, Set<string>>();
  const member = (g: string, m: string): void => void (groups.get(g) ?? groups.set(g, new Set()).get(g)!).add(m);
  for (const s of switches) if (s.group !== null) member(s.group, s.bridge);
  for (const l of links) for (const g of l.groups) member(g, l.name);
  for (const g of plan.groups ?? []) {
    if (groupNameError(g) !== null) invalid(`invalid group name ${JSON.stringify(g)}`);
    if (!groups.has(g)) groups.set(g, new Set());
  }
  const include = plan.include ?? null;
  if (include !== null && (!include.startsWith('/') || /["\x00-\x1f\x7f]/.test(include))) invalid(`include: invalid path ${JSON.stringify(include)}`);
  return {
    switches, links, forwards, masq: masqueraded(plan, switches), masq6,
    groups: [...groups.entries()].sort((a, b) => byText(a[0], b[0])), include,
  };
}
