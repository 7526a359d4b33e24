// Who may act on a VM (OpenBSD's vm_checkperm) and how its owner is shown; users and groups from share/users.ts.
// The uid and gid come from control, which learnt them from the kernel (SO_PEERCRED), never from the client.

import { systemUserDb, type UserDb } from '../../share/users.js';
import type { VmRecord, VmRuntime } from '../db.js';

/** The user's primary and supplementary groups, plus the gid it connected with. */
export function groupsOf(uid: number, gid: number): number[] {
  const users = systemUserDb();
  const user = users.getpwuid(uid);
  const gids = new Set<number>([gid]);
  if (user !== null) {
    gids.add(user.gid);
    for (const g of users.memberGids(user.name)) gids.add(g);
  }
  return [...gids];
}

/** OpenBSD's owner column: `user[:group]`, numeric when unknown, at most 15 characters. */
export function ownerString(uid: number, gid: number | null, users: UserDb = systemUserDb()): string {
  const user = users.getpwuid(uid)?.name ?? String(uid);
  const group = gid === null ? '' : `:${users.getgrgid(gid)?.name ?? String(gid)}`;
  return `${user}${group}`.slice(0, 15);
}

/** OpenBSD's vm_checkperm: root, the starter of a running VM, the VM's owner, or a member of its owner group. */
export function vmPermitted(vm: { record: VmRecord; runtime: VmRuntime | null }, uid: number, gid: number): boolean {
  if (uid === 0) return true;
  // The starter of a running VM (OpenBSD's vm_uid) and, unlike OpenBSD, always its configured owner.
  if (vm.runtime !== null && vm.runtime.uid === uid) return true;
  if (vm.record.ownerUid === uid && vm.record.ownerUid !== 0) return true;
  const og = vm.record.ownerGid;
  return og !== null && (gid === og || groupsOf(uid, gid).includes(og));
}
