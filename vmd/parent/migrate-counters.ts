// Firewall and forward counters that move with a migrated guest: the source reads them once its guest is paused for
// good, vmctl carries them with its commit, and the target adds them to what its own links counted (vmd/net/carry.ts).

import type { CarriedCount } from '../../share/migrate-counters.js';
import { toVmdError } from '../../share/errors.js';
import { carriedSeed, countsRead } from '../net/carry.js';
import { logDebug, logWarn } from '../log.js';
import type { Parent } from './context.js';
import type { Entry } from './registry.js';

/** The namespaces a VM's counters may live in: those of its links, and the host's (where local forwards are). */
function countSpaces(p: Parent, e: Entry): Set<string | null> {
  const spaces = new Set<string | null>([null]);
  for (const nic of e.record.config.interfaces) {
    const l = p.network.linkOf(e.record.id, nic.index);
    if (l !== null) spaces.add(l.netns);
  }
  return spaces;
}

/** At the source, vmm's vm.counters.request: the guest's counters now; none (it moves uncounted) when unreadable. */
export async function countsAnswer(p: Parent, vmId: number): Promise<void> {
  const e = p.vms.entries.get(vmId);
  let counters: CarriedCount[] = [];
  // Only a guest being migrated, and only where vmd has tables (as root): vmm asks nothing else.
  if (e !== undefined && p.transfers.has(vmId) && p.env.root) {
    counters = await countsRead(countSpaces(p, e), e.record.name).catch((err: unknown) => {
      logWarn(`vm "${e.record.name}": migrate: firewall counters: ${toVmdError(err).message}; they start from zero at the target`);
      return [];
    });
  }
  p.roles.vmm?.send({ type: 'vm.counters.data', vmId, counters });
}

/**
 * At the target, the counters vmctl's commit brought (read by share/migrate-counters.ts): added, never replacing, to
 * those of the VM being received, which its links may have counted since it resumed. Its reply does not wait: the
 * guest runs already, and vmctl's time until the target resumed it should not hold the nft run.
 */
export function countsCarry(p: Parent, vmId: number, counters: readonly CarriedCount[]): void {
  const e = p.vms.entries.get(vmId);
  if (e === undefined || !p.transfers.has(vmId)) {
    logWarn(`vm ${vmId}: migrated firewall counters for a VM not being received: ignored`);
    return;
  }
  const name = e.record.name;
  void p.network.sync(new Set(), { spaces: countSpaces(p, e), seed: carriedSeed(name, counters) }).then(
    () => logDebug(`vm "${name}": ${counters.length} firewall counters carried over from the source`),
    (err: unknown) => logWarn(`vm "${name}": migrated firewall counters: ${toVmdError(err).message}`),
  );
}
