// Requests that show what vmd keeps about one VM without touching the guest: its QEMU log, its effective config.
// Owners see their own VMs, root all (vmPermittedGet), as for console and firewall.

import type { ControlRequest } from '../../share/protocol.js';
import type { Parent } from './context.js';
import { qemuLogLines } from './qemu-log.js';
import { respond, vmPermittedGet, type Asker } from './requests.js';

type Req<T extends ControlRequest['type']> = Extract<ControlRequest, { type: T }>;

/** `vmctl log VM`: QEMU's own lines from this and the previous starts (a failed start's are kept too). */
export function vmQemuLogRequest(p: Parent, who: Asker, req: Req<'vm.log.request'>): void {
  const e = vmPermittedGet(p, req.target, who, 'log');
  respond(p, who.peer, { type: 'vm.log.response', id: req.id, vmId: e.record.id, name: e.record.name, lines: qemuLogLines(p.env.stateDir, e.record.id) });
}
