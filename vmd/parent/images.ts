// Opening a requester's images and boot files (disks, backing chains, cdrom, kernel, initrd) for QEMU to inherit.
// QEMU gets descriptors, never paths, so it needs no access of its own to the user's files (OpenBSD's config.c).

import { execFileSync } from 'node:child_process';
import {
  closeSync, constants as fsc, mkdirSync, openSync, readFileSync, readSync, statSync, unlinkSync, writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import type { DiskConfig, VmConfig } from '../../share/config.js';
import { errnoMessage } from '../../share/errno.js';
import { VmdError, type ErrorCode } from '../../share/errors.js';
import type { QemuBacking } from '../qemu-argv.js';
import type { Identity } from './context.js';

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

export interface OpenedImages {
  readonly disks: Array<{ fd: number; format: 'raw' | 'qcow2'; path: string; backing: QemuBacking[] }>;
  readonly cdrom: { fd: number; path: string } | null;
  readonly kernel: number | null;
  readonly initrd: number | null;
}

/** Whether uid (with its groups) may read (and write) path, by the mode bits, as OpenBSD's vm_checkaccess. */
function mayAccess(path: string, uid: number, gids: readonly number[], write: boolean): boolean {
  if (uid === 0) return true;
  const st = statSync(path);
  if (!st.isFile()) return false;
  const need = write ? 0o6 : 0o4;
  let bits: number;
  if (st.uid === uid) bits = (st.mode >> 6) & 7;
  else if (gids.includes(st.gid)) bits = (st.mode >> 3) & 7;
  else bits = st.mode & 7;
  return (bits & need) === need;
}

/** Who asks for the files: their uid and groups decide what may be opened. */
export interface Requester {
  readonly uid: number;
  readonly gids: readonly number[];
}

/**
 * Opens every file a VM names for the requester. `runDir` receives private copies of boot files QEMU's user could
 * not read through /proc/self/fd (the kernel checks the file's own mode bits there).
 */
export function imagesOpen(vm: VmConfig, who: Requester, fds: Descriptors, opts: { root: boolean; qemu: Identity; runDir: string }): OpenedImages {
  // PRIV: root opens the files the requester may open, so QEMU (unprivileged) can use them through inherited fds.
  const open = (path: string, what: string, code: ErrorCode, write: boolean): number => {
    let fd: number;
    try {
      if (!mayAccess(path, who.uid, who.gids, write)) {
        throw Object.assign(new Error('permission denied'), { code: 'EACCES' });
      }
      fd = openSync(path, (write ? fsc.O_RDWR : fsc.O_RDONLY) | fsc.O_NOCTTY | fsc.O_NONBLOCK);
    } catch (err) {
      throw new VmdError(code, `vm "${vm.name}": ${what} ${path}: ${errnoMessage(err)}`, { cause: err });
    }
    return fds.own(fd);
  };
  const disks = vm.disks.map((d: DiskConfig) => {
    const fd = fds.pass(open(d.path, 'disk', 'ERR_DISK_MISSING', true));
    let chain: Array<{ path: string; format: 'raw' | 'qcow2' }> = [];
    if (d.format === 'qcow2') {
      try {
        chain = backingChain(d.path);
      } catch (err) {
        throw new VmdError('ERR_DISK_MISSING', `vm "${vm.name}": disk ${d.path}: ${errnoMessage(err).split('\n')[0]}`, { cause: err });
      }
    }
    // Backing files are opened read-only by the parent too, so QEMU needs no access of its own.
    const backing = chain.map((b) => ({ fd: fds.pass(open(b.path, 'disk base', 'ERR_DISK_MISSING', false)), format: b.format }));
    return { fd, format: d.format, path: d.path, backing };
  });
  let cdrom: { fd: number; path: string } | null = null;
  if (vm.cdrom !== null) {
    try {
      if (!statSync(vm.cdrom).isFile()) throw new VmdError('ERR_CDROM_INVALID', `vm "${vm.name}": cdrom ${vm.cdrom}: not a regular file`);
    } catch (err) {
      if (err instanceof VmdError) throw err;
      throw new VmdError('ERR_CDROM_MISSING', `vm "${vm.name}": cdrom ${vm.cdrom}: ${errnoMessage(err)}`, { cause: err });
    }
    cdrom = { fd: fds.pass(open(vm.cdrom, 'cdrom', 'ERR_CDROM_MISSING', false)), path: vm.cdrom };
  }
  const bootFile = (p: string | null, what: 'kernel' | 'initrd'): number | null => {
    if (p === null) return null;
    const fd = open(p, what, what === 'kernel' ? 'ERR_BIOS_MISSING' : 'ERR_INVALID', false);
    if (!opts.root || mayAccess(p, opts.qemu.uid, [opts.qemu.gid], false)) return fds.pass(fd);
    mkdirSync(opts.runDir, { recursive: true, mode: 0o700 });
    const copy = join(opts.runDir, what);
    writeFileSync(copy, readFileSync(fd), { mode: 0o644 });
    const cfd = fds.own(openSync(copy, fsc.O_RDONLY));
    unlinkSync(copy);
    return fds.pass(cfd);
  };
  return { disks, cdrom, kernel: bootFile(vm.boot, 'kernel'), initrd: bootFile(vm.initrd, 'initrd') };
}

/** Whether a boot image is a kernel QEMU loads itself (bzImage "HdrS" header, or ELF: PVH/multiboot) rather than firmware. */
export function isKernelImage(path: string): boolean {
  try {
    const fd = openSync(path, 'r');
    try {
      const head = Buffer.alloc(0x206);
      const n = readSync(fd, head, 0, head.length, 0);
      if (n >= 4 && head.subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) return true;
      return n >= 0x206 && head.toString('latin1', 0x202, 0x206) === 'HdrS';
    } finally {
      closeSync(fd);
    }
  } catch {
    return false;
  }
}

/** The backing chain below a qcow2 image, nearest first, as qemu-img sees it (paths absolute). */
function backingChain(path: string): Array<{ path: string; format: 'raw' | 'qcow2' }> {
  const out = execFileSync('qemu-img', ['info', '-U', '--backing-chain', '--output=json', path], { encoding: 'utf8', timeout: 10_000 });
  const chain = JSON.parse(out) as Array<{ 'full-backing-filename'?: string; 'backing-filename-format'?: string }>;
  const result: Array<{ path: string; format: 'raw' | 'qcow2' }> = [];
  for (const layer of chain) {
    const next = layer['full-backing-filename'];
    if (next === undefined) break;
    result.push({ path: next, format: layer['backing-filename-format'] === 'qcow2' ? 'qcow2' : 'raw' });
  }
  return result;
}
