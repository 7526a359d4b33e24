// The Prometheus text exposition (format 0.0.4) of vmd's metrics, built by a pure function from one snapshot.
// The snapshot joins what the parent knows (VMs, links, firewall counters) with what vmm reads (CPU time, disks).

import { VM_STATES, type FirewallInfo, type LinkInfo, type VmInfo } from '../share/protocol.js';

/** One guest disk's I/O counters, from QMP query-blockstats. */
export interface BlockStats {
  /** The drive's id in QEMU's argv (`disk0`, `cdrom0`). */
  readonly device: string;
  readonly readBytes: number;
  readonly writeBytes: number;
  readonly readOps: number;
  readonly writeOps: number;
}

/** What vmm reads of one running guest itself. */
export interface GuestStats {
  readonly vmId: number;
  /** CPU time of the guest's vCPU threads, in seconds; null when /proc could not tell. */
  readonly vcpuSeconds: number | null;
  /** Resident memory of its QEMU in bytes; null when unknown. */
  readonly residentBytes: number | null;
  readonly block: readonly BlockStats[];
}

/** Everything one scrape shows. */
export interface MetricsSnapshot {
  readonly vms: readonly VmInfo[];
  readonly links: readonly LinkInfo[];
  readonly firewall: readonly FirewallInfo[];
  readonly guests: readonly GuestStats[];
}

type Labels = Record<string, string | number>;

