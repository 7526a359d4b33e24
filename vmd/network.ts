// The parent's networking: switches (bridges), managed links (taps), local interfaces with DHCP and NAT,
// port forwards and routing domains (network namespaces), kept in step with the running guests.

import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_STATE_DIR } from '../share/paths.js';
import type { Config, FilterRule, InterfaceConfig, PasstConfig, PortForward, Prefix6, SwitchConfig, VmConfig } from '../share/config.js';
import { VmdError } from '../share/errors.js';
import type { FirewallInfo, LinkInfo } from '../share/protocol.js';
import type { StateDb } from './db.js';
import { logInfo, logWarn } from './log.js';
import { closeFd } from './native.js';
import { linkAlias, linkName, localAddr4, localAddr6, localHostMac, rdomainNetns, stableMac } from './net/addr.js';
import { DnsmasqInstance } from './net/dnsmasq.js';
import { linkConfigure, netnsEnsure, netnsExists, netnsRemove, tapCreate } from './net/links.js';
import { bridgeEnsure, bridgeRemove } from './net/bridges.js';
import { vxlanEnsure, vxlanMtu, vxlanPortName } from './net/vxlan.js';
import { linkComment, type CounterSeed } from './net/firewall.js';
import { foreignForwardDrop, nftFlush, sysctlSet } from './net/nft-apply.js';
import { forwardConflict, type NetPlan } from './net/nft-plan.js';
import { bridgeMac, netPlanOf, sameRules, type LinkState } from './net/plan.js';
import { nicKindOf } from './net/nic-kind.js';
import { firewallInfoOf, linksInfoOf, type NetworkView } from './net/info.js';
import { Rulesets } from './net/ruleset.js';
import { inet6PrefixOf } from './net/inet6.js';
import { SwitchDhcp } from './net/switch-dhcp.js';
import { PASST_ROOTLESS } from './net/passt.js';
import { passtInstalled } from './net/passt-run.js';

/** A NIC as QEMU gets it: a tap on a host fd (the parent maps it to QEMU's number), or user-mode networking. */
export type NicPlan =
  | { readonly kind: 'tap'; readonly hostFd: number; readonly mac: string }
  | { readonly kind: 'user'; readonly mac: string; readonly forwards: readonly PortForward[] }
  | { readonly kind: 'passt'; readonly mac: string; readonly passt: PasstConfig; readonly forwards: readonly PortForward[] };

/**
 * The namespace of rdomain N: `vmd-rdomainN` for the system's vmd; a vmd with its own state directory (tests,
 * a second daemon) gets a suffix from that directory, since namespace names are global to the host.
 */
export function rdomainNetnsFor(n: number, stateDir: string): string {
  if (stateDir === DEFAULT_STATE_DIR) return rdomainNetns(n);
  return `${rdomainNetns(n)}-${createHash('sha256').update(stateDir).digest('hex').slice(0, 8)}`;
}

/** Owns every host network object vmd makes; the parent calls it around each guest start and stop. */
export class Network {
  private readonly links = new Map<string, LinkState>();
  private readonly switchDhcp: SwitchDhcp;
  private readonly rulesets = new Rulesets();

  constructor(
    private config: Config,
    private readonly db: StateDb,
    private readonly stateDir: string,
    private readonly root: boolean,
  ) {
    mkdirSync(join(stateDir, 'net'), { recursive: true, mode: 0o755 });
    this.switchDhcp = new SwitchDhcp(join(stateDir, 'net'));
  }

  private switchByName(name: string): SwitchConfig | undefined {
    return this.config.switches.find((s) => s.name === name && s.enabled);
  }

  private nsOf(sw: SwitchConfig | undefined, nic: InterfaceConfig | null): string | null {
    const r = nic?.rdomain ?? sw?.rdomain ?? null;
    return r === null ? null : rdomainNetnsFor(r, this.stateDir);
  }

  /** A new config (reload): switches that left it are taken down, new ones come up. */
  async configure(config: Config): Promise<void> {
    this.config = config;
    await this.switchesUp();
    await this.switchesPrune(false);
  }

