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

/** Who owns the VM as vm.conf would say it: its block's owner, or for VMs made at run time the user who made them. */
function ownerOf(e: Entry): Owner | null {
  const vm = e.record.config;
  if (vm.owner !== null || e.record.origin === 'config') return vm.owner;
  const users = systemUserDb();
  const { ownerUid: uid, ownerGid: gid } = e.record;
  return { uid, gid, user: users.getpwuid(uid)?.name ?? null, group: gid === null ? null : users.getgrgid(gid)?.name ?? null };
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
