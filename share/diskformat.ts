// How vmd, vmctl and the vm.conf parser tell a qcow2 image from a raw one, as OpenBSD's parse_disktype() does.
// One place for the signature check, so `disk` in vm.conf, `vmctl start -d` and `vmctl create` agree.

import { closeSync, constants as fsc, fstatSync, openSync, readSync } from 'node:fs';
import type { DiskFormat } from './config.js';

/** The first four bytes of every qcow2 image. */
export const QCOW2_MAGIC = Buffer.from('QFI\xfb', 'latin1');

/**
 * Whether the file starts with the qcow2 signature; false when it cannot be read (the open reports why later) or is
 * neither a regular file nor a block device: a FIFO named in vm.conf must not hang the parser.
 */
export function hasQcow2Magic(path: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, fsc.O_RDONLY | fsc.O_NONBLOCK | fsc.O_NOCTTY);
  } catch {
    return false;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() && !st.isBlockDevice()) return false;
    const buf = Buffer.alloc(4);
    return readSync(fd, buf, 0, 4, 0) === 4 && buf.equals(QCOW2_MAGIC);
  } catch {
    return false;
  } finally {
    closeSync(fd);
  }
}

/** parse_disktype() without a prefix: the qcow2 signature, then a `.qcow2`/`.raw` extension (any case), else raw. */
export function diskFormatOf(path: string): DiskFormat {
  if (hasQcow2Magic(path)) return 'qcow2';
  return /\.qcow2$/i.test(path) ? 'qcow2' : 'raw';
}
