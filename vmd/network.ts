// The parent's networking: switches (bridges), managed links (taps), local interfaces with DHCP and NAT,
// port forwards and routing domains (network namespaces), kept in step with the running guests.

import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { DEFAULT_STATE_DIR, nftIncludeDir } from '../share/paths.js';
import { join } from 'node:path';
import { execa } from 'execa';
import type { Config, FilterRule, InterfaceConfig, PortForward, Prefix6, SwitchConfig, VmConfig } from '../share/config.js';
import { VmdError } from '../share/errors.js';
import type { Count, FirewallInfo, LinkInfo } from '../share/protocol.js';
import type { StateDb } from './db.js';
import { logInfo, logWarn } from './log.js';
import { formatIPv4, formatIPv6, linkAlias, linkName, localAddr4, localAddr6, maskOf, parseIPv4, parseIPv6, rdomainNetns, stableMac } from './net/addr.js';
import { DnsmasqInstance, fixedLeaseFor, hostsFileText, readHostsFile, readLeases } from './net/dnsmasq.js';
import { bridgeEnsure, bridgeRemove, linkConfigure, linkStats, netnsEnsure, netnsExists, netnsRemove, tapCreate, vxlanEnsure } from './net/links.js';
import { linkComment, ruleComment, type CounterSeed } from './net/firewall.js';
import { foreignForwardDrop, forwardConflict, localnetInterfaces, nftApply, nftCounters, nftFlush, nftIncludeProblem, nftScript, sysctlSet, type NetPlan } from './net/nft.js';

/** A NIC as QEMU gets it: a tap on a host fd (the parent maps it to QEMU's number), or user-mode networking. */
export type NicPlan =
  | { readonly kind: 'tap'; readonly hostFd: number; readonly mac: string }
  | { readonly kind: 'user'; readonly mac: string; readonly forwards: readonly PortForward[] };

interface LinkState {
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
}

/**
 * The only source IPv4 a guest may use on a link: its local address, or, with `locked lladdr`, the fixed lease
 * vmd gave it on a `dhcp` switch; null when not locked.
 */
function lockedIpOf(l: Pick<LinkState, 'local' | 'lockMac' | 'fixed'>): string | null {
  return l.local?.guest ?? (l.lockMac && l.fixed ? l.fixed : null);
}

/** Rules compared as what they do, not where they were written. */
function sameRules(a: readonly FilterRule[], b: readonly FilterRule[]): boolean {
  const key = (rules: readonly FilterRule[]): string => JSON.stringify(rules.map(({ location: _l, ...r }) => r));
  return key(a) === key(b);
}

const sum = (counts: ReadonlyArray<Count | undefined>): Count =>
  counts.reduce<Count>((acc, c) => ({ packets: acc.packets + (c?.packets ?? 0), bytes: acc.bytes + (c?.bytes ?? 0) }), { packets: 0, bytes: 0 });

/**
 * The namespace of rdomain N: `vmd-rdomainN` for the system's vmd; a vmd with its own state directory (tests,
 * a second daemon) gets a suffix from that directory, since namespace names are global to the host.
 */
export function rdomainNetnsFor(n: number, stateDir: string): string {
  if (stateDir === DEFAULT_STATE_DIR) return rdomainNetns(n);
  return `${rdomainNetns(n)}-${createHash('sha256').update(stateDir).digest('hex').slice(0, 8)}`;
}

/** A stable MAC for a bridge vmd creates, so its address does not follow whichever port is lowest. */
function bridgeMac(name: string): string {
  let h = 2166136261;
  for (const c of Buffer.from(name)) h = Math.imul(h ^ c, 16777619) >>> 0;
  return ['fe', 'e1', 'ba', (h >>> 16) & 0xff, (h >>> 8) & 0xff, h & 0xff]
    .map((b) => (typeof b === 'string' ? b : b.toString(16).padStart(2, '0'))).join(':');
}

/** The network of a CIDR written with host bits (`10.1.0.1/24` → `10.1.0.0/24`). */
function subnetOf(cidr: string): string {
  const [addr, len] = cidr.split('/') as [string, string];
  return `${formatIPv4((parseIPv4(addr) & maskOf(Number(len))) >>> 0)}/${len}`;
}

