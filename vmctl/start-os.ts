// `vmctl start`'s real-OS options: the firmware and a cloud-init seed's user and SSH keys.
// The key file is read here, as the caller, so vmd only ever gets the keys' text, never a path to open.

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { MAX_SSH_KEYS, sshKeyError, userError } from '../share/cloud-init.js';
import type { StartOptions } from '../share/protocol.js';
import { CliError, sysMessage } from './errors.js';

export const OS_START_OPTIONS = ['--firmware <type>', '--secure-boot', '--user <name>', '--ssh-key <file>'] as const;

/** The real-OS options seen so far. */
export interface OsFlags {
  firmware: 'bios' | 'uefi' | undefined;
  secureBoot: boolean;
  user: string | undefined;
  readonly sshKeys: string[];
}

export function osFlagsEmpty(): OsFlags {
  return { firmware: undefined, secureBoot: false, user: undefined, sshKeys: [] };
}

/** One option into `flags`; false when the option is not one of these. */
export function readOsStartOption(flags: OsFlags, name: string, v: string, cwd: string): boolean {
  switch (name) {
    case 'firmware':
      if (flags.firmware !== undefined) throw new CliError('firmware specified multiple times');
      if (v !== 'bios' && v !== 'uefi') throw new CliError(`unknown firmware ${v}: bios or uefi`);
      flags.firmware = v;
      return true;
    case 'secure-boot':
      flags.secureBoot = true;
      return true;
    case 'user': {
      if (flags.user !== undefined) throw new CliError('user specified multiple times');
      const why = userError(v);
      if (why !== null) throw new CliError(`invalid user ${v}: ${why}`);
      flags.user = v;
      return true;
    }
    case 'ssh-key':
      flags.sshKeys.push(...sshKeysRead(resolve(cwd, v)));
      if (flags.sshKeys.length > MAX_SSH_KEYS) throw new CliError(`more than ${MAX_SSH_KEYS} ssh keys`);
      return true;
    default:
      return false;
  }
}

/** The request's fields for these options: only what was given. */
export function osStartOptions(flags: OsFlags): Pick<StartOptions, 'firmware' | 'secureBoot' | 'cloudInit'> {
  if (flags.secureBoot && flags.firmware === 'bios') throw new CliError('--secure-boot needs --firmware uefi');
  return {
    ...(flags.firmware !== undefined ? { firmware: flags.firmware } : {}),
    ...(flags.secureBoot ? { secureBoot: true } : {}),
    ...(flags.user !== undefined || flags.sshKeys.length > 0
      ? { cloudInit: { ...(flags.user !== undefined ? { user: flags.user } : {}), ...(flags.sshKeys.length > 0 ? { sshKeys: [...flags.sshKeys] } : {}) } }
      : {}),
  };
}

/** The public keys of an authorized_keys-style file (a .pub file is one): every non-empty, non-comment line. */
function sshKeysRead(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new CliError(sysMessage(`cannot open ssh key file '${path}'`, err));
  }
  const keys = text.split('\n').map((l) => l.trim()).filter((l) => l.length > 0 && !l.startsWith('#'));
  if (keys.length === 0) throw new CliError(`ssh key file '${path}': no key in it`);
  for (const k of keys) {
    const why = sshKeyError(k);
    if (why !== null) throw new CliError(`ssh key file '${path}': ${why}`);
  }
  return keys;
}
