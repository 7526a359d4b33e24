// Growing a running guest's disk over QMP: block_resize on the drive vmd named `diskN`, never below its size.
// The guest's virtio-blk (or SCSI, NVMe) driver hears of the new capacity at once; its partitions stay its own.

import { VmdError } from '../../share/errors.js';
import type { Guest } from './guests.js';

/** The virtual size QEMU reports for drive `device`, read defensively from query-block; null when it has none. */
export function driveSizeOf(answer: unknown, device: string): number | null {
  if (!Array.isArray(answer)) return null;
  for (const b of answer) {
    const o = b as { device?: unknown; inserted?: { ro?: unknown; image?: { 'virtual-size'?: unknown } } } | null;
    if (o?.device !== device || o.inserted === undefined || o.inserted.ro === true) continue;
    const size = o.inserted.image?.['virtual-size'];
    return typeof size === 'number' && Number.isSafeInteger(size) ? size : null;
  }
  return null;
}

/** Grows disk `index` of a running guest to `size` bytes; returns the size it had. Equal is no change. */
export async function guestGrow(g: Guest, index: number, size: number): Promise<number> {
  const qmp = g.qmp;
  if (qmp === null) throw new VmdError('ERR_QEMU', `vm ${g.handle.name}: no qmp connection`);
  const device = `disk${index}`;
  const current = driveSizeOf(await qmp.execute('query-block'), device);
  if (current === null) throw new VmdError('ERR_INVALID', `vm "${g.handle.name}": grow: disk ${index}: qemu has no writable drive ${device}`);
  if (size < current) {
    throw new VmdError('ERR_INVALID', `vm "${g.handle.name}": grow: disk ${index}: ${size} bytes is smaller than its ${current}: disks are never shrunk`);
  }
  if (size > current) await qmp.execute('block_resize', { device, size });
  return current;
}
