// The UEFI part of QEMU's command line: OVMF's code and the guest's variable store on the two pflash units.
// Pure, like vmd/qemu-argv.ts which calls it; the parent opens both files (vmd/parent/nvram.ts).
//
// Measured with QEMU 7.2 and Debian's OVMF 2022.11 (see test/vmd/qemu-argv.test.ts and test/e2e/debian.test.ts):
// - `-bios OVMF.fd` boots but keeps no variables: boot entries an installer writes vanish at the next start.
//   Two pflash drives (code read-only, vars writable) keep them in the vars file.
// - pflash drives go through fdsets like disks: the code with an O_RDONLY descriptor and readonly=on, the vars
//   with an O_RDWR one and file.auto-read-only=off (see qemu-argv.ts's header).
// - The Secure Boot build (OVMF_CODE_4M.secboot.fd) requires SMM: `-machine q35,smm=on` and the pflash marked
//   secure (`-global driver=cfi.pflash01,property=secure,value=on`), or OVMF stops before the boot menu.

import type { QemuSpec } from './qemu-spec.js';

/** Adds a descriptor as the next fdset, as qemu-argv.ts's counter does; returns the set number. */
type AddFd = (fd: number, opaque: string) => number;

/** The options `-machine` needs for the firmware: SMM for Secure Boot, nothing otherwise. */
export function firmwareMachineOptions(spec: QemuSpec): string[] {
  return spec.uefi?.secureBoot === true ? ['smm=on'] : [];
}

/** The pflash drives of a UEFI guest; nothing for SeaBIOS or a `-bios` image. */
export function pushFirmwareArgs(argv: string[], spec: QemuSpec, addFd: AddFd): void {
  const uefi = spec.uefi;
  if (!uefi) return;
  const code = addFd(uefi.code, 'uefi-code');
  const vars = addFd(uefi.vars, 'uefi-vars');
  if (uefi.secureBoot) argv.push('-global', 'driver=cfi.pflash01,property=secure,value=on');
  argv.push('-drive', `if=pflash,format=raw,unit=0,readonly=on,file=/dev/fdset/${code}`);
  argv.push('-drive', `if=pflash,format=raw,unit=1,file.auto-read-only=off,file=/dev/fdset/${vars}`);
}

/** Why a spec's firmware cannot run, or null: checked with the rest of the spec before any argv is built. */
export function firmwareSpecError(spec: QemuSpec): string | null {
  const uefi = spec.uefi;
  if (!uefi) return null;
  if (typeof uefi.secureBoot !== 'boolean') return 'uefi: secureBoot must be true or false';
  if (spec.firmware) return 'uefi and a firmware image (boot PATH) exclude each other';
  if (uefi.secureBoot && (spec.machine ?? 'q35') !== 'q35') return 'uefi secure boot needs the q35 machine (SMM)';
  return null;
}
