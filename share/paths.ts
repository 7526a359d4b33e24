// Well-known paths of vmd and vmctl, with the environment overrides tests and parallel daemons rely on.
// VMD_SOCKET and VMD_STATE_DIR apply to vmd and vmctl alike.

import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const DEFAULT_CONFIG = '/etc/vm.conf';
export const DEFAULT_SOCKET = '/run/vmd.sock';
export const DEFAULT_STATE_DIR = '/var/lib/vmd';
export const DEFAULT_USER = '_vmd';

/** The control socket vmd listens on and vmctl connects to. */
export function socketPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.VMD_SOCKET && env.VMD_SOCKET.length > 0 ? resolve(env.VMD_SOCKET) : DEFAULT_SOCKET;
}

/**
 * The longest unix socket path vmd and vmctl use, in bytes: sockaddr_un's 108 less the terminating NUL, less one
 * more, as vmd's addon counts. Node's own net silently cuts a longer path short, and then binds or connects to
 * another name: both sides refuse one instead.
 */
export const MAX_SOCKET_PATH_BYTES = 106;

/** Whether a socket path is longer than a unix socket address holds. */
export function socketPathTooLong(path: string): boolean {
  return Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES;
}

/** Directory with the SQLite state and the guests' runtime sockets. */
export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.VMD_STATE_DIR && env.VMD_STATE_DIR.length > 0 ? resolve(env.VMD_STATE_DIR) : DEFAULT_STATE_DIR;
}

/** Directory of the user's own nftables files included into vmd's `table inet vmd` (VMD_NFT_DIR overrides it). */
export const DEFAULT_NFT_DIR = '/etc/vmd/nft.d';

export function nftIncludeDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.VMD_NFT_DIR && env.VMD_NFT_DIR.length > 0 ? resolve(env.VMD_NFT_DIR) : DEFAULT_NFT_DIR;
}

/** The unprivileged user the vmm and control roles and QEMU run as. */
export function vmdUser(env: NodeJS.ProcessEnv = process.env): string {
  return env.VMD_USER && env.VMD_USER.length > 0 ? env.VMD_USER : DEFAULT_USER;
}

/** The checkout (or installed package) root: dist/share/paths.js is two levels below it. */
export const packageRoot: string = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Compiled entry points, for re-executing roles and for tests. */
export const vmdEntry: string = join(packageRoot, 'dist', 'vmd', 'vmd.js');
/** vmctl as installed and run: the bundle share/build.mjs makes of dist/vmctl/vmctl.js (same directory depth). */
export const vmctlEntry: string = join(packageRoot, 'dist', 'vmctl', 'vmctl.cjs');
