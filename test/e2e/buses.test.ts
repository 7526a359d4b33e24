// End to end, disk buses and machine types: the busybox guest sees each disk on the bus vm.conf gives it
// (/sys/block names it), on pc, microvm and q35, as far as Debian's cloud kernel has the driver (no AHCI).

import t from 'tap';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { guestCmdline, hostTscKhz } from '../../share/guest/guest.js';
import { guestInitrd, guestKernel, VmdHarness } from '../lib/vmd-harness.js';

const guestVmlinux = join(guestKernel, '..', 'vmlinux');

t.before(() => {
  if (!existsSync(guestKernel)) throw new Error(`test guest missing: run share/guest/build (${guestKernel})`);
});

/** A raw disk of `mib` MiB: each disk of a VM gets its own size, so the guest's listing tells them apart. */
function disk(dir: string, name: string, mib: number): string {
  const path = join(dir, `${name}.raw`);
  writeFileSync(path, Buffer.alloc(mib * 1024 * 1024));
  return path;
}

/** The guest's block devices: name, size in MiB and the sysfs path of the device (which names its bus). */
async function blockDevices(h: VmdHarness, vm: string): Promise<Map<string, { mib: number; path: string }>> {
  await h.console(vm, '\n', /vmd-guest: ready/, 60);
  const out = await h.console(vm,
    'for b in /sys/block/*; do echo "BLK $(basename $b) $(cat $b/size) $(readlink -f $b)"; done; echo BLK-$((40+2))\n', /BLK-42/, 30);
  const devices = new Map<string, { mib: number; path: string }>();
  for (const m of out.matchAll(/^BLK (\S+) (\d+) (\S+)\r?$/gm)) devices.set(m[1]!, { mib: Number(m[2]) / 2048, path: m[3]! });
  return devices;
}

/** The device of `mib` MiB, which must be the only one of that size. */
function bySize(devices: Map<string, { mib: number; path: string }>, mib: number): [string, string] | undefined {
  const found = [...devices].filter(([, d]) => d.mib === mib);
  return found.length === 1 ? [found[0]![0], found[0]![1].path] : undefined;
}

t.test('each bus shows the guest its disk: virtio, scsi, ide and nvme on pc; virtio and scsi on microvm; no AHCI driver', async (t) => {
  const h = await VmdHarness.start();
  t.teardown(() => h.teardown());
  const boot = `  boot "${guestKernel}"\n  initrd "${guestInitrd}"\n  cmdline "${guestCmdline()}"\n  memory 256M\n`;
  const tsc = hostTscKhz();
  const micro = `  boot "${guestVmlinux}"\n  initrd "${guestInitrd}"\n  memory 256M\n` +
    `  cmdline "${guestCmdline(tsc === undefined ? {} : { tscKhz: tsc })}"\n`;
  writeFileSync(h.configPath,
    `vm "legacy" {\n  disable\n  machine pc\n${boot}` +
    `  disk "${disk(h.dir, 'v', 1)}" bus virtio\n  disk "${disk(h.dir, 's', 2)}" format raw bus scsi\n` +
    `  disk "${disk(h.dir, 'i', 3)}" bus ide\n  disk "${disk(h.dir, 'n', 4)}" bus nvme\n}\n` +
    `vm "micro" {\n  disable\n  machine microvm\n${micro}` +
    `  disk "${disk(h.dir, 'mv', 5)}"\n  disk "${disk(h.dir, 'ms', 6)}" bus scsi\n}\n` +
    `vm "modern" {\n  disable\n${boot}  disk "${disk(h.dir, 'qv', 7)}"\n  disk "${disk(h.dir, 'qs', 8)}" bus sata\n}\n`);
  t.equal((await h.vmctl(['reload'])).exitCode, 0, h.daemonLog);

  await t.test('pc: virtio, scsi, ide, nvme', async (t) => {
    const r = await h.vmctl(['start', 'legacy']);
    t.equal(r.exitCode, 0, r.stderr);
    const d = await blockDevices(h, 'legacy');
    t.equal(bySize(d, 1)?.[0], 'vda', 'virtio: vda');
    t.match(bySize(d, 2) ?? [], [/^sd[a-z]$/, /virtio.*host\d+\/target/], 'scsi: an sd disk behind virtio-scsi');
    t.match(bySize(d, 3) ?? [], [/^sd[a-z]$/, /ata\d+\/host\d+/], 'ide: an sd disk behind libata');
    t.equal(bySize(d, 4)?.[0], 'nvme0n1', 'nvme: nvme0n1');
    t.equal((await h.vmctl(['stop', '-f', '-w', 'legacy'])).exitCode, 0);
  });

  await t.test('microvm: virtio-mmio block and scsi', async (t) => {
    const r = await h.vmctl(['start', 'micro']);
    t.equal(r.exitCode, 0, r.stderr);
    const d = await blockDevices(h, 'micro');
    t.match(bySize(d, 5) ?? [], [/^vda$/, /virtio-mmio|LNRO0005/], 'virtio: vda on virtio-mmio');
    t.match(bySize(d, 6) ?? [], [/^sd[a-z]$/, /virtio-mmio|LNRO0005/], 'scsi: an sd disk on virtio-mmio');
    t.equal((await h.vmctl(['stop', '-f', '-w', 'micro'])).exitCode, 0);
  });

  await t.test('q35: sata is on the AHCI port, for which the cloud kernel has no driver (vm.conf(5) says so)', async (t) => {
    const r = await h.vmctl(['start', 'modern']);
    t.equal(r.exitCode, 0, r.stderr);
    const d = await blockDevices(h, 'modern');
    t.equal(bySize(d, 7)?.[0], 'vda', 'virtio: vda');
    t.equal(bySize(d, 8), undefined, 'the sata disk is not seen without an ahci driver');
    t.equal((await h.vmctl(['stop', '-f', '-w', 'modern'])).exitCode, 0);
  });
});
