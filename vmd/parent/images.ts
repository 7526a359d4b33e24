// Opening a requester's images and boot files (disks, backing chains, cdrom, kernel, initrd) for QEMU to inherit.
// QEMU gets descriptors, never paths, so it needs no access of its own to the user's files (OpenBSD's config.c).

import { closeSync, constants as fsc, mkdirSync, openSync, readFileSync, readSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { VmConfig } from '../../share/config.js';
import { VmdError } from '../../share/errors.js';
import type { QemuBacking } from '../qemu-spec.js';
import { diskOpenAs, reopenableBy, userFileOpen, type FileRequest, type FsIdentity } from '../user-files.js';
import type { ImageLayer } from './disk-holders.js';
import type { Identity } from './env.js';

/**
 * The descriptors of one start: `passed` are QEMU's, numbered from 3 in stdio order; `all` are closed by the parent
 * once QEMU has them (or the start failed).
 */
export class Descriptors {
  readonly all: number[] = [];
  readonly passed: number[] = [];

  /** Keeps fd to close later. */
  own(fd: number): number {
    this.all.push(fd);
    return fd;
  }

  /** Hands fd to QEMU; returns the number QEMU will know it by. */
  pass(fd: number): number {
    this.passed.push(fd);
    return 3 + this.passed.length - 1;
  }

  closeAll(): void {
    for (const fd of this.all) {
      try { closeSync(fd); } catch { /* already closed */ }
    }
  }
}

/** The largest kernel or initrd copied for QEMU's user; real ones are tens of MiB. */
const MAX_BOOT_COPY = 1 << 30;

export interface OpenedImages {
  readonly disks: Array<{ fd: number; format: 'raw' | 'qcow2'; path: string; backing: QemuBacking[] }>;
  readonly cdrom: { fd: number; path: string } | null;
  readonly kernel: number | null;
  /** Whether the boot image is a kernel QEMU loads itself (bzImage or ELF) rather than firmware, read from its fd. */
  readonly kernelIsLinux: boolean;
  readonly initrd: number | null;
  /** Every disk file with the parent's descriptor, for the check against other running guests (disk-holders.ts). */
  readonly layers: readonly ImageLayer[];
}

/**
 * Opens every file a VM names with the requester's own credentials (vmd/user-files.ts: the kernel decides, the
 * descriptor is checked, qcow2 headers are read by qemu-img running as the requester). `runDir` receives private
 * copies of boot files QEMU's user could not read through /proc/self/fd (the kernel checks the file itself there).
 */
export async function imagesOpen(vm: VmConfig, who: FsIdentity, fds: Descriptors, opts: { root: boolean; qemu: Identity; runDir: string }): Promise<OpenedImages> {
  // PRIV: each open runs with the requester's fsuid/fsgid/groups; root only hands QEMU what the requester could open.
  const file = (path: string, req: Omit<FileRequest, 'vm' | 'who'>): { fd: number; size: number } => {
    const opened = userFileOpen(path, { ...req, vm: vm.name, who });
    return { fd: fds.own(opened.fd), size: opened.stat.size };
  };
  const disks: OpenedImages['disks'] = [];
  const layers: ImageLayer[] = [];
  for (const d of vm.disks) {
    const opened = await diskOpenAs(vm.name, d, who);
    // Owned at once, so a later failure closes them with the rest.
    fds.own(opened.fd);
    for (const b of opened.backing) fds.own(b.fd);
    layers.push({ hostFd: opened.fd, path: d.path, disk: d.path, writable: true });
    for (const b of opened.backing) layers.push({ hostFd: b.fd, path: b.path, disk: d.path, writable: false });
    disks.push({
      fd: fds.pass(opened.fd), format: d.format, path: d.path,
      backing: opened.backing.map((b) => ({ fd: fds.pass(b.fd), format: b.format })),
    });
  }
  const cdrom = vm.cdrom === null ? null : {
    fd: fds.pass(file(vm.cdrom, { role: 'cdrom', code: 'ERR_CDROM_MISSING', invalidCode: 'ERR_CDROM_INVALID' }).fd),
    path: vm.cdrom,
  };
  const bootFile = (p: string | null, role: 'kernel' | 'initrd'): { fd: number; linux: boolean } | null => {
    if (p === null) return null;
    const code = role === 'kernel' ? 'ERR_BIOS_MISSING' : 'ERR_INVALID';
    const { fd, size } = file(p, { role, code });
    const linux = role === 'kernel' && isKernelImage(fd);
    // The kernel decides whether QEMU's user (spawned without supplementary groups) could reopen /proc/self/fd/N.
    if (!opts.root || reopenableBy(fd, { uid: opts.qemu.uid, gid: opts.qemu.gid, groups: [] })) return { fd: fds.pass(fd), linux };
    // The copy goes to root's state directory: a user must not fill it with a sparse file of any size.
    if (size > MAX_BOOT_COPY) throw new VmdError(code, `vm "${vm.name}": ${role} ${p}: larger than ${MAX_BOOT_COPY >> 20} MiB`, { hint: 'make it readable to the vmd user' });
    mkdirSync(opts.runDir, { recursive: true, mode: 0o700 });
    const copy = join(opts.runDir, role);
    writeFileSync(copy, readFileSync(fd), { mode: 0o644 });
    const cfd = fds.own(openSync(copy, fsc.O_RDONLY));
    unlinkSync(copy);
    return { fd: fds.pass(cfd), linux };
  };
  const kernel = bootFile(vm.boot, 'kernel');
  const initrd = bootFile(vm.initrd, 'initrd');
  return { disks, cdrom, kernel: kernel?.fd ?? null, kernelIsLinux: kernel?.linux ?? false, initrd: initrd?.fd ?? null, layers };
}

/** Whether a boot image is a kernel QEMU loads itself (bzImage "HdrS" header, or ELF: PVH/multiboot) rather than firmware. */
export function isKernelImage(fd: number): boolean {
  try {
    const head = Buffer.alloc(0x206);
    const n = readSync(fd, head, 0, head.length, 0);
    if (n >= 4 && head.subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) return true;
    return n >= 0x206 && head.toString('latin1', 0x202, 0x206) === 'HdrS';
  } catch {
    return false;
  }
}
