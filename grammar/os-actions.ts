// The actions of a vm block's real-OS options: `firmware bios|uefi [secure-boot]` and `cloud-init { … }`.
// `vmd -n` refuses here what could never start: a missing OVMF build, bad hostnames, users and keys.

import { existsSync } from 'node:fs';
import { hostnameError, MAX_SSH_KEYS, sshKeyError, userError } from '../share/cloud-init.js';
import type { CloudInitConfig, FirmwareKind } from '../share/config.js';
import { ovmfFiles } from '../share/firmware.js';
import { CONTROL_CHARS } from '../share/names.js';
import type { ActionBase } from './action-base.js';
import type { VmOpt } from './ast.js';

/** What the two options set on a vm while its block is read. */
export interface OsDraft {
  firmware: FirmwareKind | null;
  secureBoot: boolean;
  cloudInit: CloudInitConfig | null;
}

/** `firmware bios|uefi [secure-boot]`: once per vm; UEFI needs Debian's ovmf files (the Secure Boot build for it). */
export function vmFirmware(a: ActionBase, vm: OsDraft, o: VmOpt & { kind: 'firmware' }): void {
  const la = o.end;
  if (vm.firmware !== null) a.fail(o.value, 'firmware specified more than once', la);
  const kind = a.text(o.value);
  if (kind !== 'bios' && kind !== 'uefi') a.fail(o.value, `invalid firmware: ${kind}`, la);
  const flags = o.flags.map((t) => a.text(t));
  for (const f of flags) if (f !== 'secure-boot') a.fail(o.value, `invalid firmware option: ${f}`, la);
  const secureBoot = flags.length > 0;
  if (secureBoot && kind !== 'uefi') a.fail(o.value, 'secure-boot needs firmware uefi', la);
  if (kind === 'uefi') {
    const files = ovmfFiles(secureBoot);
    for (const f of [files.code, files.vars]) {
      if (!existsSync(f)) a.fail(o.value, `firmware ${kind}${secureBoot ? ' secure-boot' : ''}: ${f}: No such file or directory (install the ovmf package)`, la);
    }
  }
  vm.firmware = kind;
  vm.secureBoot = secureBoot;
}

/** `cloud-init [{ hostname NAME, user NAME, ssh-key "KEY", user-data PATH }]`: once per vm, keys repeatable. */
export function vmCloudInit(a: ActionBase, vm: OsDraft, o: VmOpt & { kind: 'cloudInit' }): void {
  const la = o.end;
  if (vm.cloudInit !== null) a.fail(o.start, 'cloud-init specified more than once', la);
  let hostname: string | null = null;
  let user: string | null = null;
  let userData: string | null = null;
  const sshKeys: string[] = [];
  for (const item of o.items) {
    const key = a.text(item.key);
    const value = a.concat(item.value);
    const once = (was: string | null): void => {
      if (was !== null) a.fail(item.key, `cloud-init ${key} specified more than once`, la);
    };
    switch (key) {
      case 'hostname': {
        once(hostname);
        const why = hostnameError(value);
        if (why !== null) a.fail(item.key, `cloud-init hostname ${JSON.stringify(value)}: ${why}`, la);
        hostname = value;
        break;
      }
      case 'user': {
        once(user);
        const why = userError(value);
        if (why !== null) a.fail(item.key, `cloud-init user ${JSON.stringify(value)}: ${why}`, la);
        user = value;
        break;
      }
      case 'ssh-key': {
        const why = sshKeyError(value);
        if (why !== null) a.fail(item.key, `cloud-init ssh-key: ${why}`, la);
        if (sshKeys.length >= MAX_SSH_KEYS) a.fail(item.key, `cloud-init: more than ${MAX_SSH_KEYS} ssh keys`, la);
        sshKeys.push(value);
        break;
      }
      case 'user-data': {
        once(userData);
        const p = a.realpath(value);
        if (p.error !== null) a.fail(item.key, `cloud-init user-data path not found: ${p.error}`, la);
        if (CONTROL_CHARS.test(p.path)) a.fail(item.key, `cloud-init user-data path contains control characters: ${JSON.stringify(p.path)}`, la);
        userData = p.path;
        break;
      }
      default:
        a.fail(item.key, `invalid cloud-init option: ${key}`, la);
    }
  }
  if (userData !== null && (user !== null || sshKeys.length > 0)) {
    a.fail(o.start, 'cloud-init: user-data is used as written: put the user and ssh keys in it, not beside it', la);
  }
  vm.cloudInit = { hostname, user, sshKeys, userData };
}

/** The fields a VmConfig gets from these options: only those that were set, so other configs stay as they were. */
export function osFields(vm: OsDraft): { firmware?: FirmwareKind; secureBoot?: boolean; cloudInit?: CloudInitConfig } {
  return {
    ...(vm.firmware !== null ? { firmware: vm.firmware } : {}),
    ...(vm.secureBoot ? { secureBoot: true } : {}),
    ...(vm.cloudInit !== null ? { cloudInit: vm.cloudInit } : {}),
  };
}
