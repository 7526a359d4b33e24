// Start-up checks that the directories vmd works in are usable by whoever must use them, so a bad path fails vmd
// at start naming the directory, instead of the first guest start failing with EACCES on a QMP socket.

import { closeSync, constants as fsc, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { errnoMessage } from '../../share/errno.js';
import { VmdError } from '../../share/errors.js';
import { MAX_SOCKET_PATH_BYTES, socketPathTooLong } from '../../share/paths.js';
import { openAsRequester } from '../user-files.js';
import type { ParentEnv } from './env.js';

/** The name the control socket is bound under before it is renamed into place (roles.ts): 16 bytes at most. */
export function socketTempPath(sockPath: string): string {
  return join(dirname(sockPath), `.vmd-${process.pid}.tmp`);
}

/** Node binds a unix socket path longer than an address holds under a name cut short: refuse it, naming it. */
function socketLengthCheck(sockPath: string): void {
  const tmp = socketTempPath(sockPath);
  const long = [sockPath, tmp].find(socketPathTooLong);
  if (long === undefined) return;
  const also = long === tmp ? ', and vmd binds a temporary name of up to 16 bytes beside it' : '';
  throw new VmdError('ERR_INVALID', `socket ${sockPath}: ${errnoMessage({ code: 'ENAMETOOLONG' })}`, {
    hint: `a unix socket path holds at most ${MAX_SOCKET_PATH_BYTES} bytes${also}: set VMD_SOCKET to a shorter one`,
  });
}

/**
 * QEMU (as `_vmd` under root) creates its QMP and console sockets in `<state>/run/ID`, so it must be able to
 * search every directory down to the run root; the socket's directory must exist for the parent to bind in it.
 */
// PRIV: opens the run root with the unprivileged user's credentials (openAs), which only root can take.
export function directoriesCheck(env: ParentEnv, user: string): void {
  socketLengthCheck(env.sockPath);
  const sockDir = dirname(env.sockPath);
  try {
    if (!statSync(sockDir).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
  } catch (err) {
    throw new VmdError('ERR_INVALID', `socket directory ${sockDir}: ${(err as NodeJS.ErrnoException).code ?? 'unusable'}`, {
      hint: 'create it, or set VMD_SOCKET to a path in an existing directory', cause: err,
    });
  }
  const who = env.qemuIdentity;
  try {
    closeSync(openAsRequester(env.runRoot, fsc.O_RDONLY | fsc.O_DIRECTORY, { uid: who.uid, gid: who.gid, groups: [who.gid] }));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EACCES';
    throw new VmdError('ERR_PERMISSION', `state directory ${env.stateDir}: ${user} cannot reach ${env.runRoot} (${code})`, {
      hint: `every directory above it needs search permission for ${user} (e.g. chmod o+x), or set VMD_STATE_DIR elsewhere`,
      cause: err,
    });
  }
}
