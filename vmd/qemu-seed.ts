// The cloud-init seed on QEMU's command line: the NoCloud ISO the parent made, as a read-only virtio disk.
// Pure, called by vmd/qemu-argv.ts; virtio because every cloud image has it and it takes no port of the disk buses.

import type { QemuSpec } from './qemu-spec.js';

/** Adds a descriptor as the next fdset, as qemu-argv.ts's counter does; returns the set number. */
type AddFd = (fd: number, opaque: string) => number;

/** The seed drive, after the disks so the guest's disk names do not move; cloud-init finds it by its label. */
export function pushSeedArgs(argv: string[], spec: QemuSpec, addFd: AddFd): void {
  if (spec.seed === undefined || spec.seed === null) return;
  const set = addFd(spec.seed, 'seed');
  argv.push('-drive', `file=/dev/fdset/${set},format=raw,if=none,id=seed0,readonly=on`);
  argv.push('-device', 'virtio-blk-pci,drive=seed0,id=seed0');
}
