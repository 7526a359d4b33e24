// DHCP on vmd's `dhcp` switches: one dnsmasq per switch, and the fixed lease of each guest NIC on it, one file per
// MAC in the directory dnsmasq watches (kept across a vmd restart, so re-adopted guests keep their addresses).

import { join } from 'node:path';
import type { SwitchConfig } from '../../share/config.js';
import { logWarn } from '../log.js';
import { DnsmasqInstance } from './dnsmasq.js';
import { hostsDirPrepare, hostsDirPrune, hostsEntryRead, hostsEntryRemove, hostsEntryWrite } from './hosts-dir.js';
import { fixedLeaseFor } from './leases.js';
import { subnetOf, type LinkState } from './plan.js';

/**
 * How many removed leases a switch's dnsmasq may go on holding before it is told to re-read (SIGHUP). A re-read
 * costs it every file: with 1,000 leases ~31 ms of its CPU and 73 KB of its log (a `read` line per file), so one
 * per guest stop would cost more than the whole-file hosts file did; one per 256 stops costs ~0.1 ms each.
 */
export const STALE_MAX = 256;

/** What a switch's dnsmasq still holds of removed lease files: MAC by address and address by MAC, and how many. */
interface Stale {
  readonly byAddress: Map<string, string>;
  readonly byMac: Map<string, string>;
  count: number;
}

/** The switches' DHCP servers by switch name, and their lease directories in `dir` (the state directory's `net`). */
export class SwitchDhcp {
  readonly instances = new Map<string, DnsmasqInstance>();
  /** Switches whose lease directory exists and holds what an older vmd's hosts file had. */
  private readonly prepared = new Set<string>();
  /** Per switch, the records of removed files its running dnsmasq has not been told to forget yet. */
  private readonly stale = new Map<string, Stale>();

  constructor(private readonly dir: string) {}

  /** Start the switch's dnsmasq unless it runs (`mtu`: a spanned switch's, told to guests), with the leases of `links` on it. */
  // PRIV: dnsmasq binds the DHCP port on the switch's bridge (it drops to nobody itself).
  async start(sw: SwitchConfig & { readonly address: string }, netns: string | null, links: Iterable<LinkState>, mtu?: number): Promise<void> {
    if (this.instances.has(sw.name)) return;
    const hostsDir = this.hostsDirOf(sw.name);
    // Links made while it was down; at daemon start there are none yet and re-adopted guests' files are there.
    for (const l of links) if (l.switch === sw.name && l.fixed) hostsEntryWrite(hostsDir, { mac: l.mac, address: l.fixed });
    const inst = await DnsmasqInstance.start({
      name: `switch-${sw.name}`, kind: 'switch', interface: sw.interface, address: sw.address, hostsDir,
      leaseFile: join(this.dir, `switch-${sw.name}.leases`), pidFile: join(this.dir, `switch-${sw.name}.pid`),
      logFile: join(this.dir, `switch-${sw.name}.log`), ...(mtu === undefined ? {} : { mtu }),
    }, { netns });
    this.instances.set(sw.name, inst);
    this.stale.delete(sw.name);
  }

  /** Stop the servers of switches `keep` refuses (all of them when it refuses all). */
  async prune(keep: (name: string) => boolean): Promise<void> {
    for (const [name, inst] of this.instances) {
      if (keep(name)) continue;
      await inst.stop();
      this.instances.delete(name);
      this.stale.delete(name);
    }
  }

  /** The fixed lease of a NIC on a `dhcp` switch (null on others); a re-adopted guest keeps the one it was given. */
  fixedLease(sw: SwitchConfig, vmId: number, index: number, mac: string, readopt: boolean, links: Iterable<LinkState>): string | null {
    if (!sw.dhcp || sw.address === null) return null;
    const taken = new Set<string>();
    for (const l of links) if (l.switch === sw.name && l.fixed && l.mac !== mac) taken.add(l.fixed);
    const had = readopt ? hostsEntryRead(this.hostsDirOf(sw.name), mac) : undefined;
    if (had !== undefined && !taken.has(had) && subnetOf(`${had}/${sw.address.split('/')[1]}`) === subnetOf(sw.address) && had !== sw.address.split('/')[0]) return had;
    return fixedLeaseFor(sw.address, vmId, index, taken);
  }

  /**
   * Hand out a link's fixed lease: a new file dnsmasq reads by itself. It must re-read (and forget old records)
   * when the file changed, or when a record it still holds of a removed file gives this address to another MAC
   * (it refuses the new one then: "duplicate dhcp-host IP address") or this MAC another address.
   */
  leaseAdd(l: LinkState): void {
    if (!l.fixed || l.switch === null) return;
    const change = hostsEntryWrite(this.hostsDirOf(l.switch), { mac: l.mac, address: l.fixed });
    const mac = l.mac.toLowerCase();
    const s = this.stale.get(l.switch);
    const clash = s !== undefined && ((s.byAddress.get(l.fixed) ?? mac) !== mac || (s.byMac.get(mac) ?? l.fixed) !== l.fixed);
    if (change === 'changed' || clash) this.reload(l.switch);
  }

  /**
   * A link (no longer in `links`) gave up its fixed lease: its file goes. dnsmasq keeps the record until it
   * re-reads, which is harmless (the guest is gone) until leaseAdd gives the address or MAC anew, or STALE_MAX
   * of them pile up. Another link on the switch with the same MAC (a copied lladdr) keeps its own lease.
   */
  leaseDrop(l: LinkState, links: Iterable<LinkState>): void {
    if (!l.fixed || l.switch === null) return;
    const mac = l.mac.toLowerCase();
    for (const o of links) if (o.switch === l.switch && o.fixed && o.mac.toLowerCase() === mac) return this.leaseAdd(o);
    if (!hostsEntryRemove(this.hostsDirOf(l.switch), mac) || !this.instances.has(l.switch)) return;
    const s = this.stale.get(l.switch) ?? { byAddress: new Map(), byMac: new Map(), count: 0 };
    this.stale.set(l.switch, s);
    s.byAddress.set(l.fixed, mac);
    s.byMac.set(mac, l.fixed);
    if (++s.count >= STALE_MAX) this.reload(l.switch);
  }

  /** After re-adoption at daemon start: the leases of guests that died while vmd was down go. */
  leasesPrune(links: Iterable<LinkState>): void {
    const keep = new Map<string, Set<string>>();
    for (const l of links) if (l.switch !== null && l.fixed) keep.set(l.switch, (keep.get(l.switch) ?? new Set()).add(l.mac));
    for (const name of this.instances.keys()) {
      try {
        if (hostsDirPrune(this.hostsDirOf(name), keep.get(name) ?? new Set()) > 0) this.reload(name);
      } catch (err) {
        logWarn(`switch "${name}": dhcp hosts: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  }

  /** dnsmasq forgets every record and reads the directory again (SIGHUP): nothing stale is left. */
  private reload(switchName: string): void {
    this.stale.delete(switchName);
    this.instances.get(switchName)?.reload();
  }

  private hostsDirOf(switchName: string): string {
    const dir = join(this.dir, `switch-${switchName}.hosts.d`);
    if (!this.prepared.has(switchName)) {
      hostsDirPrepare(dir, join(this.dir, `switch-${switchName}.hosts`));
      this.prepared.add(switchName);
    }
    return dir;
  }
}
