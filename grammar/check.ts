// Check passes over the built model: what OpenBSD's vmd only finds when it loads the file (vm_register and
// the switch lookup at VM start), reported by `vmd -n` too, with the line of the offending block.

import type { Config, SourceLocation } from '../share/config.js';
import { vmNameError } from '../share/names.js';
import type { Diagnostic } from './diagnostic.js';

function at(loc: SourceLocation, message: string): Diagnostic {
  return { severity: 'error', file: loc.file, line: loc.line, message };
}

function where(loc: SourceLocation): string {
  return `${loc.file}:${loc.line}`;
}

/** Names, duplicates, switch references and instance parents; returns the diagnostics in file order. */
export function checkConfig(config: Config): Diagnostic[] {
  const out: Diagnostic[] = [];
  const switches = new Map<string, SourceLocation>();
  for (const sw of config.switches) {
    const first = switches.get(sw.name);
    if (first !== undefined) out.push(at(sw.location, `duplicate switch "${sw.name}" (first defined at ${where(first)})`));
    else switches.set(sw.name, sw.location);
  }
  const vms = new Map<string, SourceLocation>();
  for (const vm of config.vms) {
    // vm_register(): only [A-Za-z0-9._-], not starting with `-`, `.` or `_` (a digit is fine).
    if (vmNameError(vm.name) !== null) out.push(at(vm.location, `invalid VM name: ${vm.name}`));
    const first = vms.get(vm.name);
    if (first !== undefined) out.push(at(vm.location, `duplicate vm "${vm.name}" (first defined at ${where(first)})`));
    if (vm.instanceOf !== null && !vms.has(vm.instanceOf)) {
      const later = config.vms.some((v) => v.name === vm.instanceOf);
      out.push(at(vm.location, later
        ? `vm "${vm.name}": parent vm "${vm.instanceOf}" must be defined before its instances`
        : `vm "${vm.name}": parent vm "${vm.instanceOf}" not found`));
    }
    if (first === undefined) vms.set(vm.name, vm.location);
    for (const nic of vm.interfaces) {
      if (nic.switch !== null && !switches.has(nic.switch)) out.push(at(nic.location, `switch "${nic.switch}" not found`));
      // A forward to a guest on a switch needs its fixed lease (address + dhcp) and the switch's NAT.
      const sw = nic.local || nic.switch === null ? undefined : config.switches.find((s) => s.name === nic.switch);
      const f = nic.forwards[0];
      if (sw !== undefined && f !== undefined) {
        const missing = [sw.address === null ? 'address' : null, sw.dhcp ? null : 'dhcp', sw.nat ? null : 'nat'].filter((m) => m !== null);
        if (missing.length > 0) out.push(at(f.location, `forward ${f.proto} ${f.hostPort}: switch "${sw.name}" has no ${missing.join(' and no ')}`));
      }
    }
  }
  return out;
}
