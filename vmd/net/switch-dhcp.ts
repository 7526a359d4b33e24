// DHCP on vmd's `dhcp` switches: one dnsmasq per switch, and the fixed lease of each guest NIC on it, written to
// the hosts file that dnsmasq re-reads (kept across a vmd restart, so re-adopted guests keep their addresses).

import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SwitchConfig } from '../../share/config.js';
import { DnsmasqInstance } from './dnsmasq.js';
import { fixedLeaseFor, hostsFileText, readHostsFile } from './leases.js';
import { subnetOf, type LinkState } from './plan.js';

/** The switches' DHCP servers by switch name, and their hosts files in `dir` (the state directory's `net`). */
export class SwitchDhcp {
  readonly instances = new Map<string, DnsmasqInstance>();

  constructor(private readonly dir: string) {}

  /** Start the switch's dnsmasq unless it runs (`mtu`: a spanned switch's, told to guests); hosts file first if none yet. */
  // PRIV: dnsmasq binds the DHCP port on the switch's bridge (it drops to nobody itself).
  async start(sw: SwitchConfig & { readonly address: string }, netns: string | null, links: Iterable<LinkState>, mtu?: number): Promise<void> {
    if (this.instances.has(sw.name)) return;
    const hostsFile = this.hostsFileOf(sw.name);
    if (readHostsFile(hostsFile).size === 0) this.hostsWrite(sw.name, links);
    const inst = await DnsmasqInstance.start({
      name: `switch-${sw.name}`, kind: 'switch', interface: sw.interface, address: sw.address, hostsFile,
      leaseFile: join(this.dir, `switch-${sw.name}.leases`), pidFile: join(this.dir, `switch-${sw.name}.pid`),
      logFile: join(this.dir, `switch-${sw.name}.log`), ...(mtu === undefined ? {} : { mtu }),
    }, { netns });
    this.instances.set(sw.name, inst);
  }

  /** Stop the servers of switches `keep` refuses (all of them when it refuses all). */
  async prune(keep: (name: string) => boolean): Promise<void> {
    for (const [name, inst] of this.instances) {
      if (keep(name)) continue;
      await inst.stop();
      this.instances.delete(name);
    }
  }

  /** The fixed lease of a NIC on a `dhcp` switch (null on others); a re-adopted guest keeps the one it was given. */
  fixedLease(sw: SwitchConfig, vmId: number, index: number, mac: string, readopt: boolean, links: Iterable<LinkState>): string | null {
    if (!sw.dhcp || sw.address === null) return null;
    const taken = new Set<string>();
    for (const l of links) if (l.switch === sw.name && l.fixed && l.mac !== mac) taken.add(l.fixed);
    const had = readopt ? readHostsFile(this.hostsFileOf(sw.name)).get(mac.toLowerCase()) : undefined;
    if (had !== undefined && !taken.has(had) && subnetOf(`${had}/${sw.address.split('/')[1]}`) === subnetOf(sw.address) && had !== sw.address.split('/')[0]) return had;
    return fixedLeaseFor(sw.address, vmId, index, taken);
  }

  /** Rewrite a switch's dnsmasq hosts file from the links on it and make dnsmasq re-read it. */
  hostsWrite(switchName: string, links: Iterable<LinkState>): void {
    const hosts = [...links]
      .filter((l) => l.switch === switchName && l.fixed)
      .sort((a, b) => a.vmId - b.vmId || a.index - b.index)
      .map((l) => ({ mac: l.mac, address: l.fixed! }));
    const file = this.hostsFileOf(switchName);
    // dnsmasq re-reads it as nobody after SIGHUP: world-readable, replaced whole so it never sees half a file.
    writeFileSync(`${file}.tmp`, hostsFileText(hosts), { mode: 0o644 });
    renameSync(`${file}.tmp`, file);
    this.instances.get(switchName)?.reload();
  }

  private hostsFileOf(switchName: string): string {
    return join(this.dir, `switch-${switchName}.hosts`);
  }
}
