// A cloud-init guest's NoCloud seed: meta-data, user-data and network-config in a small ISO labelled `cidata`.
// Made at every start from the current config (so a changed config reaches the guest), removed with the VM.
//
// The user's user-data file is read with the requester's credentials (vmd/user-files.ts); root only writes bytes
// it was given into a private directory and runs genisoimage on them, never on a path a user named.

import { closeSync, constants as fsc, mkdirSync, mkdtempSync, openSync, readSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { execa } from 'execa';
import { MAX_USER_DATA, seedFiles, type SeedAddress } from '../../share/cloud-init.js';
import type { GlobalConfig, VmConfig } from '../../share/config.js';
import { errnoMessage } from '../../share/errno.js';
import { VmdError } from '../../share/errors.js';
import { localAddr4, stableMac } from '../net/addr.js';
import { userFileOpen, type FsIdentity } from '../user-files.js';
import type { Descriptors } from './images.js';

/** Where the seeds live, under the state directory. */
export function seedDir(stateDir: string): string {
  return join(stateDir, 'cloud-init');
}

export function seedPath(stateDir: string, id: number): string {
  return join(seedDir(stateDir), `${id}.iso`);
}

/** What a seed is made from besides the VM: where state lives, the local prefix, and whether NICs are vmd's taps. */
export interface SeedContext {
  readonly stateDir: string;
  readonly global: GlobalConfig;
  /** Taps (root): local interfaces get the /31 vmd gives them; user-mode NICs (rootless) are left to DHCP. */
  readonly root: boolean;
}

/** Writes VM `id`'s seed ISO and opens it read-only for QEMU; null for a VM without `cloud-init`. */
export async function seedOpen(ctx: SeedContext, id: number, vm: VmConfig, who: FsIdentity, fds: Descriptors): Promise<number | null> {
  const c = vm.cloudInit;
  if (c === undefined || c === null) return null;
  const userData = c.userData === null ? null : userDataRead(vm.name, c.userData, who);
  const addresses: SeedAddress[] = !ctx.root ? [] : vm.interfaces.filter((n) => n.local).map((n) => {
    const a = localAddr4(ctx.global.localPrefix, id, n.index);
    return { mac: n.lladdr ?? stableMac(id, vm.name, n.index), address: `${a.guest}/${a.prefixLen}`, gateway: a.host, dns: [a.host] };
  });
  // The instance id follows the content: cloud-init reruns its per-instance steps exactly when the seed changed.
  const draft = seedFiles(vm.name, c, userData, addresses, '');
  const instanceId = `vmd-${id}-${createHash('sha256').update(JSON.stringify(draft)).digest('hex').slice(0, 16)}`;
  const files = seedFiles(vm.name, c, userData, addresses, instanceId);
  mkdirSync(seedDir(ctx.stateDir), { recursive: true, mode: 0o700 });
  // PRIV: root writes the seed's files (bytes, not user paths) into its own state directory and makes the ISO there.
  const work = mkdtempSync(join(seedDir(ctx.stateDir), `.${id}.`));
  try {
    const names = Object.keys(files) as Array<keyof typeof files>;
    for (const n of names) writeFileSync(join(work, n), files[n]!, { mode: 0o600 });
    try {
      // -J -r: Joliet and Rock Ridge keep the file names as written; cloud-init finds the seed by the volume label.
      await execa('genisoimage', ['-quiet', '-output', join(work, 'seed.iso'), '-volid', 'cidata', '-joliet', '-rock', '--', ...names], { cwd: work });
    } catch (err) {
      const e = err as { stderr?: string; code?: string };
      const why = e.code === 'ENOENT' ? 'genisoimage not found' : (e.stderr ?? '').trim().split('\n').pop() || errnoMessage(err);
      throw new VmdError('ERR_QEMU', `vm "${vm.name}": cloud-init seed: ${why}`, { cause: err, hint: 'install genisoimage (share/setup does)' });
    }
    renameSync(join(work, 'seed.iso'), seedPath(ctx.stateDir, id));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return fds.pass(fds.own(openSync(seedPath(ctx.stateDir, id), fsc.O_RDONLY)));
}

/** Removes VM `id`'s seed: called when the VM is forgotten. */
export function seedRemove(stateDir: string, id: number): void {
  rmSync(seedPath(stateDir, id), { force: true });
}

/** The user's user-data file, read through a descriptor opened as the requester; bounded, as it goes into root's state. */
function userDataRead(vmName: string, path: string, who: FsIdentity): Buffer {
  const { fd, stat } = userFileOpen(path, { vm: vmName, role: 'user-data', who, code: 'ERR_INVALID' });
  try {
    if (stat.size > MAX_USER_DATA) {
      throw new VmdError('ERR_INVALID', `vm "${vmName}": user-data ${path}: larger than ${MAX_USER_DATA >> 10} KiB`);
    }
    const buf = Buffer.alloc(MAX_USER_DATA + 1);
    let n = 0;
    for (;;) {
      const r = readSync(fd, buf, n, buf.length - n, n);
      if (r === 0 || (n += r) >= buf.length) break;
    }
    if (n > MAX_USER_DATA) throw new VmdError('ERR_INVALID', `vm "${vmName}": user-data ${path}: larger than ${MAX_USER_DATA >> 10} KiB`);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}
