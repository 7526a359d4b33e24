// Typed access to vmd's own native addon (vmd/native/*.c): what Node cannot do by itself.
// Peer credentials come from the kernel (SO_PEERCRED), never from the client; taps and images reach QEMU as fds.

import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { packageRoot } from '../share/paths.js';
import { VmdError } from '../share/errors.js';

/** Who is at the other end of a unix socket, as the kernel recorded it at connect() time. */
export interface PeerCred {
  /** For logs only: 0 when the peer is in another pid namespace, and pids are reused; authorise on uid. */
  readonly pid: number;
  /** The peer's effective uid at connect(); 65534 (overflow uid) if it is unmapped in our user namespace. */
  readonly uid: number;
  readonly gid: number;
}

/** How tunOpen sets up the tap; owner/group are uids/gids allowed to attach to it later (always set owner). */
export interface TunOptions {
  /** IFF_VNET_HDR: QEMU's virtio-net offloads need it (`-netdev tap,fd=N,vnet_hdr=on`). */
  readonly vnetHdr: boolean;
  /** true: the tap outlives the fd (TUNSETPERSIST 1); false: clear persistence; absent: leave as is. */
  readonly persist?: boolean;
  readonly owner?: number;
  readonly group?: number;
}

/** An fd attached to a tap and the name the kernel actually gave it (it picks tapN for an empty name). */
export interface TunHandle {
  readonly fd: number;
  readonly name: string;
}

interface NativeAddon {
  peerCred(fd: number): PeerCred;
  undumpable(): void;
  tunOpen(name: string, options: TunOptions): TunHandle;
  closeFd(fd: number): void;
  openAs(path: string, flags: number, uid: number, gid: number, groups: readonly number[]): number;
  dgramSend(path: string, data: Buffer): void;
  linkSet(nsPath: string | null, settings: LinkSettings): void;
  nftAvailable(): boolean;
  nftRun(nsPath: string | null, script: string, flags: number): Promise<NftRunResult>;
  nftRelease(): void;
}

/** What an nft run through libnftables printed, and its status (0: done; anything else: nft refused). */
export interface NftRunResult {
  readonly rc: number;
  readonly out: string;
  readonly err: string;
}

/** nftRun's flags: `-j` (JSON output) and `-c` (check only, change nothing). */
export const NFT_RUN_JSON = 1;
export const NFT_RUN_CHECK = 2;
/** nftRun's flag for a run in vmd's own namespace that keeps its context for the next (see nft.c). */
export const NFT_RUN_KEEP = 4;

/** What linkSet changes on one link; absent fields stay as they are. */
export interface LinkSettings {
  readonly name: string;
  readonly alias?: string;
  readonly mtu?: number;
  /** The bridge to attach to; '' detaches (`nomaster`). */
  readonly master?: string;
  readonly up?: boolean;
  /** A namespace file (/run/netns/NAME) to move the link into; nothing else is changed then. */
  readonly moveTo?: string;
}

/** The filesystem identity a file is opened with: a requester's uid, primary gid and supplementary groups. */
export interface FsIdentity {
  readonly uid: number;
  readonly gid: number;
  readonly groups: readonly number[];
}

/** Where the build (share/build.mjs → node-gyp) leaves the addon, relative to the package root. */
export const NATIVE_ADDON_PATH: string = join(packageRoot, 'vmd', 'native', 'build', 'Release', 'vmd_native.node');

let addon: NativeAddon | undefined;

// Loaded on first use, so modules that import this one (and vmctl) still start where the addon is not built.
function native(): NativeAddon {
  if (addon !== undefined) return addon;
  const require = createRequire(import.meta.url);
  try {
    addon = require(NATIVE_ADDON_PATH) as NativeAddon;
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND';
    throw new VmdError(
      'ERR_INTERNAL',
      missing ? 'native addon not built: run npm run build' : `native addon failed to load: ${(err as Error).message}`,
      { hint: missing ? `expected ${NATIVE_ADDON_PATH}` : 'rebuild it: rm -rf vmd/native/build && npm run build', cause: err },
    );
  }
  return addon;
}

// A system-style error for bad sockets, so callers check `err.code` the same way as for the addon's own errors.
function badSocket(message: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`EBADF: ${message}`);
  err.code = 'EBADF';
  err.errno = -9;
  err.syscall = 'getsockopt';
  return err;
}

/** The kernel's record of a connected unix socket's peer: the control role authorises on this uid alone. */
export function peerCred(socket: Socket): PeerCred {
  // net.Socket has no public fd accessor; its libuv handle (a Pipe for unix sockets) carries the fd.
  const handle = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle;
  const fd = handle?.fd;
  if (socket.destroyed || handle == null) throw badSocket('peerCred: socket is closed');
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) throw badSocket('peerCred: socket has no file descriptor');
  return native().peerCred(fd);
}

/** A tap on an fd that QEMU inherits (`-netdev tap,fd=N`), so QEMU itself needs no access to /dev/net/tun. */
// PRIV: opens /dev/net/tun (mode 0600) and creates taps (CAP_NET_ADMIN); only the root parent calls it.
export function tunOpen(name: string, options: TunOptions): TunHandle {
  return native().tunOpen(name, options);
}

/** Releases an fd from tunOpen once the spawned QEMU holds its own copy (Node does not track these fds). */
export function closeFd(fd: number): void {
  native().closeFd(fd);
}

/**
 * open(2) as `who` (O_CLOEXEC and O_NOCTTY added): the kernel checks search permission, ACLs, symlinks and
 * mode bits for that user, so root never opens a file the requester could not. Errors carry `code` (EACCES…).
 */
// PRIV: switches the calling thread's fsuid/fsgid/groups (CAP_SETUID, CAP_SETGID); only the root parent calls it.
export function openAs(path: string, flags: number, who: FsIdentity): number {
  return native().openAs(path, flags, who.uid, who.gid, who.groups);
}

/** Makes this process undumpable: not traceable, its /proc memory closed to its own user (QEMU's, for the roles). */
export function processUndumpable(): void {
  native().undumpable();
}

/** One datagram to a unix datagram socket (syslog's /dev/log); throws EAGAIN rather than wait for a stalled reader. */
export function dgramSend(path: string, data: Buffer): void {
  native().dgramSend(path, data);
}

/**
 * A link's settings over rtnetlink in the namespace at `nsPath` (null: vmd's own), as `ip link set` makes them but
 * without an ip(8) process per guest start. Errors carry `code` (ENODEV, EINVAL…) and ip's words for the failure.
 */
// PRIV: changing links needs CAP_NET_ADMIN, entering a namespace CAP_SYS_ADMIN; only the root parent calls it.
export function linkSet(nsPath: string | null, settings: LinkSettings): void {
  native().linkSet(nsPath, settings);
}

/** Whether libnftables opens in this process, so nft runs need no nft process (nftRun); false where it is missing. */
export function nftAvailable(): boolean {
  try {
    return native().nftAvailable();
  } catch {
    return false;
  }
}

/**
 * An nft run in the namespace at `nsPath` (null: vmd's own) through libnftables, as `nft [-j] [-c] -f -` runs the
 * script; rejects only when the run could not start (the namespace cannot be entered), with `code` set.
 */
// PRIV: changing nftables needs CAP_NET_ADMIN, entering a namespace CAP_SYS_ADMIN; only the root parent calls it.
export function nftRun(nsPath: string | null, script: string, flags: number): Promise<NftRunResult> {
  return native().nftRun(nsPath, script, flags);
}

/** Frees the libnftables context nftRun keeps for vmd's own namespace, and the memory its cache held. */
export function nftRelease(): void {
  native().nftRelease();
}