/** Owns every host network object vmd makes; the parent calls it around each guest start and stop. */
export class Network {
  private readonly links = new Map<string, LinkState>();
  private readonly switchDhcp = new Map<string, DnsmasqInstance>();
  private warnedForward = false;
  /** Per namespace: whether the last ruleset applied there had counters worth carrying over a replace. */
  private readonly hadCounters = new Map<string | null, boolean>();
  /** Comment prefixes whose counters start again from zero at the next replace (new run, new rules). */
  private readonly counterResets = new Set<string>();
  /** The last include problem warned about, per namespace, so a broken user file is logged once, not at every change. */
  private readonly includeWarned = new Map<string | null, string>();

  constructor(
    private config: Config,
    private readonly db: StateDb,
    private readonly stateDir: string,
    private readonly root: boolean,
  ) {
    mkdirSync(join(stateDir, 'net'), { recursive: true, mode: 0o755 });
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
        const { created } = await bridgeEnsure({ name: sw.interface, netns, mac: bridgeMac(sw.interface), up: sw.up, address: sw.address, ...(sw.vxlan ? { mtu: 1450 } : {}) });
        if (created) this.db.ownedAdd({ kind: 'bridge', name: sw.interface, netns });
        if (sw.vxlan !== null) {
          const name = `vx${sw.vxlan.id}`.slice(0, 15);
          await vxlanEnsure({ name, bridge: sw.interface, id: sw.vxlan.id, remote: sw.vxlan.remote, local: sw.vxlan.local, dev: sw.vxlan.dev, port: sw.vxlan.port, netns });
          this.db.ownedAdd({ kind: 'vxlan', name, netns });
        }
        if (sw.dhcp && sw.address !== null && !this.switchDhcp.has(sw.name)) {
          const dir = join(this.stateDir, 'net');
          // Kept across a vmd restart: re-adopted guests keep their fixed leases (vmReadopt rewrites it).
          const hostsFile = this.hostsFileOf(sw.name);
          if (readHostsFile(hostsFile).size === 0) this.hostsWrite(sw.name);
          const inst = await DnsmasqInstance.start({
            name: `switch-${sw.name}`, kind: 'switch', interface: sw.interface, address: sw.address, hostsFile,
            leaseFile: join(dir, `switch-${sw.name}.leases`), pidFile: join(dir, `switch-${sw.name}.pid`),
            logFile: join(dir, `switch-${sw.name}.log`), ...(sw.vxlan ? { mtu: 1450 } : {}),
          }, { netns });
          this.switchDhcp.set(sw.name, inst);
        }
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
    for (const [name, inst] of this.switchDhcp) {
      if (all || !this.switchByName(name)) {
        await inst.stop();
        this.switchDhcp.delete(name);
      }
    }
    for (const o of this.db.ownedList()) {
      if (o.kind === 'netns') continue;
      const sw = this.config.switches.find((s) => s.enabled && (s.interface === o.name || `vx${s.vxlan?.id}` === o.name));
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
      if (r.removed || !(await netnsExists(o.name))) this.db.ownedRemove(o);
      else logWarn(`namespace ${o.name}: kept, still used by ${r.users.join(', ')}`);
    }
  }

  private async forwarding(netns: string | null): Promise<void> {
    const previous = await sysctlSet('net.ipv4.ip_forward', '1', netns);
    if (previous !== '1') logInfo(`enabled IPv4 forwarding${netns === null ? '' : ` in ${netns}`} for vmd's switches and local interfaces`);
  }

