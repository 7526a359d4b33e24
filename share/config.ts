// The configuration model: what a parsed and checked vm.conf means, as plain readonly data.
// Produced by grammar/ (parse + check passes), consumed by the daemon and the QEMU argv builder; JSON-safe.

/** Where a config element was written; every model object carries one so later errors can name it. */
export interface SourceLocation {
  readonly file: string;
  readonly line: number;
}

export type Accel = 'auto' | 'kvm' | 'tcg';
export type DiskFormat = 'raw' | 'qcow2';
export type BootDevice = 'cdrom' | 'disk' | 'net';
/** `disk … bus B`: how the guest sees a disk; virtio when not given. */
export type DiskBus = 'virtio' | 'scsi' | 'sata' | 'ide' | 'nvme';
/** `machine M`: the QEMU machine type; q35 when not given. */
export type Machine = 'q35' | 'pc' | 'microvm';

/** Every machine type; q35 is the default. */
export const MACHINES: readonly Machine[] = ['q35', 'pc', 'microvm'];

/** Every disk bus; virtio is the default. */
export const DISK_BUSES: readonly DiskBus[] = ['virtio', 'scsi', 'sata', 'ide', 'nvme'];

/** The buses each machine has: ide only where the chipset has it (pc), microvm only virtio-mmio ones (vmd/qemu-disks.ts). */
export const MACHINE_BUSES: Readonly<Record<Machine, readonly DiskBus[]>> = {
  q35: ['virtio', 'scsi', 'sata', 'nvme'],
  pc: ['virtio', 'scsi', 'sata', 'ide', 'nvme'],
  microvm: ['virtio', 'scsi'],
};
/** `firmware bios|uefi`: SeaBIOS, or OVMF with a per-VM variable store. */
export type FirmwareKind = 'bios' | 'uefi';

/** `display vnc|none`: a VGA device whose screen vmd exports as VNC on a per-VM unix socket, or no display. */
export type DisplayKind = 'vnc' | 'none';
export const DISPLAY_KINDS: readonly DisplayKind[] = ['vnc', 'none'];

/** `cloud-init { … }`: what vmd writes into the guest's NoCloud seed (share/cloud-init.ts). */
export interface CloudInitConfig {
  /** null = the VM's name. */
  readonly hostname: string | null;
  /** The default user cloud-init creates (sudo, no password), with the keys; null = the image's default user. */
  readonly user: string | null;
  readonly sshKeys: readonly string[];
  /** `user-data PATH`: the user's own user-data file, used as written instead of the generated one; absolute. */
  readonly userData: string | null;
}

/** `owner user[:group]`, `:group` or a uid, resolved against the host's passwd/group at parse time. */
export interface Owner {
  /** uid; 0 when only a group was given (`:group`), as OpenBSD. */
  readonly uid: number;
  /** gid, or null for "no group" (OpenBSD's -1). */
  readonly gid: number | null;
  /** The words as written (user name or uid, group name), for messages and `vmctl status`. */
  readonly user: string | null;
  readonly group: string | null;
}

export interface DiskConfig {
  /** Absolute path (realpath at parse time, as OpenBSD). */
  readonly path: string;
  readonly format: DiskFormat;
  /** Absent = virtio (configs stored before buses existed have none). */
  readonly bus?: DiskBus;
}

/** A port or an inclusive port range of a filter rule (`port 80`, `port 1000:2000`). */
export interface PortRange {
  readonly from: number;
  readonly to: number;
}

/** One side of a filter rule: no addresses means any, no ports means any. */
export interface RuleEndpoint {
  /** CIDR strings, IPv4 or IPv6 (`10.0.0.0/8`, `2001:db8::1/128`); a bare address is stored with its full length. */
  readonly addresses: readonly string[];
  readonly ports: readonly PortRange[];
}

export type RuleProto = 'tcp' | 'udp' | 'icmp' | 'icmp6';