  // PRIV: creates bridges, VXLAN ports and namespaces, and starts dnsmasq for `dhcp` switches.
  async switchesUp(): Promise<void> {
    if (!this.root) return;
    for (const sw of this.config.switches) {
      if (!sw.enabled) continue;
      const netns = this.nsOf(sw, null);
      try {
        if (netns !== null && await netnsEnsure(netns)) this.db.ownedAdd({ kind: 'netns', name: netns, netns: null });
        // The tunnel's socket and underlay device are the host's, also for a switch in an rdomain.
        const mtu = sw.vxlan === null ? undefined : await vxlanMtu(sw.vxlan, null);
        const { created } = await bridgeEnsure({ name: sw.interface, netns, mac: bridgeMac(sw.interface), up: sw.up, address: sw.address, ...(mtu === undefined ? {} : { mtu }) });
        if (created) this.db.ownedAdd({ kind: 'bridge', name: sw.interface, netns });
        if (sw.vxlan !== null) {
          const name = vxlanPortName(sw.vxlan.id);
          await vxlanEnsure({ ...sw.vxlan, name, bridge: sw.interface, netns, underlayNetns: null, ...(mtu === undefined ? {} : { mtu }) });
          this.db.ownedAdd({ kind: 'vxlan', name, netns });
        }
        // Kept across a vmd restart: re-adopted guests keep their fixed leases (vmReadopt reads each one's file).
        if (sw.dhcp && sw.address !== null) await this.switchDhcp.start({ ...sw, address: sw.address }, netns, this.links.values(), mtu);
        if (sw.nat || sw.address !== null) await this.forwarding(netns);
        logInfo(`switch "${sw.name}" on ${sw.interface}${netns === null ? '' : ` in ${netns}`}: up`);
      } catch (err) {
        logWarn(`switch "${sw.name}": ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    await this.sync();
  }

  /** Remove what vmd created for switches that are no longer configured (all of them with `all`). */
  // PRIV: deletes bridges, VXLAN ports and namespaces vmd itself created; adopted ones are never touched.
  async switchesPrune(all: boolean): Promise<void> {
    if (!this.root) return;
    const wanted = new Set(all ? [] : this.config.switches.filter((s) => s.enabled).map((s) => `${s.interface}@${this.nsOf(s, null) ?? ''}`));
    await this.switchDhcp.prune((name) => !all && this.switchByName(name) !== undefined);
    for (const o of this.db.ownedList()) {
      if (o.kind === 'netns') continue;
      const sw = this.config.switches.find((s) => s.enabled && (s.interface === o.name || (s.vxlan !== null && vxlanPortName(s.vxlan.id) === o.name)));
      const key = sw === undefined ? '' : `${sw.interface}@${this.nsOf(sw, null) ?? ''}`;
      if (!all && wanted.has(key)) continue;
      await bridgeRemove(o.name, o.netns).catch((err: unknown) => logWarn(`${o.kind} ${o.name}: ${err instanceof Error ? err.message : String(err)}`));
      this.db.ownedRemove(o);
    }
    await this.netnsPrune();
    await this.sync();
  }

  private async netnsPrune(): Promise<void> {
    const inUse = new Set<string>();
    for (const l of this.links.values()) if (l.netns !== null) inUse.add(l.netns);
    for (const s of this.config.switches) {
      const ns = this.nsOf(s, null);
      if (s.enabled && ns !== null) inUse.add(ns);
    }
    for (const o of this.db.ownedList()) {
      if (o.kind !== 'netns' || inUse.has(o.name)) continue;
      // Only an empty namespace goes; one holding anything else (a user's link, a process) is kept and recorded.
      const r = await netnsRemove(o.name).catch(() => ({ removed: false, users: [] as string[] }));
      if (r.removed || !(await netnsExists(o.name))) {
        this.db.ownedRemove(o);
        this.rulesets.forget(o.name);
      }
      else logWarn(`namespace ${o.name}: kept, still used by ${r.users.join(', ')}`);
    }
  }

  private async forwarding(netns: string | null): Promise<void> {
    const previous = await sysctlSet('net.ipv4.ip_forward', '1', netns);
    if (previous !== '1') logInfo(`enabled IPv4 forwarding${netns === null ? '' : ` in ${netns}`} for vmd's switches and local interfaces`);
  }

  /**
   * Make the host side of every NIC of a starting guest. Returns what QEMU gets, in NIC order, and the host fds
   * the parent must pass (and close after the spawn). Without root, NICs fall back to QEMU's user-mode NAT.
   */
  // PRIV: creates taps (TUNSETIFF), moves them into namespaces, addresses them, starts dnsmasq for local links.
  async vmUp(vmId: number, vm: VmConfig): Promise<{ nics: NicPlan[]; fds: number[] }> {
    const nics: NicPlan[] = [];
    const fds: number[] = [];
    const made: string[] = [];
    try {
      for (const nic of vm.interfaces) {
        const mac = nic.lladdr ?? stableMac(vmId, vm.name, nic.index);
        const sw = nic.switch === null ? undefined : this.switchByName(nic.switch);
        const kind = nicKindOf(vm.name, nic, sw, this.root, passtInstalled);
        if (kind === 'passt') {
          nics.push({ kind: 'passt', mac, passt: nic.passt ?? PASST_ROOTLESS, forwards: nic.forwards });
          continue;
        }
        if (kind === 'user') {
          nics.push({ kind: 'user', mac, forwards: nic.forwards });
          continue;
        }
        const state = this.linkStateOf(vmId, vm, nic, sw, false);
        const { name, netns, local, local6 } = state;
        if (netns !== null && await netnsEnsure(netns)) this.db.ownedAdd({ kind: 'netns', name: netns, netns: null });
        const conflict = forwardConflict(
          [...this.links.values()].filter((l) => l.vmId !== vmId).flatMap((l) => l.forwards.map((f) => ({ ...f, guest: '', via: l.name, vm: l.vm }))),
          nic.forwards.map((f) => ({ ...f, guest: '', via: name, vm: vm.name })),
        );
        if (conflict !== null) throw new VmdError('ERR_INVALID', `vm "${vm.name}": ${conflict}`);
        const tap = tapCreate(name, { vnetHdr: true, netns });
        fds.push(tap.fd);
        made.push(name);
        await linkConfigure({
          name, netns, alias: linkAlias(vmId, nic.index, vm.name), master: sw?.interface ?? null, up: nic.up, ...(local === null ? {} : { mac: localHostMac(mac) }),
          address: local === null ? null : [`${local.host}/31`, ...(local6 ? [`${local6.host}/96`] : [])],
        });
        this.links.set(name, state);
        this.rulesets.countersReset(linkComment(state, ''));
        this.switchDhcp.leaseAdd(state);
        if (local !== null) {
          await this.forwarding(netns);
          if (local6) await this.forwarding6(netns);
          state.dhcp = await this.localDhcpStart(state);
        }
        nics.push({ kind: 'tap', hostFd: tap.fd, mac });
      }
      // Only new links change the rules: a guest with no NIC or only user-mode NICs costs no nft run.
      if (made.length > 0) await this.sync(new Set(made.map((n) => this.links.get(n)!.netns)));
      return { nics, fds };
    } catch (err) {
      // Nothing half-made stays: dnsmasq instances stop, taps vanish when their fds close (the caller never gets them).
      for (const fd of fds) closeFd(fd);
      for (const name of made) {
        const l = this.links.get(name);
        await l?.dhcp?.stop();
        this.links.delete(name);
        if (l !== undefined) this.switchDhcp.leaseDrop(l, this.links.values());
      }
      await this.sync().catch(() => undefined);
      throw err;
    }
  }

  /** A guest is gone: its taps vanished with QEMU's fds; stop its DHCP servers and drop its rules. */
  async vmDown(vmId: number): Promise<void> {
    let changed = false;
    for (const [name, l] of this.links) {
      if (l.vmId !== vmId) continue;
      await l.dhcp?.stop();
      this.links.delete(name);
      this.rulesets.countersReset(linkComment(l, ''));
      this.switchDhcp.leaseDrop(l, this.links.values());
      changed = true;
    }
    if (changed) {
      await this.sync();
      await this.netnsPrune();
    }
  }

  /** After a restart: re-learn the links of a re-adopted guest (its taps still exist, held by QEMU). */
  async vmReadopt(vmId: number, vm: VmConfig): Promise<void> {
    if (!this.root) return;
    for (const nic of vm.interfaces) {
      const sw = nic.switch === null ? undefined : this.switchByName(nic.switch);
      if (nic.switch !== null && sw === undefined) continue;
      const state = this.linkStateOf(vmId, vm, nic, sw, true);
      this.links.set(state.name, state);
      this.switchDhcp.leaseAdd(state);
      if (state.local !== null) {
        await DnsmasqInstance.killStale(join(this.stateDir, 'net', `${state.name}.pid`));
        state.dhcp = await this.localDhcpStart(state).catch((err: unknown) => {
          logWarn(`link ${state.name}: dhcp: ${err instanceof Error ? err.message : String(err)}`);
          return null;
        });
      }
    }
  }

  /** What vmd remembers of a guest NIC's link (made by vmUp, or re-learnt by vmReadopt); nothing is changed yet. */
  private linkStateOf(vmId: number, vm: VmConfig, nic: InterfaceConfig, sw: SwitchConfig | undefined, readopt: boolean): LinkState {
    const mac = nic.lladdr ?? stableMac(vmId, vm.name, nic.index);
    const local = nic.local ? localAddr4(this.config.global.localPrefix, vmId, nic.index) : null;
    return {
      vmId, vm: vm.name, index: nic.index, name: linkName(vmId, nic.index), netns: this.nsOf(sw, nic), mac,
      switch: sw?.name ?? null, bridge: sw?.interface ?? null, local: local === null ? null : { host: local.host, guest: local.guest },
      lockMac: nic.locked || (sw?.locked ?? false), forwards: nic.forwards,
      groups: [nic.group, sw?.group].filter((g): g is string => g !== null && g !== undefined), rules: nic.rules, dhcp: null,
      fixed: sw === undefined || nic.local ? null : this.fixedLease(sw, vmId, nic.index, mac, readopt),
      local6: local === null ? null : this.local6Of(local), allow: nic.allow ?? [], spanned: sw?.vxlan !== null && sw?.vxlan !== undefined,
    };
  }

  /** The DHCP server of a local link: the guest gets exactly its half of the /31 (and of the /96 with local inet6). */
  private localDhcpStart(l: LinkState): Promise<DnsmasqInstance> {
    const dir = join(this.stateDir, 'net');
    return DnsmasqInstance.start({
      name: l.name, kind: 'local', interface: l.name, address: `${l.local!.host}/31`, guest: l.local!.guest, mac: l.mac, ...(l.local6 ? { inet6: l.local6 } : {}),
      leaseFile: join(dir, `${l.name}.leases`), pidFile: join(dir, `${l.name}.pid`), logFile: join(dir, `${l.name}.log`),
    }, { netns: l.netns });
  }

  /**
   * `vmctl reload` with a running guest: its links take the interface blocks' new rules, replaced atomically
   * with everything else (as SmartOS fwadm does); their counters start again. Returns whether anything changed.
   */
  // PRIV: loads nftables rulesets into vmd's own tables.
  async vmRules(vmId: number, vm: VmConfig): Promise<boolean> {
    const previous = new Map<LinkState, readonly FilterRule[]>();
    for (const nic of vm.interfaces) {
      const l = this.links.get(linkName(vmId, nic.index));
      if (l === undefined || l.vmId !== vmId || sameRules(l.rules, nic.rules)) continue;
      previous.set(l, l.rules);
      l.rules = nic.rules;
      this.rulesets.countersReset(linkComment(l, 'rule '));
      this.rulesets.countersReset(linkComment(l, 'vlan'));
    }
    if (previous.size === 0) return false;
    try {
      await this.sync(new Set([...previous.keys()].map((l) => l.netns)));
    } catch (err) {
      // The old rules stay in force (nft replaces all or nothing); so does what vmd remembers of them.
      for (const [l, rules] of previous) l.rules = rules;
      throw err;
    }
    return true;
  }

  /** Kill DHCP servers a previous vmd left running; their links are re-made as guests are re-adopted. */
  async cleanupStale(): Promise<void> {
    if (!this.root) return;
    const dir = join(this.stateDir, 'net');
    for (const f of readdirSync(dir)) if (f.endsWith('.pid')) await DnsmasqInstance.killStale(join(dir, f));
  }

  /**
   * Recompute and atomically apply vmd's nftables tables in every namespace that has (or had) something; with
   * `strict`, a failure in one of those namespaces is thrown (Rulesets.apply); `carry`: a migrated guest's counters.
   */
  async sync(strict: ReadonlySet<string | null> = new Set(), carry?: { spaces: Iterable<string | null>; seed: CounterSeed }): Promise<void> {
    if (!this.root) return;
    if (carry !== undefined) this.rulesets.countersCarry(carry.spaces, carry.seed);
    const spaces = new Set<string | null>([null]);
    for (const l of this.links.values()) spaces.add(l.netns);
    for (const s of this.config.switches) if (s.enabled) spaces.add(this.nsOf(s, null));
    for (const o of this.db.ownedList()) if (o.kind === 'netns') spaces.add(o.name);
    const groups = new Set<string>();
    for (const s of this.config.switches) if (s.enabled && s.group !== null) groups.add(s.group);
    for (const vm of this.config.vms) for (const nic of vm.interfaces) if (nic.group !== null) groups.add(nic.group);
    await this.rulesets.apply(spaces, (ns) => this.planFor(ns), [...groups], strict);
  }

  /** The firewall's forward policy warning, for `vmctl status`. */
  async warnings(): Promise<string[]> {
    if (!this.root || (this.links.size === 0 && !this.config.switches.some((s) => s.enabled))) return [];
    const w = await foreignForwardDrop(null).catch(() => null);
    return w === null ? [] : [w];
  }

  /** What nftScript gets for one namespace (public for the unit tests). */
  planFor(ns: string | null): NetPlan {
    return netPlanOf(ns, this.links.values(), { switches: this.config.switches, nsOf: (s) => this.nsOf(s, null), switchByName: (n) => this.switchByName(n) });
  }

  /** The host link of a running guest's NIC and the namespace it lives in; null when the NIC has none (user-mode NAT). */
  linkOf(vmId: number, index: number): { readonly name: string; readonly netns: string | null } | null {
    for (const l of this.links.values()) if (l.vmId === vmId && l.index === index) return { name: l.name, netns: l.netns };
    return null;
  }

  /** The IPv6 prefix of `local inet6` (inet6PrefixOf); null without it. */
  inet6Prefix(): Prefix6 | null {
    return inet6PrefixOf(this.config.global, this.stateDir);
  }

  private local6Of(local: { readonly guest: string }): { host: string; guest: string } | null {
    const prefix = this.inet6Prefix();
    if (prefix === null) return null;
    const a = localAddr6(prefix, local.guest);
    return { host: a.host, guest: a.guest };
  }

  private async forwarding6(netns: string | null): Promise<void> {
    const previous = await sysctlSet('net.ipv6.conf.all.forwarding', '1', netns);
    if (previous !== '1') {
      logInfo(`enabled IPv6 forwarding${netns === null ? '' : ` in ${netns}`} for local inet6; interfaces with accept_ra 1 no longer take router advertisements (set it to 2 where the host needs them)`);
    }
  }

  private fixedLease(sw: SwitchConfig, vmId: number, index: number, mac: string, readopt: boolean): string | null {
    return this.switchDhcp.fixedLease(sw, vmId, index, mac, readopt, this.links.values());
  }

  /** After every running guest is re-adopted: the fixed leases of guests that died while vmd was down go. */
  leasesPrune(): void {
    if (this.root) this.switchDhcp.leasesPrune(this.links.values());
  }

  /** `vmctl links`: every managed link with its switch, address and counters. */
  async linksInfo(filter: (vmId: number, vm: string) => boolean): Promise<LinkInfo[]> {
    return linksInfoOf(this.view(), filter);
  }

  /** `vmctl firewall`: a VM's rules with what each decided; configured rules without counters when it is not running. */
  async firewallInfo(vmId: number, vm: VmConfig, index: number | undefined): Promise<FirewallInfo[]> {
    return firewallInfoOf(this.view(), vmId, vm, index);
  }

  private view(): NetworkView {
    return { links: this.links, switches: this.config.switches, switchDhcp: this.switchDhcp.instances, switchByName: (n) => this.switchByName(n) };
  }

  /** Orderly exit of vmd: DHCP servers stop; links, rules and bridges stay for the guests that keep running. */
  async shutdown(): Promise<void> {
    await this.switchDhcp.prune(() => false);
    for (const l of this.links.values()) await l.dhcp?.stop();
  }

  /** `vmctl reset`: with no guests left, remove every table and everything vmd created. */
  async reset(switches: boolean): Promise<void> {
    if (!this.root) return;
    if (switches) await this.switchesPrune(true);
    if (this.links.size === 0) {
      for (const o of this.db.ownedList().filter((x) => x.kind === 'netns')) {
        this.rulesets.forget(o.name);
        await nftFlush(o.name).catch(() => undefined);
      }
      this.rulesets.forget(null);
      await nftFlush(null).catch(() => undefined);
    }
  }
}
