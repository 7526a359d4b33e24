// `vmctl grow` of a disk a running guest holds: the parent finds the guest, checks who asks, and has vmm grow the
// drive over QMP (QEMU holds the image locked, so qemu-img cannot; vmctl grows a stopped guest's disk itself).

import { closeSync, constants as fsc, realpathSync } from 'node:fs';
import { VmdError } from '../../share/errors.js';
import type { ControlRequest } from '../../share/protocol.js';
import { fsIdentityOf, openAsRequester } from '../user-files.js';
import type { Parent } from './context.js';
import { vmPermitted } from './access.js';
import { respond, type Asker } from './requests.js';
import type { Entry } from './registry.js';

/** block_resize writes a few metadata clusters (qcow2) or truncates (raw): quick, but the vmm may be busy. */
const GROW_TIMEOUT_MS = 60_000;

/** The running guest whose configuration names `disk` (as written, or the file it resolves to), and the disk's index. */
function holderOf(p: Parent, disk: string): { e: Entry; index: number } | null {
  for (const e of p.vms.entries.values()) {
    if (e.runtime === null) continue;
    const index = e.record.config.disks.findIndex((d) => {
      if (d.path === disk) return true;
      try { return realpathSync(d.path) === disk; } catch { return false; }
    });
    if (index >= 0) return { e, index };
  }
  return null;
}

/** `vmctl grow -s SIZE DISK` when DISK is locked: the guest's owner or root, who may also write the file, grows it. */
export async function vmGrowRequest(p: Parent, who: Asker, req: Extract<ControlRequest, { type: 'vm.grow.request' }>): Promise<void> {
  const found = holderOf(p, req.disk);
  if (found === null) {
    throw new VmdError('ERR_VM_NOT_FOUND', `grow: ${req.disk}: no running vm uses it`, { hint: 'another program holds its lock: stop it first' });
  }
  const { e, index } = found;
  const name = e.record.name;
  if (!vmPermitted(e, who.uid, who.gid)) throw new VmdError('ERR_PERMISSION', `vm "${name}": grow: permission denied`);
  if (e.state !== 'running' && e.state !== 'paused') throw new VmdError('ERR_VM_NOT_RUNNING', `vm "${name}": grow: the vm is ${e.state}`);
  // The requester must be able to write the file itself, as a stopped guest's grow (qemu-img as the caller) needs.
  const path = e.record.config.disks[index]!.path;
  try {
    closeSync(openAsRequester(path, fsc.O_RDWR | fsc.O_NONBLOCK, fsIdentityOf(who.uid)));
  } catch (err) {
    throw new VmdError('ERR_PERMISSION', `vm "${name}": grow: disk ${path}: ${(err as Error).message}`, { cause: err });
  }
  await p.roles.vmmCall((r) => ({ type: 'vm.grow', req: r, vmId: e.record.id, disk: index, size: req.size }), { forVm: e.record.id, timeoutMs: GROW_TIMEOUT_MS });
  respond(p, who.peer, { type: 'vm.grow.response', id: req.id, vmId: e.record.id, name, disk: path, size: req.size });
}