/** A pf-style rule in an interface block; `in` = towards the guest, `out` = from the guest, null = both. */
export interface FilterRule {
  readonly action: 'pass' | 'block';
  readonly direction: 'in' | 'out' | null;
  readonly quick: boolean;
  /** Empty: any protocol. */
  readonly protos: readonly RuleProto[];
  readonly from: RuleEndpoint;
  readonly to: RuleEndpoint;
  /** The rule as written after macro expansion, one line, for `vmctl firewall`. */
  readonly text: string;
  readonly location: SourceLocation;
}

/** `forward tcp|udp PORT [to PORT]`: host port to guest port. */
export interface PortForward {
  readonly proto: 'tcp' | 'udp';
  readonly hostPort: number;
  readonly guestPort: number;
  readonly location: SourceLocation;
}

/** The network services a guest may offer on its link: `allow dhcp` and `allow router` in an interface block. */
export type InterfaceAllow = 'dhcp' | 'router';

export interface InterfaceConfig {
  /** 0-based NIC index within the VM. */
  readonly index: number;
  /** `tap` or `tapN` as written after `interface`, else null. Informational on Linux: vmd names its links itself. */
  readonly name: string | null;
  /** `local interface`: a /31 from the local prefix with DHCP and NAT. */
  readonly local: boolean;
  readonly switch: string | null;
  readonly group: string | null;
  /** MAC as `xx:xx:xx:xx:xx:xx` lowercase, or null for a stable generated one. */
  readonly lladdr: string | null;
  readonly locked: boolean;
  readonly rdomain: number | null;
  readonly up: boolean;
  /**
   * `allow dhcp`, `allow router`: what the guest may do that a guest link otherwise drops (answering DHCP; router
   * advertisements, redirects and addresses it was not given). Absent (vmctl-made NICs) = nothing.
   */
  readonly allow?: readonly InterfaceAllow[];
  readonly forwards: readonly PortForward[];
  readonly rules: readonly FilterRule[];
  /** `passt interface`: the NIC is carried by a passt process on the host's own sockets; absent/null = not passt. */
  readonly passt?: PasstConfig | null;
  readonly location: SourceLocation;
}

/**
 * A passt-backed NIC. Real-addr style (no `address`): the guest gets the address and gateway of the host's
 * outward interface. Qemu style (`nat` or `address CIDR`): its own address behind the host, router = network + 2.
 */
export interface PasstConfig {
  /** `dev IF`: the outward interface (addresses, routes, outgoing traffic); null = the one with the default route. */
  readonly dev: string | null;
  /** Qemu style: the guest's CIDR (`nat` = 10.0.2.15/24); null = real-addr style. */
  readonly address: string | null;
}

/** The guest address of `passt interface { nat }`, as QEMU's user-mode network gives it. */
export const PASST_NAT_ADDRESS = '10.0.2.15/24';

export type InstanceFlag = 'boot' | 'cdrom' | 'disk' | 'instance' | 'interface' | 'memory' | 'owner';

/** `allow instance { … }`: what non-root users may override when creating instances. */
export interface AllowInstance {
  readonly flags: readonly InstanceFlag[];
  /** `owner X` inside allow instance: who may create instances. */
  readonly owner: Owner | null;
}

export interface VmConfig {
  readonly name: string;
  /** For `vm PARENT instance NAME { … }`: the parent's name. */
  readonly instanceOf: string | null;
  readonly enabled: boolean;
  /** Bytes, a whole number of MiB; null = not set (default 512M is applied at registration, instances inherit). */
  readonly memory: number | null;
  readonly cpus: number | null;
  /** `boot PATH`: a Linux kernel (direct boot) or firmware image; absolute. */
  readonly boot: string | null;
  readonly initrd: string | null;
  readonly cmdline: string | null;
  readonly bootDevice: BootDevice | null;
  readonly cdrom: string | null;
  readonly disks: readonly DiskConfig[];
  /** After `interfaces N` padding: max(N, number of interface statements) entries. */
  readonly interfaces: readonly InterfaceConfig[];
  readonly owner: Owner | null;
  readonly allowInstance: AllowInstance | null;
  readonly sev: boolean;
  readonly seves: boolean;
  readonly accel: Accel | null;
  /** `machine …`; absent or null = q35 (configs stored before machines existed have none). */
  readonly machine?: Machine | null;
  /** `firmware`: absent or null = bios (QEMU's SeaBIOS, or the `boot` firmware image). */
  readonly firmware?: FirmwareKind | null;
  /** `firmware uefi secure-boot`: OVMF's Secure Boot build with Microsoft's keys enrolled. */
  readonly secureBoot?: boolean;
  /** `cloud-init { … }`: a NoCloud seed attached read-only; absent or null = none. */
  readonly cloudInit?: CloudInitConfig | null;
  /** `display`: absent, null or `none` = no display (serial console only). */
  readonly display?: DisplayKind | null;
  readonly location: SourceLocation;
}