  /**
   * Stateful filtering of bridged links needs conntrack to see bridged IPv4/IPv6: br_netfilter, with its
   * call-iptables switches on in the namespace. Said in the log when vmd turns them on.
   */
  private async bridgeNetfilter(netns: string | null): Promise<void> {
    if (!existsSync('/proc/sys/net/bridge')) {
      await execa('modprobe', ['br_netfilter'], { reject: false });
    }
    for (const key of ['net.bridge.bridge-nf-call-iptables', 'net.bridge.bridge-nf-call-ip6tables']) {
      const previous = await sysctlSet(key, '1', netns);
      if (previous !== '1') logInfo(`enabled ${key}${netns === null ? '' : ` in ${netns}`}: bridged guests have filter rules`);
    }
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
        if (!this.root) {
          if (nic.switch !== null || nic.local) {
            throw new VmdError('ERR_UNSUPPORTED', `vm "${vm.name}": interface ${nic.index}: ${nic.local ? 'local interfaces' : `switch "${nic.switch}"`} need vmd to run as root`, {
              hint: 'run vmd as root, or drop the switch/local option to use user-mode NAT',
            });
          }
          nics.push({ kind: 'user', mac, forwards: nic.forwards });
          continue;
        }
        if (nic.switch !== null && sw === undefined) {
          throw new VmdError('ERR_INVALID', `vm "${vm.name}": interface ${nic.index}: switch "${nic.switch}" not found`);
        }
        if (sw === undefined && !nic.local) {
          // Neither a switch nor local: OpenBSD gives such a tap no connectivity; user-mode NAT is more useful here.
          nics.push({ kind: 'user', mac, forwards: nic.forwards });
          continue;
        }
        const netns = this.nsOf(sw, nic);
        if (netns !== null && await netnsEnsure(netns)) this.db.ownedAdd({ kind: 'netns', name: netns, netns: null });
        const name = linkName(vmId, nic.index);
        const local = nic.local ? localAddr4(this.config.global.localPrefix, vmId, nic.index) : null;
        const local6 = local === null ? null : this.local6Of(local);
        if (sw !== undefined && !nic.local && nic.forwards.length > 0) this.forwardSwitchCheck(vm.name, nic, sw);
        const conflict = forwardConflict(
          [...this.links.values()].filter((l) => l.vmId !== vmId).flatMap((l) => l.forwards.map((f) => ({ ...f, guest: '', via: l.name, vm: l.vm }))),
          nic.forwards.map((f) => ({ ...f, guest: '', via: name, vm: vm.name })),
        );
        if (conflict !== null) throw new VmdError('ERR_INVALID', `vm "${vm.name}": ${conflict}`);
        const fixed = sw !== undefined && !nic.local ? this.fixedLease(sw, vmId, nic.index, mac, false) : null;
        const tap = tapCreate(name, { vnetHdr: true, netns });
        fds.push(tap.fd);
        made.push(name);
        await linkConfigure({
          name, netns, alias: linkAlias(vmId, nic.index, vm.name), master: sw?.interface ?? null, up: nic.up,
          address: local === null ? null : [`${local.host}/31`, ...(local6 === null ? [] : [`${local6.host}/96`])],
        });
        const state: LinkState = {
          vmId, vm: vm.name, index: nic.index, name, netns, mac, switch: sw?.name ?? null, bridge: sw?.interface ?? null,
          local: local === null ? null : { host: local.host, guest: local.guest },
          lockMac: nic.locked || (sw?.locked ?? false), forwards: nic.forwards,
          groups: [nic.group, sw?.group].filter((g): g is string => g !== null && g !== undefined), rules: nic.rules, dhcp: null, fixed, local6,
        };
        this.links.set(name, state);
        this.counterResets.add(linkComment(state, ''));
        if (fixed !== null) this.hostsWrite(sw!.name);
        if (local !== null) {
          await this.forwarding(netns);
          if (local6 !== null) await this.forwarding6(netns);
          const dir = join(this.stateDir, 'net');
          state.dhcp = await DnsmasqInstance.start({
            name, kind: 'local', interface: name, address: `${local.host}/31`, guest: local.guest, mac, ...(local6 === null ? {} : { inet6: local6 }),
            leaseFile: join(dir, `${name}.leases`), pidFile: join(dir, `${name}.pid`), logFile: join(dir, `${name}.log`),
          }, { netns });
        }
        nics.push({ kind: 'tap', hostFd: tap.fd, mac });
      }
      // Only new links change the rules: a guest with no NIC or only user-mode NICs costs no nft run.
      if (made.length > 0) await this.sync(new Set(made.map((n) => this.links.get(n)!.netns)));
      return { nics, fds };
    } catch (err) {
      // Nothing half-made stays: dnsmasq instances stop, taps vanish when their fds close.
      for (const name of made) {
        await this.links.get(name)?.dhcp?.stop();
        const sw = this.links.get(name)?.switch;
        this.links.delete(name);
        if (sw !== null && sw !== undefined) this.hostsWrite(sw);
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
      this.counterResets.add(linkComment(l, ''));
      if (l.fixed) this.hostsWrite(l.switch!);
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
      if (sw === undefined && !nic.local) continue;
      const netns = this.nsOf(sw, nic);
      const name = linkName(vmId, nic.index);
      const local = nic.local ? localAddr4(this.config.global.localPrefix, vmId, nic.index) : null;
      const mac = nic.lladdr ?? stableMac(vmId, vm.name, nic.index);
      const local6 = local === null ? null : this.local6Of(local);
      const state: LinkState = {
        vmId, vm: vm.name, index: nic.index, name, netns, mac, switch: sw?.name ?? null, bridge: sw?.interface ?? null,
        local, lockMac: nic.locked || (sw?.locked ?? false), forwards: nic.forwards,
        groups: [nic.group, sw?.group].filter((g): g is string => g !== null && g !== undefined), rules: nic.rules, dhcp: null,
        fixed: sw === undefined || nic.local ? null : this.fixedLease(sw, vmId, nic.index, mac, true), local6,
      };
      this.links.set(name, state);
      if (state.fixed) this.hostsWrite(sw!.name);
      if (local !== null) {
        const dir = join(this.stateDir, 'net');
        await DnsmasqInstance.killStale(join(dir, `${name}.pid`));
        state.dhcp = await DnsmasqInstance.start({
          name, kind: 'local', interface: name, address: `${local.host}/31`, guest: local.guest, mac, ...(local6 === null ? {} : { inet6: local6 }),
          leaseFile: join(dir, `${name}.leases`), pidFile: join(dir, `${name}.pid`), logFile: join(dir, `${name}.log`),
        }, { netns }).catch((err: unknown) => {
          logWarn(`link ${name}: dhcp: ${err instanceof Error ? err.message : String(err)}`);
          return null;
        });
      }
    }
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
      this.counterResets.add(linkComment(l, 'rule '));
      this.counterResets.add(linkComment(l, 'vlan'));
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

  /** Recompute and atomically apply vmd's nftables tables in every namespace that has (or had) something. */
  // PRIV: loads nftables rulesets into vmd's own tables.
  /**
   * A failure in a namespace is logged and the others still get their rules; with `strict`, a failure in one of
   * those namespaces is thrown once all are done, so a guest never runs without the locks and rules it asked for.
   */
  async sync(strict: ReadonlySet<string | null> = new Set()): Promise<void> {
    if (!this.root) return;
    let failure: unknown = null;
    const spaces = new Set<string | null>([null]);
    for (const l of this.links.values()) spaces.add(l.netns);
    for (const s of this.config.switches) if (s.enabled) spaces.add(this.nsOf(s, null));
    for (const o of this.db.ownedList()) if (o.kind === 'netns') spaces.add(o.name);
    for (const ns of spaces) {
      const plan = this.planFor(ns);
      try {
        // Forwards from 127.0.0.1 need the guest-side interface to accept loopback sources (HOST-FACTS §4).
        for (const ifname of localnetInterfaces(plan)) await sysctlSet(`net.ipv4.conf.${ifname}.route_localnet`, '1', ns);
        if (plan.links.some((l) => l.bridge !== null && (l.rules?.length ?? 0) > 0)) await this.bridgeNetfilter(ns);
        // A replace would reset every counter: carry them over, except those of new runs and new rules.
        let seed: CounterSeed | undefined;
        if (this.hadCounters.get(ns) !== false) {
          seed = await nftCounters(ns).catch(() => undefined);
          for (const key of seed?.keys() ?? []) if ([...this.counterResets].some((p) => key.startsWith(p))) seed!.delete(key);
        }
        await nftApply(nftScript(await this.withInclude(plan, ns), seed), ns);
        this.hadCounters.set(ns, plan.links.some((l) => l.lockMac || l.lockIp !== null || (l.rules?.length ?? 0) > 0) || plan.forwards.length > 0);
      } catch (err) {
        logWarn(`nftables${ns === null ? '' : ` in ${ns}`}: ${err instanceof Error ? err.message : String(err)}`);
        if (strict.has(ns) && failure === null) failure = err;
      }
    }
    this.counterResets.clear();
    if (failure !== null) throw failure;
    if (!this.warnedForward) {
      const w = await foreignForwardDrop(null).catch(() => null);
      if (w !== null) {
        logWarn(w);
        this.warnedForward = true;
      }
    }
  }

  /**
   * The plan with the user's own files (`*.nft` in /etc/vmd/nft.d or VMD_NFT_DIR) included into `table inet vmd`,
   * where their chains can match vmd's `@group_NAME` sets. Checked first with `nft -c`: a broken file is named in a
   * warning and vmd's own rules are loaded without the include, so a user's typo never costs the guests their NAT.
   */
  private async withInclude(plan: NetPlan, ns: string | null): Promise<NetPlan> {
    const dir = nftIncludeDir();
    let files: string[];
    try {
      files = readdirSync(dir).filter((f) => f.endsWith('.nft'));
    } catch {
      files = [];
    }
    if (files.length === 0) return plan;
    const groups = new Set<string>();
    for (const s of this.config.switches) if (s.enabled && s.group !== null) groups.add(s.group);
    for (const vm of this.config.vms) for (const nic of vm.interfaces) if (nic.group !== null) groups.add(nic.group);
    const full: NetPlan = { ...plan, include: join(dir, '*.nft'), groups: [...groups] };
    const check = (p: NetPlan) => nftIncludeProblem(nftScript(p), ns).catch((err: unknown) => (err instanceof Error ? err.message : String(err)));
    let problem = await check(full);
    if (problem === null) {
      this.includeWarned.delete(ns);
      return full;
    }
    if (!problem.startsWith(`${dir}/`)) {
      // nft blamed vmd's script (an unclosed brace in a file swallows the table's own): find the file by itself.
      const bad: string[] = [];
      for (const f of files.sort()) {
        const one = await check({ ...full, include: join(dir, f) });
        if (one !== null) bad.push(one.startsWith(`${join(dir, f)}:`) ? one : `${join(dir, f)}: breaks vmd's table, an unclosed block? (nft: ${one})`);
      }
      if (bad.length > 0) problem = bad.join('; ');
    }
    if (this.includeWarned.get(ns) !== problem) {
      logWarn(`nftables${ns === null ? '' : ` in ${ns}`}: ${problem}; vmd's rules are loaded without ${join(dir, '*.nft')} until it is fixed`);
      this.includeWarned.set(ns, problem);
    }
    return plan;
  }

  /** The firewall's forward policy warning, for `vmctl status`. */
  async warnings(): Promise<string[]> {
    if (!this.root || (this.links.size === 0 && !this.config.switches.some((s) => s.enabled))) return [];
    const w = await foreignForwardDrop(null).catch(() => null);
    return w === null ? [] : [w];
  }

  /** What nftScript gets for one namespace (public for the unit tests). */
  planFor(ns: string | null): NetPlan {
    const links = [...this.links.values()].filter((l) => l.netns === ns);
    const switches = this.config.switches.filter((s) => s.enabled && this.nsOf(s, null) === ns);
    return {
      switches: switches.map((s) => ({ name: s.name, bridge: s.interface, subnet: s.address === null ? null : subnetOf(s.address), nat: s.nat, group: s.group })),
      links: links.map((l) => ({
        name: l.name, vmId: l.vmId, vm: l.vm, index: l.index, bridge: l.bridge, mac: l.mac, lockMac: l.lockMac || l.local !== null,
        lockIp: lockedIpOf(l), local: l.local, groups: l.groups, rules: l.rules, lockIp6: l.local6?.guest ?? null,
      })),
      forwards: links.flatMap((l) => {
        // A local link's guest is reached through its tap; a guest on a nat switch at its fixed lease, through the bridge.
        const nat = l.local === null && l.fixed && l.bridge !== null && this.switchByName(l.switch ?? '')?.nat === true;
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

  /** The host link of a running guest's NIC and the namespace it lives in; null when the NIC has none (user-mode NAT). */
  linkOf(vmId: number, index: number): { readonly name: string; readonly netns: string | null } | null {
    for (const l of this.links.values()) if (l.vmId === vmId && l.index === index) return { name: l.name, netns: l.netns };
    return null;
  }

  /**
   * The IPv6 prefix of `local inet6`: the configured one, or a random ULA (fd00::/8, bytes 1–7 random, as OpenBSD
   * picks it) made once and kept in the state directory, so guests keep their addresses across vmd restarts.
   */
  inet6Prefix(): Prefix6 | null {
    const g = this.config.global;
    if (!g.localInet6) return null;
    if (g.localInet6Prefix !== null) return g.localInet6Prefix;
    const file = join(this.stateDir, 'net', 'inet6-prefix');
    try {
      const [address, len] = readFileSync(file, 'utf8').trim().split('/');
      parseIPv6(address ?? '');
      if (Number(len) === 64) return { address: address!, length: 64 };
    } catch {
      // Missing or unreadable: make one.
    }
    const b = new Uint8Array(16);
    b[0] = 0xfd;
    b.set(randomBytes(7), 1);
    const prefix = { address: formatIPv6(b), length: 64 };
    writeFileSync(file, `${prefix.address}/64\n`, { mode: 0o644 });
    logInfo(`local inet6: chose the prefix ${prefix.address}/64 (kept in ${file})`);
    return prefix;
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

  /** A forward on a switch needs a guest address vmd knows and a way out: the switch's address, dhcp and nat. */
  private forwardSwitchCheck(vm: string, nic: InterfaceConfig, sw: SwitchConfig): void {
    const missing = [sw.address === null ? 'address' : null, sw.dhcp ? null : 'dhcp', sw.nat ? null : 'nat'].filter((m) => m !== null);
    if (missing.length === 0) return;
    const f = nic.forwards[0]!;
    throw new VmdError('ERR_INVALID', `vm "${vm}": interface ${nic.index}: forward ${f.proto} ${f.hostPort}: switch "${sw.name}" has no ${missing.join(' and no ')}`, {
      hint: `forwards need a switch with address, dhcp and nat, or a local interface`,
    });
  }

  /** The fixed lease of a NIC on a `dhcp` switch (null on others); a re-adopted guest keeps the one it was given. */
  private fixedLease(sw: SwitchConfig, vmId: number, index: number, mac: string, readopt: boolean): string | null {
    if (!sw.dhcp || sw.address === null) return null;
    const taken = new Set<string>();
    for (const l of this.links.values()) if (l.switch === sw.name && l.fixed && l.mac !== mac) taken.add(l.fixed);
    const had = readopt ? readHostsFile(this.hostsFileOf(sw.name)).get(mac.toLowerCase()) : undefined;
    if (had !== undefined && !taken.has(had) && subnetOf(`${had}/${sw.address.split('/')[1]}`) === subnetOf(sw.address) && had !== sw.address.split('/')[0]) return had;
    return fixedLeaseFor(sw.address, vmId, index, taken);
  }

  private hostsFileOf(switchName: string): string {
    return join(this.stateDir, 'net', `switch-${switchName}.hosts`);
  }

  /** Rewrite a switch's dnsmasq hosts file from the links on it and make dnsmasq re-read it. */
  private hostsWrite(switchName: string): void {
    const hosts = [...this.links.values()]
      .filter((l) => l.switch === switchName && l.fixed)
      .sort((a, b) => a.vmId - b.vmId || a.index - b.index)
      .map((l) => ({ mac: l.mac, address: l.fixed! }));
    const file = this.hostsFileOf(switchName);
    // dnsmasq re-reads it as nobody after SIGHUP: world-readable, replaced whole so it never sees half a file.
    writeFileSync(`${file}.tmp`, hostsFileText(hosts), { mode: 0o644 });
    renameSync(`${file}.tmp`, file);
    this.switchDhcp.get(switchName)?.reload();
  }

  /** `vmctl links`: every managed link with its switch, address and counters. */
  async linksInfo(filter: (vmId: number, vm: string) => boolean): Promise<LinkInfo[]> {
    const out: LinkInfo[] = [];
    const stats = new Map<string | null, Awaited<ReturnType<typeof linkStats>>>();
    const leases = new Map<string, string>();
    for (const s of this.config.switches) {
      const inst = this.switchDhcp.get(s.name);
      if (inst === undefined) continue;
      const prefix = s.address?.split('/')[1] ?? '24';
      for (const l of readLeases(inst.leaseFile)) leases.set(l.mac, `${l.address}/${prefix}`);
    }
    const counters = new Map<string | null, Map<string, Count>>();
    for (const l of [...this.links.values()].sort((a, b) => a.vmId - b.vmId || a.index - b.index)) {
      if (!filter(l.vmId, l.vm)) continue;
      if (!stats.has(l.netns)) stats.set(l.netns, await linkStats(l.netns).catch(() => new Map()));
      if (!counters.has(l.netns)) counters.set(l.netns, await nftCounters(l.netns).catch(() => new Map()));
      const st = stats.get(l.netns)!.get(l.name);
      const fw = this.linkCounts(l, counters.get(l.netns)!);
      out.push({
        vmId: l.vmId, vm: l.vm, index: l.index, link: l.name, lladdr: l.mac, switch: l.switch, local: l.local !== null,
        address: l.local !== null ? `${l.local.guest}/31` : leases.get(l.mac) ?? null,
        rxPackets: st?.rxPackets ?? 0, rxBytes: st?.rxBytes ?? 0, rxDropped: st?.rxDropped ?? 0,
        txPackets: st?.txPackets ?? 0, txBytes: st?.txBytes ?? 0, txDropped: st?.txDropped ?? 0,
        spoofDropped: fw.macSpoof.packets + fw.ipSpoof.packets,
        blocked: fw.vlan.packets + fw.rules.reduce((n, r, i) => n + (l.rules[i]!.action === 'block' ? r.packets : 0), 0),
      });
    }
    return out;
  }

  /** A link's counters by what they count, from nftCounters of its namespace. */
  private linkCounts(l: LinkState, counters: ReadonlyMap<string, Count>): { macSpoof: Count; ipSpoof: Count; vlan: Count; rules: Count[] } {
    const get = (what: string): Count => sum([counters.get(linkComment(l, what))]);
    return { macSpoof: get('mac-spoof'), ipSpoof: get('ip-spoof'), vlan: get('vlan'), rules: l.rules.map((_r, i) => sum([counters.get(ruleComment(l, i))])) };
  }

  /**
   * `vmctl firewall`: the rules of a VM's interfaces as written, each with what it decided, and the spoofing
   * drops. A VM that is not running shows its configured rules without counters.
   */
  async firewallInfo(vmId: number, vm: VmConfig, index: number | undefined): Promise<FirewallInfo[]> {
    const out: FirewallInfo[] = [];
    const counters = new Map<string | null, Map<string, Count>>();
    for (const nic of vm.interfaces) {
      if (index !== undefined && nic.index !== index) continue;
      const l = this.links.get(linkName(vmId, nic.index));
      const live = l !== undefined && l.vmId === vmId ? l : null;
      const rules = live?.rules ?? nic.rules;
      let c: ReturnType<Network['linkCounts']> | null = null;
      if (live !== null) {
        if (!counters.has(live.netns)) counters.set(live.netns, await nftCounters(live.netns).catch(() => new Map()));
        c = this.linkCounts(live, counters.get(live.netns)!);
      }
      const lockedLladdr = live !== null ? live.lockMac || live.local !== null : nic.locked || nic.local || (nic.switch !== null && (this.switchByName(nic.switch)?.locked ?? false));
      out.push({
        vmId, vm: vm.name, index: nic.index, link: live?.name ?? null, switch: live?.switch ?? nic.switch, local: nic.local,
        lockedLladdr, lockedIp: live === null ? null : lockedIpOf(live),
        rules: rules.map((r, i) => ({ n: i + 1, text: r.text, action: r.action, source: `${r.location.file}:${r.location.line}`, count: c === null ? null : c.rules[i]! })),
        macSpoof: c === null || !lockedLladdr ? null : c.macSpoof,
        ipSpoof: c === null || live === null || lockedIpOf(live) === null ? null : c.ipSpoof,
        vlan: c === null || rules.length === 0 || live?.bridge === null ? null : c.vlan,
      });
    }
    return out;
  }

  /** Orderly exit of vmd: DHCP servers stop; links, rules and bridges stay for the guests that keep running. */
  async shutdown(): Promise<void> {
    for (const inst of this.switchDhcp.values()) await inst.stop();
    for (const l of this.links.values()) await l.dhcp?.stop();
  }

  /** `vmctl reset`: with no guests left, remove every table and everything vmd created. */
  async reset(switches: boolean): Promise<void> {
    if (!this.root) return;
    if (switches) await this.switchesPrune(true);
    if (this.links.size === 0) {
      for (const o of this.db.ownedList().filter((x) => x.kind === 'netns')) await nftFlush(o.name).catch(() => undefined);
      await nftFlush(null).catch(() => undefined);
    }
  }
}
