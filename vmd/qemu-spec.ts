// The resolved description of one guest that vmd/qemu-argv.ts turns into QEMU's command line.
// Descriptors are numbered as the child sees them; sizes are in bytes; nothing is left for QEMU to default.

import type { BootDevice, DiskBus, DiskFormat, Machine } from '../share/config.js';

/** The two accelerators a spec can name; `auto` is resolved before the argv is built (vmd/accel.ts). */
export type QemuAccel = 'kvm' | 'tcg';

/** The machine types the builder knows how to lay devices out on (vmd/qemu-disks.ts). */
export type QemuMachine = Machine;

/** A file QEMU opens itself (-kernel, -initrd, -bios): an inherited descriptor, read via /proc/self/fd/N, or a path. */
export type QemuFile = { readonly fd: number } | { readonly path: string };

/** One element of a qcow2 backing chain, nearest first: an O_RDONLY descriptor, or a path QEMU may read. */
export type QemuBacking =
  | { readonly fd: number; readonly format: DiskFormat }
  | { readonly path: string; readonly format: DiskFormat };

/** A disk image opened by the parent: O_RDWR, or O_RDONLY with `readonly`. */
export interface QemuDisk {
  readonly fd: number;
  readonly format: DiskFormat;
  readonly readonly?: boolean;
  /** Default virtio; which machines have which bus is vmd/qemu-disks.ts's. */
  readonly bus?: DiskBus;
  /** The complete backing chain below the image, nearest first; absent = let QEMU follow the image header. */
  readonly backing?: readonly QemuBacking[];
}

/**
 * UEFI firmware on pflash: the code O_RDONLY, the guest's own variable store O_RDWR (a per-VM copy of the
 * template, kept by the parent). Secure Boot needs the SMM build of the code, which needs q35 with SMM on.
 */
export interface QemuUefi {
  readonly code: number;
  readonly vars: number;
  readonly secureBoot: boolean;
}

/** The ISO image, opened O_RDONLY by the parent. */
export interface QemuCdrom {
  readonly fd: number;
}

/** A host port forwarded to the guest by QEMU's user-mode network (vm.conf `forward`). */
export interface QemuForward {
  readonly proto: 'tcp' | 'udp';
  /** IPv4 literal to listen on; absent = all host addresses. */
  readonly hostAddr?: string;
  readonly hostPort: number;
  readonly guestPort: number;
}

/** A guest NIC: user-mode NAT (unprivileged vmd), a tap the parent opened and attached, or passt's socket. */
export type QemuNic =
  | { readonly kind: 'user'; readonly mac: string; readonly forwards?: readonly QemuForward[] }
  | { readonly kind: 'tap'; readonly fd: number; readonly mac: string }
  /** A passt process's Unix socket (`-netdev stream`): passt carries the guest's traffic on host sockets. */
  | { readonly kind: 'stream'; readonly socket: string; readonly mac: string };

/** Everything the argv depends on, already resolved: sizes in bytes, accel decided, descriptors numbered as the child sees them. */
export interface QemuSpec {
  /** The VM id (OpenBSD's vmid), part of the process name so `ps` shows which guest a QEMU is. */
  readonly id: number;
  readonly name: string;
  /** Bytes, a whole number of MiB. */
  readonly memory: number;
  readonly cpus: number;
  readonly accel: QemuAccel;
  /** Default q35. */
  readonly machine?: QemuMachine;
  /** Direct Linux (or multiboot) boot. */
  readonly kernel?: QemuFile | null;
  readonly initrd?: QemuFile | null;
  readonly cmdline?: string | null;
  /** Firmware instead of QEMU's SeaBIOS (OpenBSD's BIOS image, qboot, …). */
  readonly firmware?: QemuFile | null;
  /** The cloud-init seed ISO (O_RDONLY), attached read-only after the disks. */
  readonly seed?: number | null;
  /** UEFI on pflash instead of SeaBIOS; excludes `firmware`. */
  readonly uefi?: QemuUefi | null;
  /** BIOS boot device; with -no-reboot every boot is a fresh QEMU, so "once" (`vmctl start -B`) is the lifecycle's choice. */
  readonly bootDevice?: BootDevice | null;
  readonly cdrom?: QemuCdrom | null;
  readonly disks: readonly QemuDisk[];
  readonly nics: readonly QemuNic[];
  /** Unix socket paths QEMU listens on; the vmm role connects to them. */
  readonly qmpSocket: string;
  readonly consoleSocket: string;
  /** seccomp: no spawning, no privilege changes. spawn=deny also kills QEMU (SIGSYS) on `exec:` migration URIs. */
  readonly sandbox: boolean;
  readonly pidfile?: string | null;
  /** `display vnc`: a VGA card whose screen QEMU serves as VNC on this unix socket; absent or null = none. */
  readonly display?: { readonly vncSocket: string } | null;
  /** Start with the CPUs stopped (-S), e.g. to connect the console before the first byte, or for tests. */
  readonly paused?: boolean;
  /** `-incoming URI` for restoring a saved guest; under the sandbox `fd:N` (an inherited descriptor), not `exec:`. */
  readonly incoming?: string | null;
}