/** `vxlan ID remote ADDR|{ ADDR … }` or `vxlan ID group MADDR`: exactly one of remotes (non-empty) and group is set. */
export interface VxlanConfig {
  readonly id: number;
  /** Unicast peers; with more than one, broadcasts are copied to each (head-end replication). */
  readonly remotes: readonly string[];
  /** A multicast group the peers join instead of a list. */
  readonly group: string | null;
  readonly local: string | null;
  readonly dev: string | null;
  readonly port: number;
}

export interface SwitchConfig {
  readonly name: string;
  /** 1-based, in order of appearance among enabled switches (OpenBSD's sw_id). */
  readonly id: number;
  /** The Linux bridge: created if absent (then owned by vmd), adopted if present. */
  readonly interface: string;
  readonly enabled: boolean;
  readonly up: boolean;
  readonly group: string | null;
  readonly locked: boolean;
  readonly rdomain: number | null;
  /** Host address on the switch, CIDR. */
  readonly address: string | null;
  readonly dhcp: boolean;
  readonly nat: boolean;
  readonly vxlan: VxlanConfig | null;
  readonly location: SourceLocation;
}

export interface Prefix4 {
  /** Dotted quad of the network. */
  readonly address: string;
  readonly length: number;
}

export interface Prefix6 {
  readonly address: string;
  readonly length: number;
}

export interface StaggeredStart {
  readonly parallel: number;
  readonly delay: number;
}

/** `metrics [address ADDR] port N`: where vmm serves the Prometheus text exposition. */
export interface MetricsListen {
  /** An IPv4 or IPv6 address; 127.0.0.1 when not given. */
  readonly address: string;
  readonly port: number;
}

export interface GlobalConfig {
  /** Default 100.64.0.0/10. */
  readonly localPrefix: Prefix4;
  readonly localInet6: boolean;
  /** null with localInet6 = a random ULA chosen at daemon start. */
  readonly localInet6Prefix: Prefix6 | null;
  readonly socketOwner: Owner | null;
  /** null = default (parallel = online cores, delay 30 s). */
  readonly staggered: StaggeredStart | null;
  /** null: no metrics endpoint. */
  readonly metrics: MetricsListen | null;
  readonly accel: Accel;
  /** `qemu PATH`: the QEMU binary; null = qemu-system-x86_64 from PATH. */
  readonly qemu: string | null;
}

export interface Config {
  readonly global: GlobalConfig;
  /** Every switch block, enabled or not, in file order. */
  readonly switches: readonly SwitchConfig[];
  /** Every vm block, enabled or not, in file order. */
  readonly vms: readonly VmConfig[];
  /** The files read: the main file first, then includes in order. */
  readonly files: readonly string[];
}

export const DEFAULT_MEMORY = 512 * 1024 * 1024;
export const MIN_MEMORY = 1024 * 1024;
export const MAX_MEMORY = 128 * 1024 * 1024 * 1024;
export const MAX_DISKS = 4;
export const MAX_NICS = 4;
export const MAX_NAME_LEN = 63;
export const DEFAULT_LOCAL_PREFIX: Prefix4 = { address: '100.64.0.0', length: 10 };
export const DEFAULT_STAGGER_DELAY = 30;