/** A label value as the text format wants it: backslash, double quote and newline escaped. */
function labelValue(v: string | number): string {
  return String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function sample(name: string, labels: Labels, value: number): string {
  const l = Object.entries(labels).map(([k, v]) => `${k}="${labelValue(v)}"`).join(',');
  return `${name}${l === '' ? '' : `{${l}}`} ${Number.isFinite(value) ? value : 'NaN'}\n`;
}

/** Accumulates metric families: each family's HELP and TYPE once, then its samples together, as the format requires. */
class Exposition {
  readonly #families = new Map<string, { help: string; type: 'gauge' | 'counter'; lines: string[] }>();

  add(name: string, type: 'gauge' | 'counter', help: string, labels: Labels, value: number): void {
    let f = this.#families.get(name);
    if (f === undefined) {
      f = { help, type, lines: [] };
      this.#families.set(name, f);
    }
    f.lines.push(sample(name, labels, value));
  }

  /** Declares a family with no samples yet, so a scrape of an idle host still names every metric. */
  declare(name: string, type: 'gauge' | 'counter', help: string): void {
    if (!this.#families.has(name)) this.#families.set(name, { help, type, lines: [] });
  }

  text(): string {
    let out = '';
    for (const [name, f] of this.#families) out += `# HELP ${name} ${f.help}\n# TYPE ${name} ${f.type}\n${f.lines.join('')}`;
    return out;
  }
}

const LINK_COUNTERS: ReadonlyArray<[keyof LinkInfo, string, string]> = [
  ['rxPackets', 'vmd_link_receive_packets_total', 'Packets the host received on the link (sent by the guest).'],
  ['rxBytes', 'vmd_link_receive_bytes_total', 'Bytes the host received on the link (sent by the guest).'],
  ['rxDropped', 'vmd_link_receive_dropped_total', 'Packets from the guest the host link dropped.'],
  ['txPackets', 'vmd_link_transmit_packets_total', 'Packets the host sent on the link (to the guest).'],
  ['txBytes', 'vmd_link_transmit_bytes_total', 'Bytes the host sent on the link (to the guest).'],
  ['txDropped', 'vmd_link_transmit_dropped_total', 'Packets to the guest the host link dropped.'],
  ['spoofDropped', 'vmd_link_spoofed_packets_total', 'Packets from the guest dropped for a source MAC or IP not its own.'],
  ['blocked', 'vmd_link_blocked_packets_total', 'Packets the interface\'s filter rules blocked.'],
];

const BLOCK_COUNTERS: ReadonlyArray<[keyof BlockStats, string, string]> = [
  ['readBytes', 'vmd_vm_block_read_bytes_total', 'Bytes the guest read from the disk.'],
  ['writeBytes', 'vmd_vm_block_write_bytes_total', 'Bytes the guest wrote to the disk.'],
  ['readOps', 'vmd_vm_block_read_ops_total', 'Read operations of the guest on the disk.'],
  ['writeOps', 'vmd_vm_block_write_ops_total', 'Write operations of the guest on the disk.'],
];

/** The exposition text of one snapshot. */
export function metricsText(s: MetricsSnapshot): string {
  const x = new Exposition();
  const names = new Map(s.vms.map((v) => [v.id, v.name]));
  x.declare('vmd_vm_state', 'gauge', 'Whether the VM is in the state (1) or not (0), as vmctl status shows it.');
  for (const v of s.vms) {
    for (const state of VM_STATES) x.add('vmd_vm_state', 'gauge', 'Whether the VM is in the state (1) or not (0), as vmctl status shows it.', { id: v.id, vm: v.name, state }, v.state === state ? 1 : 0);
  }
  x.declare('vmd_vm_vcpus', 'gauge', 'Virtual CPUs of the VM.');
  for (const v of s.vms) x.add('vmd_vm_vcpus', 'gauge', 'Virtual CPUs of the VM.', { id: v.id, vm: v.name }, v.vcpus);
  x.declare('vmd_vm_memory_max_bytes', 'gauge', 'Memory given to the guest.');
  for (const v of s.vms) x.add('vmd_vm_memory_max_bytes', 'gauge', 'Memory given to the guest.', { id: v.id, vm: v.name }, v.maxmem);
  x.declare('vmd_vm_memory_resident_bytes', 'gauge', 'Resident memory of the guest\'s QEMU process.');
  x.declare('vmd_vm_vcpu_seconds_total', 'counter', 'CPU time of the guest\'s virtual CPU threads.');
  for (const [, name, help] of BLOCK_COUNTERS) x.declare(name, 'counter', help);
  for (const g of s.guests) {
    const vm = names.get(g.vmId);
    if (vm === undefined) continue;
    const l = { id: g.vmId, vm };
    if (g.residentBytes !== null) x.add('vmd_vm_memory_resident_bytes', 'gauge', '', l, g.residentBytes);
    if (g.vcpuSeconds !== null) x.add('vmd_vm_vcpu_seconds_total', 'counter', '', l, g.vcpuSeconds);
    for (const b of g.block) for (const [key, name] of BLOCK_COUNTERS) x.add(name, 'counter', '', { ...l, device: b.device }, b[key] as number);
  }
  for (const [, name, help] of LINK_COUNTERS) x.declare(name, 'counter', help);
  for (const k of s.links) {
    const l = { id: k.vmId, vm: k.vm, if: k.index, link: k.link };
    for (const [key, name] of LINK_COUNTERS) x.add(name, 'counter', '', l, k[key] as number);
  }
  firewallSamples(x, s.firewall);
  return x.text();
}

/** The firewall's counters: per rule, and what the address locks and the VLAN guard dropped. */
function firewallSamples(x: Exposition, firewall: readonly FirewallInfo[]): void {
  x.declare('vmd_firewall_rule_packets_total', 'counter', 'Packets the filter rule decided (rule: its position in the interface block).');
  x.declare('vmd_firewall_rule_bytes_total', 'counter', 'Bytes the filter rule decided.');
  x.declare('vmd_firewall_dropped_packets_total', 'counter', 'Packets the hypervisor dropped by kind: mac and ip spoofing, vlan tags.');
  x.declare('vmd_firewall_dropped_bytes_total', 'counter', 'Bytes the hypervisor dropped by kind.');
  for (const f of firewall) {
    if (f.link === null) continue;
    const l = { id: f.vmId, vm: f.vm, if: f.index, link: f.link };
    for (const r of f.rules) {
      if (r.count === null) continue;
      const rl = { ...l, rule: r.n, action: r.action };
      x.add('vmd_firewall_rule_packets_total', 'counter', '', rl, r.count.packets);
      x.add('vmd_firewall_rule_bytes_total', 'counter', '', rl, r.count.bytes);
    }
    for (const [kind, c] of [['mac', f.macSpoof], ['ip', f.ipSpoof], ['vlan', f.vlan]] as const) {
      if (c === null) continue;
      x.add('vmd_firewall_dropped_packets_total', 'counter', '', { ...l, kind }, c.packets);
      x.add('vmd_firewall_dropped_bytes_total', 'counter', '', { ...l, kind }, c.bytes);
    }
  }
}
