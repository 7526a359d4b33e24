// Where a guest's disks, cdrom and NICs sit on each machine type: the device half of QEMU's argv for every bus.
// Pure, like vmd/qemu-argv.ts that calls it; the machine rules (what microvm and pc can hold) are checked here too.
//
// Facts about QEMU 7.2 this relies on (measured: `-device help`, `-machine microvm,help`, guests in test/e2e/buses):
// - q35 has an ICH9 AHCI controller built in, its six ports named ide.0 to ide.5; the cdrom takes ide.0, so sata
//   disks take ide.1 onwards. pc has PIIX IDE (ide.0 and ide.1, two units each; the cdrom is ide.1 unit 0, where
//   QEMU's own -cdrom goes) and no AHCI: sata disks there get an `ahci` PCI controller of their own.
// - virtio-scsi: one `virtio-scsi-pci` controller, each disk a `scsi-hd` on its bus `scsi0.0`.
// - nvme: one controller per disk (`-device nvme,drive=…`); QEMU refuses one without a serial number.
// - microvm has no PCI bus (pcie=off by default) and no IDE or AHCI: devices are virtio-mmio (`virtio-blk-device`,
//   `virtio-scsi-device`, `virtio-net-device`), described to the guest by ACPI, and there is no firmware that boots
//   a disk, so a microvm needs a direct kernel boot.

import { DISK_BUSES, MACHINE_BUSES, MACHINES } from '../share/config.js';
import type { QemuMachine, QemuSpec } from './qemu-spec.js';

/** Adds one descriptor as the next fdset and returns the set's number, for the drive that names it. */
export type AddFd = (fd: number, opaque: string) => number;

/** pc's IDE places a disk may take, in order; ide.1 unit 0 is the cdrom's. */
const PC_IDE_SLOTS = [['ide.0', 0], ['ide.0', 1], ['ide.1', 1], ['ide.1', 0]] as const;

/** Why a spec's disks, cdrom or machine cannot be laid out; null when they can. */
export function machineLayoutError(spec: QemuSpec): string | null {
  const machine = spec.machine ?? 'q35';
  if (!MACHINES.includes(machine)) return `unsupported machine ${String(machine)}: ${MACHINES.join(', ')}`;
  for (const [i, disk] of spec.disks.entries()) {
    const bus = disk.bus ?? 'virtio';
    if (!DISK_BUSES.includes(bus)) return `disk ${i}: unknown bus ${String(bus)}: ${DISK_BUSES.join(', ')}`;
    if (!MACHINE_BUSES[machine].includes(bus)) {
      return `disk ${i}: bus ${bus} needs machine ${MACHINES.filter((m) => MACHINE_BUSES[m].includes(bus)).join(' or ')}, not ${machine}`;
    }
  }
  const ide = spec.disks.filter((d) => d.bus === 'ide').length;
  if (ide > PC_IDE_SLOTS.length - (spec.cdrom ? 1 : 0)) return `too many ide disks: ${ide} (pc has ${spec.cdrom ? 3 : 4} places${spec.cdrom ? ' besides the cdrom' : ''})`;
  if (machine !== 'microvm') return null;
  if (!spec.kernel) return 'machine microvm needs a kernel to boot directly (it has no firmware that boots a disk)';
  if (spec.firmware) return 'machine microvm cannot use firmware';
  if (spec.cdrom) return 'machine microvm has no cdrom bus';
  return null;
}

/** The disks, each as a -drive (backing chain overridden to fdsets) and a device on its bus. */
export function pushDiskArgs(argv: string[], spec: QemuSpec, addFd: AddFd): void {
  const machine = spec.machine ?? 'q35';
  const controllers = new Set<string>();
  let sata = 0;
  let ide = 0;
  spec.disks.forEach((disk, i) => {
    const set = addFd(disk.fd, `disk${i}`);
    const drive = [`file=/dev/fdset/${set}`, `format=${disk.format}`, 'if=none', `id=disk${i}`];
    drive.push(disk.readonly ? 'readonly=on' : 'file.auto-read-only=off');
    let prefix = 'backing.';
    (disk.backing ?? []).forEach((b, j) => {
      const file = 'fd' in b ? `/dev/fdset/${addFd(b.fd, `disk${i}-backing${j}`)}` : b.path;
      drive.push(`${prefix}driver=${b.format}`, `${prefix}file.filename=${file}`);
      prefix += 'backing.';
    });
    argv.push('-drive', opts(drive));
    const controller = (id: string, device: string) => {
      if (!controllers.has(id)) argv.push('-device', opts([device, `id=${id}`]));
      controllers.add(id);
    };
    let device: string[];
    switch (disk.bus ?? 'virtio') {
      case 'virtio':
        device = [machine === 'microvm' ? 'virtio-blk-device' : 'virtio-blk-pci', `drive=disk${i}`, `id=vd${i}`];
        break;
      case 'scsi':
        controller('scsi0', machine === 'microvm' ? 'virtio-scsi-device' : 'virtio-scsi-pci');
        device = ['scsi-hd', 'bus=scsi0.0', `drive=disk${i}`, `id=sd${i}`];
        break;
      case 'sata':
        // q35: the chipset's AHCI, port 0 left to the cdrom; pc: an AHCI controller of its own.
        if (machine === 'pc') controller('ahci0', 'ahci');
        device = ['ide-hd', machine === 'pc' ? `bus=ahci0.${sata}` : `bus=ide.${sata + 1}`, `drive=disk${i}`, `id=sata${i}`];
        sata++;
        break;
      case 'ide': {
        const [bus, unit] = PC_IDE_SLOTS[ide++]!;
        device = ['ide-hd', `bus=${bus}`, `unit=${unit}`, `drive=disk${i}`, `id=hd${i}`];
        break;
      }
      case 'nvme':
        // The serial is the NVMe controller's identity in the guest (/sys/class/nvme/*/serial): stable per VM and disk.
        device = ['nvme', `drive=disk${i}`, `id=nvme${i}`, `serial=vmd${spec.id}d${i}`];
        break;
    }
    if (spec.bootDevice === 'disk' && i === 0) device.push('bootindex=0');
    argv.push('-device', opts(device));
  });
}

/** The read-only ISO, on the bus where each machine type expects a cdrom. */
export function pushCdromArgs(argv: string[], spec: QemuSpec, addFd: AddFd): void {
  if (!spec.cdrom) return;
  const set = addFd(spec.cdrom.fd, 'cdrom');
  argv.push('-drive', opts([`file=/dev/fdset/${set}`, 'format=raw', 'if=none', 'id=cdrom0', 'media=cdrom', 'readonly=on']));
  // q35: first AHCI port; pc: secondary IDE master, where QEMU's own -cdrom goes.
  const device = ['ide-cd', 'drive=cdrom0', 'id=cd0', (spec.machine ?? 'q35') === 'q35' ? 'bus=ide.0' : 'bus=ide.1'];
  if (spec.bootDevice === 'cdrom') device.push('bootindex=0');
  argv.push('-device', opts(device));
}

/** The virtio NIC model of a machine: PCI, or virtio-mmio on microvm (which has no option ROM to drop). */
export function nicDevice(machine: QemuMachine): { model: string; pci: boolean } {
  return machine === 'microvm' ? { model: 'virtio-net-device', pci: false } : { model: 'virtio-net-pci', pci: true };
}

/** Join QEMU option-list items; a comma inside a value is written as two commas. */
export function opts(items: readonly string[]): string {
  return items.map((item) => item.replaceAll(',', ',,')).join(',');
}
