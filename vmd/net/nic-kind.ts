// Which kind of NIC an interface block becomes: a tap vmd makes (root), a passt (vm.conf's passt interfaces, and
// a rootless vmd's plain NICs when passt is installed) or QEMU's user-mode network; pure, with its refusals.

import type { InterfaceConfig, SwitchConfig } from '../../share/config.js';
import { VmdError } from '../../share/errors.js';
import { forwardSwitchCheck } from './plan.js';

export type NicKind = 'tap' | 'passt' | 'user';

/**
 * The kind of `nic` of VM `vm`, whose switch (if it names one) resolved to `sw`; throws what a start must refuse:
 * switches and local interfaces without root, an unknown switch, a forward with nowhere to go.
 */
export function nicKindOf(vm: string, nic: InterfaceConfig, sw: SwitchConfig | undefined, root: boolean, passtInstalled: () => boolean): NicKind {
  // passt needs no root: vm.conf's passt interfaces, and a rootless vmd's plain NICs when it is installed.
  if (nic.passt != null || (!root && nic.switch === null && !nic.local && passtInstalled())) return 'passt';
  if (!root) {
    if (nic.switch !== null || nic.local) {
      throw new VmdError('ERR_UNSUPPORTED', `vm "${vm}": interface ${nic.index}: ${nic.local ? 'local interfaces' : `switch "${nic.switch}"`} need vmd to run as root`, {
        hint: 'run vmd as root, or drop the switch/local option to use user-mode NAT',
      });
    }
    return 'user';
  }
  if (nic.switch !== null && sw === undefined) {
    throw new VmdError('ERR_INVALID', `vm "${vm}": interface ${nic.index}: switch "${nic.switch}" not found`);
  }
  // Neither a switch nor local: a tap connected to nothing, as OpenBSD makes it; a forward has nowhere to go.
  if (sw === undefined && !nic.local && nic.forwards.length > 0) {
    throw new VmdError('ERR_INVALID', `vm "${vm}": interface ${nic.index}: forward needs a local interface or a switch`, {
      hint: 'make it a local interface (vmctl start -L), or attach it to a switch with address, dhcp and nat',
    });
  }
  if (sw !== undefined && !nic.local && nic.forwards.length > 0) forwardSwitchCheck(vm, nic, sw);
  return 'tap';
}
