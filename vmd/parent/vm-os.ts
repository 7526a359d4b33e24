// The real-OS fields of a VmConfig made without vm.conf: firmware and cloud-init from `vmctl start` options,
// and what an instance inherits of them. Pure, beside vm-config.ts which calls it.

import type { CloudInitConfig, FirmwareKind, VmConfig } from '../../share/config.js';
import type { StartOptions } from '../../share/protocol.js';

type OsFields = { firmware?: FirmwareKind; secureBoot?: boolean; cloudInit?: CloudInitConfig };

/** `--firmware`, `--secure-boot` (which implies uefi), `--user`/`--ssh-key`: only the fields that were given. */
export function osFromOptions(o: StartOptions): OsFields {
  const out: OsFields = {};
  if (o.firmware !== undefined || o.secureBoot === true) out.firmware = o.secureBoot === true ? 'uefi' : o.firmware;
  if (o.secureBoot === true) out.secureBoot = true;
  if (o.cloudInit !== undefined) {
    out.cloudInit = { hostname: o.cloudInit.hostname ?? null, user: o.cloudInit.user ?? null, sshKeys: o.cloudInit.sshKeys ?? [], userData: null };
  }
  return out;
}

/** Whether start options set any of these fields: an instance needs `allow instance boot` for them. */
export function osOptionsGiven(o: StartOptions): boolean {
  return o.firmware !== undefined || o.secureBoot !== undefined || o.cloudInit !== undefined;
}

/** An instance's fields: its own where set, else its parent's (the firmware as one, Secure Boot follows it). */
export function osInherit(parent: VmConfig, child: VmConfig): OsFields {
  const out: OsFields = {};
  const fw = child.firmware !== undefined && child.firmware !== null ? child : parent;
  if (fw.firmware !== undefined && fw.firmware !== null) out.firmware = fw.firmware;
  if (fw.secureBoot === true) out.secureBoot = true;
  const ci = child.cloudInit ?? parent.cloudInit;
  if (ci !== undefined && ci !== null) out.cloudInit = ci;
  return out;
}
