// The VM id a received guest gets: the one it had on the sending host when that is free here, since its local
// interfaces' /31s and its fixed leases on dhcp switches are derived from the id and the guest keeps its addresses.

import type { VmConfig } from '../../share/config.js';
import { VmdError } from '../../share/errors.js';
import type { Parent } from './context.js';

/**
 * Claims the id for a received guest. A stream without an id (an older sender) gets the next free one, as any new
 * VM. When the sender's id is taken here, a guest with id-derived addresses is refused before anything is made
 * (its packets would be dropped as spoofed on its new link); others get a new id, their MACs travel with them.
 */
export function receiveIdClaim(p: Parent, vm: VmConfig, sent: number | undefined): number {
  if (sent === undefined) return p.db.vmClaimId(vm.name);
  const holder = p.vms.lookup(String(sent));
  if (holder === undefined && p.db.vmClaimIdAs(vm.name, sent)) return sent;
  const bound = vm.interfaces.filter((n) => n.local || (n.switch !== null && switchGivesLease(p, n.switch)));
  if (bound.length === 0) return p.db.vmClaimId(vm.name);
  throw new VmdError('ERR_VM_EXISTS', `vm "${vm.name}": receive: vm id ${sent} is taken here${holder === undefined ? '' : ` by vm "${holder.record.name}"`}, `
    + `and the addresses of interface ${bound.map((n) => n.index).join(', ')} derive from it`, {
    hint: `receive it on a host where vm id ${sent} is free, or remove vm "${holder?.record.name ?? sent}" first`,
  });
}

/** A switch here on which vmd gives each guest a fixed lease from its VM id. */
function switchGivesLease(p: Parent, name: string): boolean {
  return p.config.switches.some((s) => s.enabled && s.name === name && s.dhcp && s.address !== null);
}
