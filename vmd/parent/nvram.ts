// A UEFI guest's variable store: a per-VM copy of OVMF's template in the state directory, kept for the VM's life.
// The parent opens OVMF's code read-only and the store read-write; QEMU gets both as descriptors (pflash).

import { constants as fsc, copyFileSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { VmConfig } from '../../share/config.js';
import { errnoMessage } from '../../share/errno.js';
import { VmdError } from '../../share/errors.js';
import { ovmfFiles } from '../../share/firmware.js';
import type { QemuUefi } from '../qemu-spec.js';
import type { Descriptors } from './images.js';

/** The directory of every VM's variable store, under the state directory. */
export function nvramDir(stateDir: string): string {
  return join(stateDir, 'nvram');
}

/**
 * The store of VM `id` for one flavour: Secure Boot has its own, made from the template with Microsoft's keys, so
 * turning it on enrolls them (keeping the plain store would boot unverified) and turning it off again finds the
 * old entries. Named by id, which SQLite keeps for the VM's life.
 */
export function nvramPath(stateDir: string, id: number, secureBoot: boolean): string {
  return join(nvramDir(stateDir), `${id}${secureBoot ? '.secure-boot' : ''}.fd`);
}

/**
 * Opens OVMF's code and the VM's store for QEMU, first copying the template if the VM has none yet (by rename, so a
 * crash never leaves half a store). Null for a VM without `firmware uefi`.
 */
export function nvramOpen(stateDir: string, id: number, vm: VmConfig, fds: Descriptors): QemuUefi | null {
  if (vm.firmware !== 'uefi') return null;
  const secureBoot = vm.secureBoot === true;
  const files = ovmfFiles(secureBoot);
  const store = nvramPath(stateDir, id, secureBoot);
  const fail = (what: string, err: unknown): never => {
    throw new VmdError('ERR_BIOS_MISSING', `vm "${vm.name}": firmware uefi: ${what}: ${errnoMessage(err)}`, {
      cause: err, hint: 'install the ovmf package (share/setup does)',
    });
  };
  let code: number;
  try {
    // PRIV: root's own files: OVMF from the system, the store in root's state directory; QEMU gets descriptors.
    code = fds.own(openSync(files.code, fsc.O_RDONLY));
  } catch (err) {
    return fail(files.code, err);
  }
  try {
    statSync(store);
  } catch {
    mkdirSync(nvramDir(stateDir), { recursive: true, mode: 0o700 });
    const tmp = `${store}.new`;
    try {
      copyFileSync(files.vars, tmp);
    } catch (err) {
      rmSync(tmp, { force: true });
      return fail(files.vars, err);
    }
    renameSync(tmp, store);
  }
  const vars = fds.own(openSync(store, fsc.O_RDWR));
  return { code: fds.pass(code), vars: fds.pass(vars), secureBoot };
}

/** Removes every store of VM `id`: called when the VM is forgotten, so a later VM with its id starts afresh. */
export function nvramRemove(stateDir: string, id: number): void {
  let names: string[];
  try {
    names = readdirSync(nvramDir(stateDir));
  } catch {
    return;
  }
  for (const n of names) {
    if (n === `${id}.fd` || n === `${id}.secure-boot.fd` || n.startsWith(`${id}.fd.`) || n.startsWith(`${id}.secure-boot.fd.`)) {
      rmSync(join(nvramDir(stateDir), n), { force: true });
    }
  }
}

