// The vmm role: owns each running guest's lifecycle over QMP, keeps its console buffered, notices when it dies.
// Unprivileged: it never opens images or touches the network; the parent spawns QEMU and tells vmm to adopt it.
//
// Its parts live in vmd/vmm/: the guest table (guests.ts), the QMP lifecycle (lifecycle.ts), consoles
// (console.ts), `vmctl send` and `receive` (send.ts, receive.ts) and the parent's messages (dispatch.ts).

import type { Socket } from 'node:net';
import { toVmdError } from '../share/errors.js';
import { isParentToVmm, type ParentToVmm, type VmmToParent } from '../share/ipc.js';
import { logWarn } from './log.js';
import { roleMain } from './proc.js';
import { vmmDispatchParent } from './vmm/dispatch.js';
import { MetricsServer } from './vmm/metrics.js';
import { guestsRelease, guestsWatchPids, vmmCreate } from './vmm/guests.js';

/** Runs the vmm role until the parent goes away; guests keep running when it does. */
export function vmmMain(): void {
  // Messages go out through roleMain's sender, which exists once the role is listening to the parent.
  const vmm = vmmCreate((msg) => send(msg));
  const send = roleMain<ParentToVmm, VmmToParent>(
    isParentToVmm,
    (msg, handle) => {
      vmmDispatchParent(vmm, msg, handle as Socket | undefined).catch((err: unknown) => logWarn(`${msg.type}: ${toVmdError(err).message}`));
    },
    () => guestsRelease(vmm),
  );
  vmm.metrics = new MetricsServer(vmm);
  guestsWatchPids(vmm);
  send({ type: 'vmm.ready' });
}
