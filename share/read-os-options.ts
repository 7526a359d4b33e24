// Reader of the real-OS options of a vm.start.request: the firmware and the cloud-init settings.
// Kept beside read-request.ts's readStartOptions, which calls it; the same rules as vm.conf's (share/cloud-init.ts).

import { hostnameError, MAX_SSH_KEY, MAX_SSH_KEYS, sshKeyError, userError } from './cloud-init.js';
import { ProtocolError, type StartOptions } from './protocol.js';
import { array, bool, isObj, oneOf, onlyKeys, optStr, type Obj } from './read.js';

/** The start option keys this reader owns. */
export const OS_START_KEYS = ['firmware', 'secureBoot', 'cloudInit'] as const;

/** Reads `firmware`, `secureBoot` and `cloudInit` of start options `v` into `out`. */
export function readOsStartOptions(v: Obj, out: { -readonly [K in keyof StartOptions]: StartOptions[K] }, what: string): void {
  if (v.firmware !== undefined) out.firmware = oneOf(v, 'firmware', ['bios', 'uefi'] as const, what);
  if (v.secureBoot !== undefined) out.secureBoot = bool(v, 'secureBoot', what);
  if (v.cloudInit === undefined) return;
  const c = v.cloudInit;
  const w = `${what} cloudInit`;
  if (!isObj(c)) throw new ProtocolError(`${w}: must be an object`);
  onlyKeys(c, ['hostname', 'user', 'sshKeys'], w);
  const hostname = optStr(c, 'hostname', 253, w);
  if (hostname !== undefined && hostnameError(hostname) !== null) throw new ProtocolError(`${w}: invalid hostname: ${hostnameError(hostname)}`);
  const user = optStr(c, 'user', 32, w);
  if (user !== undefined && userError(user) !== null) throw new ProtocolError(`${w}: invalid user: ${userError(user)}`);
  const keys = (array(c, 'sshKeys', MAX_SSH_KEYS, w) ?? []).map((k) => {
    const why = typeof k === 'string' ? sshKeyError(k) : `must be strings of at most ${MAX_SSH_KEY} characters`;
    if (why !== null) throw new ProtocolError(`${w}: sshKeys entry: ${why}`);
    return k as string;
  });
  out.cloudInit = {
    ...(hostname !== undefined ? { hostname } : {}),
    ...(user !== undefined ? { user } : {}),
    ...(keys.length > 0 ? { sshKeys: keys } : {}),
  };
}
