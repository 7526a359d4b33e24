// Requests that show what vmd keeps about one VM without touching the guest: its QEMU log, its effective config.
// Owners see their own VMs, root all (vmPermittedGet), as for console and firewall.

import type { Owner } from '../../share/config.js';
import { inspectText } from '../../share/config-text.js';
import type { ControlRequest } from '../../share/protocol.js';
import { systemUserDb } from '../../share/users.js';
import type { Parent } from './context.js';
import { qemuLogLines } from './qemu-log.js';
import type { Entry } from './registry.js';
import { respond, vmPermittedGet, type Asker } from './requests.js';

type Req<T extends ControlRequest['type']> = Extract<ControlRequest, { type: T }>;

/** `vmctl log VM`: QEMU's own lines from this and the previous starts (a failed start's are kept too). */
export function vmQemuLogRequest(p: Parent, who: Asker, req: Req<'vm.log.request'>): void {
  const e = vmPermittedGet(p, req.target, who, 'log');
  respond(p, who.peer, { type: 'vm.log.response', id: req.id, vmId: e.record.id, name: e.record.name, lines: qemuLogLines(p.env.stateDir, e.record.id) });
}

/** Who owns the VM as vm.conf would say it, by name where the name service knows it: its block's owner, or for VMs
 * made at run time the user who made them. */
function ownerOf(e: Entry): Owner | null {
  const { config: vm, origin, ownerUid, ownerGid } = e.record;
  const o: Owner | null = vm.owner ?? (origin === 'config' ? null : { uid: ownerUid, gid: ownerGid, user: null, group: null });
  if (o === null) return null;
  const users = systemUserDb();
  // `:group` alone (uid 0, no user) stays a group owner.
  const userless = o.user === null && o.uid === 0 && (o.group !== null || o.gid !== null) && vm.owner !== null;
  return {
    ...o,
    user: o.user ?? (userless ? null : users.getpwuid(o.uid)?.name ?? null),
    group: o.group ?? (o.gid === null ? null : users.getgrgid(o.gid)?.name ?? null),
  };
}

/** `vmctl inspect VM`: the configuration it runs with, instances and command-line VMs included, as vm.conf text. */
export function vmInspectRequest(p: Parent, who: Asker, req: Req<'vm.inspect.request'>): void {
  const e = vmPermittedGet(p, req.target, who, 'inspect');
  const config = e.record.config;
  const text = inspectText(config, p.config.switches, ownerOf(e));
  respond(p, who.peer, {
    type: 'vm.inspect.response', id: req.id, vmId: e.record.id, name: e.record.name, text,
    config: config as unknown as Readonly<Record<string, unknown>>,
  });
}
