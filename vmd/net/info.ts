// What `vmctl links` and `vmctl firewall` show of the managed links: switch, address or lease, the kernel's
// counters and the firewall's, read from the namespaces the links live in.

import type { SwitchConfig, VmConfig } from '../../share/config.js';
import type { Count, FirewallInfo, LinkInfo } from '../../share/protocol.js';
import { linkName } from './addr.js';
import type { DnsmasqInstance } from './dnsmasq.js';
import { linkComment, ruleComment } from './firewall.js';
import { readLeases } from './leases.js';
import { linkStats } from './links.js';
import { nftCounters } from './nft-apply.js';
import { guardOf, lockedIpOf, sum, type LinkState } from './plan.js';

/** The parts of the parent's Network these listings read. */
export interface NetworkView {
  readonly links: ReadonlyMap<string, LinkState>;
  readonly switches: readonly SwitchConfig[];
  readonly switchDhcp: ReadonlyMap<string, DnsmasqInstance>;
  switchByName(name: string): SwitchConfig | undefined;
}

/** `vmctl links`: every managed link with its switch, address and counters. */
export async function linksInfoOf(net: NetworkView, filter: (vmId: number, vm: string) => boolean): Promise<LinkInfo[]> {
  const out: LinkInfo[] = [];
  const stats = new Map<string | null, Awaited<ReturnType<typeof linkStats>>>();
  const leases = new Map<string, string>();
  for (const s of net.switches) {
    const inst = net.switchDhcp.get(s.name);
    if (inst === undefined) continue;
    const prefix = s.address?.split('/')[1] ?? '24';
    for (const l of readLeases(inst.leaseFile)) leases.set(l.mac, `${l.address}/${prefix}`);
  }
  const counters = new Map<string | null, Map<string, Count>>();
  for (const l of [...net.links.values()].sort((a, b) => a.vmId - b.vmId || a.index - b.index)) {
    if (!filter(l.vmId, l.vm)) continue;
    if (!stats.has(l.netns)) stats.set(l.netns, await linkStats(l.netns).catch(() => new Map()));
    if (!counters.has(l.netns)) counters.set(l.netns, await nftCounters(l.netns).catch(() => new Map()));
    const st = stats.get(l.netns)!.get(l.name);
    const fw = linkCounts(l, counters.get(l.netns)!);
    out.push({
      vmId: l.vmId, vm: l.vm, index: l.index, link: l.name, lladdr: l.mac, switch: l.switch, local: l.local !== null,
      address: l.local !== null ? `${l.local.guest}/31` : leases.get(l.mac) ?? null,
      rxPackets: st?.rxPackets ?? 0, rxBytes: st?.rxBytes ?? 0, rxDropped: st?.rxDropped ?? 0,
      txPackets: st?.txPackets ?? 0, txBytes: st?.txBytes ?? 0, txDropped: st?.txDropped ?? 0,
      spoofDropped: fw.macSpoof.packets + fw.ipSpoof.packets + fw.guard.packets,
      blocked: fw.vlan.packets + fw.rules.reduce((n, r, i) => n + (l.rules[i]!.action === 'block' ? r.packets : 0), 0),
      forwards: l.forwards.map((f) => `${f.proto} ${f.hostPort}>${f.guestPort}`),
    });
  }
  return out;
}

/** A link's counters by what they count, from nftCounters of its namespace. */
function linkCounts(l: LinkState, counters: ReadonlyMap<string, Count>): { macSpoof: Count; ipSpoof: Count; guard: Count; vlan: Count; rules: Count[] } {
  const get = (what: string): Count => sum([counters.get(linkComment(l, what))]);
  return { macSpoof: get('mac-spoof'), ipSpoof: get('ip-spoof'), guard: get('guard'), vlan: get('vlan'), rules: l.rules.map((_r, i) => sum([counters.get(ruleComment(l, i))])) };
}

/**
 * `vmctl firewall`: the rules of a VM's interfaces as written, each with what it decided, and the spoofing
 * drops. A VM that is not running shows its configured rules without counters.
 */
/** What a running link's guest may not offer (guardOf), as FirewallInfo names it. */
function guardedOf(live: LinkState | null): Array<'dhcp' | 'router'> {
  const g = live === null ? null : guardOf(live);
  return g === null ? [] : (['dhcp', 'router'] as const).filter((k) => g[k]);
}

export async function firewallInfoOf(net: NetworkView, vmId: number, vm: VmConfig, index: number | undefined): Promise<FirewallInfo[]> {
  const out: FirewallInfo[] = [];
  const counters = new Map<string | null, Map<string, Count>>();
  for (const nic of vm.interfaces) {
    if (index !== undefined && nic.index !== index) continue;
    const l = net.links.get(linkName(vmId, nic.index));
    const live = l !== undefined && l.vmId === vmId ? l : null;
    const rules = live?.rules ?? nic.rules;
    let c: ReturnType<typeof linkCounts> | null = null;
    if (live !== null) {
      if (!counters.has(live.netns)) counters.set(live.netns, await nftCounters(live.netns).catch(() => new Map()));
      c = linkCounts(live, counters.get(live.netns)!);
    }
    const lockedLladdr = live !== null ? live.lockMac || live.local !== null : nic.locked || nic.local || (nic.switch !== null && (net.switchByName(nic.switch)?.locked ?? false));
    out.push({
      vmId, vm: vm.name, index: nic.index, link: live?.name ?? null, switch: live?.switch ?? nic.switch, local: nic.local,
      lockedLladdr, lockedIp: live === null ? null : lockedIpOf(live),
      rules: rules.map((r, i) => ({ n: i + 1, text: r.text, action: r.action, source: `${r.location.file}:${r.location.line}`, count: c === null ? null : c.rules[i]! })),
      macSpoof: c === null || !lockedLladdr ? null : c.macSpoof,
      ipSpoof: c === null || live === null || lockedIpOf(live) === null ? null : c.ipSpoof,
      vlan: c === null || rules.length === 0 || live?.bridge === null ? null : c.vlan,
      guarded: guardedOf(live),
      guard: c === null || guardedOf(live).length === 0 ? null : c.guard,
    });
  }
  return out;
}
