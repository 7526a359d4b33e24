// A migration's source asks the parent for its guest's firewall counters (vmm cannot read nftables): one question
// per guest at a time, answered by vm.counters.data, and never worth holding the paused guest for long.

import type { ParentToVmm } from '../../share/ipc.js';
import type { CarriedCount } from '../../share/migrate-counters.js';
import { logWarn } from '../log.js';
import type { Guest, Vmm } from './guests.js';

/** The guest waits paused for this at most: one nft listing takes milliseconds; without an answer it moves uncounted. */
const COUNTERS_TIMEOUT_MS = 2000;

/** The parent's reading of the guest's counters, or none when it does not answer in time. */
export function countersAsk(vmm: Vmm, g: Guest): Promise<readonly CarriedCount[]> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      g.countersWaiter = null;
      logWarn(`vm "${g.handle.name}": migrate: no firewall counters from the parent within ${COUNTERS_TIMEOUT_MS} ms; they start from zero at the target`);
      resolve([]);
    }, COUNTERS_TIMEOUT_MS);
    g.countersWaiter = (counters) => {
      clearTimeout(timer);
      g.countersWaiter = null;
      resolve(counters);
    };
    vmm.send({ type: 'vm.counters.request', vmId: g.vmId });
  });
}

/** The parent's answer; one for a question no longer asked (timed out, guest gone) is dropped. */
export function countersAnswered(vmm: Vmm, msg: Extract<ParentToVmm, { type: 'vm.counters.data' }>): void {
  vmm.guests.get(msg.vmId)?.countersWaiter?.(msg.counters);
}
