// Files a requester names for a guest (disks, their backing files, kernel, initrd, cdrom), opened with the
// requester's own credentials so the kernel decides, checked on the descriptor, and qcow2 headers read unprivileged.

import { closeSync, constants as fsc, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { dirname } from 'node:path';
import { spawn } from 'node:child_process';
import type { DiskFormat } from '../share/config.js';
import { QCOW2_MAGIC } from '../share/diskformat.js';
import { errnoMessage } from '../share/errno.js';
import { VmdError, type ErrorCode } from '../share/errors.js';
import { systemUserDb, type UserDb } from '../share/users.js';
import { openAs, type FsIdentity } from './native.js';

export type { FsIdentity };

/** What a file is to the guest; it names the file in messages: `vm "x": disk base /p: permission denied`. */
export type FileRole = 'disk' | 'disk base' | 'cdrom' | 'kernel' | 'initrd' | 'user-data';

/** Whom a file is opened for and how its failures read. */
export interface FileRequest {
  readonly vm: string;
  readonly role: FileRole;
  readonly who: FsIdentity;
  /** The code of an open failure (ERR_DISK_MISSING, ERR_CDROM_MISSING, …). */
  readonly code: ErrorCode;
  /** The code for a file of the wrong type; `code` when absent. */
  readonly invalidCode?: ErrorCode;
  readonly write?: boolean;
}

/** A backing file or the top image: its descriptor (the caller closes it), format and the path it was opened by. */
export interface OpenedLayer {
  readonly fd: number;
  readonly format: DiskFormat;
  readonly path: string;
}

/** A disk and its complete backing chain, nearest first: every element opened as the requester. */
export interface OpenedDisk extends OpenedLayer {
  readonly backing: readonly OpenedLayer[];
}

/** qemu-img's view of one image header: the backing file it names, if any, and that file's format. */
export interface ImageHeader {
  readonly backing: { readonly name: string; readonly format: string | null } | null;
}

/** Reads one image header; diskOpenAs defaults to qemuImgHeader, qemu-img running as the requester. */
export type HeaderReader = (fd: number, format: DiskFormat, who: FsIdentity) => Promise<ImageHeader>;

/** The deepest backing chain followed; deeper is refused, never left for QEMU to open by path. */
export const MAX_BACKING_DEPTH = 16;

// An error with an errno-style code; codes outside the errno table (EFTYPE, BSD's "wrong file type", ECHAIN,
// EQEMUIMG) are worded by their message.
function fileError(code: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code });
}

/**
 * A requester's filesystem identity from the user database: its uid, primary gid and every group it is a member
 * of. An unknown uid gets the overflow gid (65534) and no groups: nothing a real group was granted.
 */
export function fsIdentityOf(uid: number, users: UserDb = systemUserDb()): FsIdentity {
  const user = users.getpwuid(uid);
  if (user === null) return { uid, gid: 65534, groups: [] };
  const groups = new Set<number>([user.gid, ...users.memberGids(user.name)]);
  return { uid, gid: user.gid, groups: [...groups] };
}

/**
 * open(2) as `who`: with a root daemon through openAs (fsuid/fsgid/groups of the requester); an unprivileged
 * daemon has nobody else's credentials to take, so it opens only for its own uid.
 */
export function openAsRequester(path: string, flags: number, who: FsIdentity): number {
  const euid = process.geteuid?.() ?? 0;
  if (euid === 0) return openAs(path, flags, who);
  if (who.uid !== euid) throw fileError('EPERM', `open as uid ${who.uid}: this vmd runs as uid ${euid}`);
  return openSync(path, flags | fsc.O_NOCTTY);
}

/** Refuses a descriptor a guest must not get: anything but a regular file, or a block device for a root requester. */
export function checkOpened(fd: number, who: FsIdentity, regularOnly: boolean): Stats {
  const st = fstatSync(fd);
  if (st.isFile()) return st;
  if (st.isDirectory()) throw fileError('EISDIR', 'is a directory');
  if (st.isBlockDevice() && !regularOnly) {
    if (who.uid === 0) return st;
    throw fileError('EFTYPE', 'block device: only root may give one to a guest');
  }
  throw fileError('EFTYPE', 'not a regular file');
}

/** The VmdError for a failed file: `vm "x": disk /p: permission denied`, with the system error kept as cause. */
export function userFileError(req: FileRequest, path: string, err: unknown): VmdError {
  const code = (err as NodeJS.ErrnoException).code === 'EFTYPE' ? (req.invalidCode ?? req.code) : req.code;
  return new VmdError(code, `vm "${req.vm}": ${req.role} ${path}: ${errnoMessage(err)}`, { cause: err });
}

/** Opens a file named for a guest as its requester and checks what was opened; the caller closes the fd. */
export function userFileOpen(path: string, req: FileRequest): { fd: number; stat: Stats } {
  let fd: number;
  try {
    fd = openAsRequester(path, (req.write === true ? fsc.O_RDWR : fsc.O_RDONLY) | fsc.O_NONBLOCK, req.who);
  } catch (err) {
    throw userFileError(req, path, err);
  }
  try {
    // Only disks may be block devices (root's); a cdrom, kernel or initrd is always a regular file.
    return { fd, stat: checkOpened(fd, req.who, req.role !== 'disk' && req.role !== 'disk base') };
  } catch (err) {
    closeSync(fd);
    throw userFileError(req, path, err);
  }
}

/** Whether `who` (QEMU's user) could open the file behind fd itself: QEMU reads -kernel by /proc/self/fd/N. */
export function reopenableBy(fd: number, who: FsIdentity): boolean {
  try {
    closeSync(openAsRequester(`/proc/self/fd/${fd}`, fsc.O_RDONLY | fsc.O_NONBLOCK, who));
    return true;
  } catch {
    return false;
  }
}

/**
 * Where QEMU looks for a backing file an image names: as written when absolute, else next to the image, by
 * string (QEMU's path_combine keeps the image's own path, symlinks unresolved). Protocol names are refused.
 */
export function backingPathOf(imagePath: string, name: string): string {
  if (name.startsWith('/')) return name;
  // path_has_protocol: a ':' before any '/' makes QEMU read `json:{…}`, `nbd:…` and the like, not a file.
  const colon = name.indexOf(':');
  if (colon >= 0 && (name.indexOf('/') < 0 || colon < name.indexOf('/'))) {
    throw fileError('EFTYPE', `backing file "${name}" is not a local file`);
  }
  return `${dirname(imagePath)}/${name}`;
}

/**
 * A disk and its whole backing chain, each file opened as the requester (the top one read-write) and each qcow2
 * header read unprivileged; every descriptor is closed again when any step fails.
 */
export async function diskOpenAs(
  vm: string, disk: { readonly path: string; readonly format: DiskFormat }, who: FsIdentity,
  readHeader: HeaderReader = qemuImgHeader,
): Promise<OpenedDisk> {
  const top = userFileOpen(disk.path, { vm, role: 'disk', who, code: 'ERR_DISK_MISSING', write: true });
  const backing: OpenedLayer[] = [];
  try {
    const seen = new Set<string>([`${top.stat.dev}:${top.stat.ino}`]);
    let layer: OpenedLayer = { fd: top.fd, format: disk.format, path: disk.path };
    while (layer.format === 'qcow2') {
      const next = await backingOf(vm, layer, backing.length === 0 ? 'disk' : 'disk base', who, readHeader);
      if (next === null) break;
      const req: FileRequest = { vm, role: 'disk base', who, code: 'ERR_DISK_MISSING' };
      if (backing.length >= MAX_BACKING_DEPTH) {
        throw userFileError(req, next.path, fileError('ECHAIN', `backing chain deeper than ${MAX_BACKING_DEPTH}`));
      }
      const opened = userFileOpen(next.path, req);
      backing.push({ fd: opened.fd, format: next.format, path: next.path });
      const key = `${opened.stat.dev}:${opened.stat.ino}`;
      if (seen.has(key)) {
        throw userFileError(req, next.path, fileError('ECHAIN', 'backing chain loops back to an image above'));
      }
      seen.add(key);
      layer = backing[backing.length - 1]!;
    }
  } catch (err) {
    for (const fd of [top.fd, ...backing.map((b) => b.fd)]) closeSync(fd);
    throw err;
  }
  return { fd: top.fd, format: disk.format, path: disk.path, backing };
}

// The file a qcow2 layer's header names below it, resolved and with a format vmd can hand to QEMU, or null.
async function backingOf(
  vm: string, layer: OpenedLayer, role: FileRole, who: FsIdentity, readHeader: HeaderReader,
): Promise<{ path: string; format: DiskFormat } | null> {
  let header: ImageHeader;
  try {
    header = await readHeader(layer.fd, layer.format, who);
  } catch (err) {
    throw new VmdError('ERR_DISK_MISSING', `vm "${vm}": ${role} ${layer.path}: ${errnoMessage(err)}`, { cause: err });
  }
  if (header.backing === null) return null;
  const req: FileRequest = { vm, role: 'disk base', who, code: 'ERR_DISK_MISSING' };
  let path: string;
  try {
    path = backingPathOf(layer.path, header.backing.name);
  } catch (err) {
    throw userFileError({ ...req, role }, layer.path, err);
  }
  // No format in the header means QEMU would probe it; vmd never probes and treats it as raw, as before.
  const format = header.backing.format ?? 'raw';
  if (format !== 'raw' && format !== 'qcow2') {
    throw userFileError(req, path, fileError('EFTYPE', `format ${format}: only raw and qcow2 are supported`));
  }
  return { path, format };
}

/**
 * `qemu-img info` on one inherited descriptor, as the requester (setpriv: its uid, gid and groups, no new
 * privileges), never as root for another user; without --backing-chain, so it opens nothing but that image.
 */
export async function qemuImgHeader(fd: number, format: DiskFormat, who: FsIdentity): Promise<ImageHeader> {
  // -U: a running guest's image holds QEMU's write lock; reading the header needs none.
  const info = ['qemu-img', 'info', '-U', '-f', format, '--output=json', '/proc/self/fd/3'];
  const r = await runWithFd(asRequester(info, who), fd);
  if (r.exitCode !== 0) {
    const first = r.stderr.split('\n').find((l) => l.trim().length > 0);
    const why = first?.replace(/^qemu-img: (\/proc\/self\/fd\/3: )?/, '') ?? `exit ${r.exitCode}`;
    throw fileError('EQEMUIMG', `qemu-img: ${why}`);
  }
  return readImageInfo(r.stdout);
}

/** argv run as the requester (setpriv: its uid, gid and groups, no new privileges) when vmd is root and they are not. */
export function asRequester(argv: readonly string[], who: FsIdentity): string[] {
  const euid = process.geteuid?.() ?? 0;
  // PRIV: a root daemon drops to the requester for qemu-img; root's own requests (vm.conf, autostart) stay root.
  return euid === 0 && who.uid !== 0
    ? ['setpriv', `--reuid=${who.uid}`, `--regid=${who.gid}`,
      ...(who.groups.length > 0 ? [`--groups=${who.groups.join(',')}`] : ['--clear-groups']),
      '--no-new-privs', '--inh-caps=-all', '--', ...argv]
    : [...argv];
}

/** Runs argv with fd as its fd 3, output bounded to 1 MiB and time to `timeoutMs` (execa cannot map an arbitrary fd to 3). */
export function runWithFd(argv: readonly string[], fd: number, timeoutMs = 10_000): Promise<{ exitCode: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), {
      stdio: ['ignore', 'pipe', 'pipe', fd], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' },
      cwd: '/', timeout: timeoutMs, killSignal: 'SIGKILL',
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let size = 0;
    const collect = (into: Buffer[]) => (c: Buffer): void => {
      size += c.length;
      if (size > 1024 * 1024) child.kill('SIGKILL');
      else into.push(c);
    };
    child.stdout!.on('data', collect(out));
    child.stderr!.on('data', collect(err));
    child.once('error', reject);
    child.once('close', (code) => resolve({
      exitCode: size > 1024 * 1024 ? null : code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(),
    }));
  });
}

/** Reads qemu-img's JSON for one image, field by field: what the requester's image says is not trusted. */
export function readImageInfo(text: string): ImageHeader {
  let info: unknown;
  try {
    info = JSON.parse(text);
  } catch (err) {
    throw fileError('EQEMUIMG', `qemu-img: unreadable output: ${(err as Error).message}`);
  }
  if (typeof info !== 'object' || info === null || Array.isArray(info)) {
    throw fileError('EQEMUIMG', 'qemu-img: output is not an object');
  }
  const o = info as Record<string, unknown>;
  const name = o['backing-filename'];
  const format = o['backing-filename-format'];
  if (name === undefined) return { backing: null };
  // qcow2 limits the name to 1023 bytes; PATH_MAX bounds what vmd would ever open.
  if (typeof name !== 'string' || name.length === 0 || name.length > 4095 || name.includes('\0')) {
    throw fileError('EQEMUIMG', 'qemu-img: bad backing file name');
  }
  if (format !== undefined && (typeof format !== 'string' || !/^[a-z0-9_-]{1,32}$/.test(format))) {
    throw fileError('EQEMUIMG', 'qemu-img: bad backing file format');
  }
  return { backing: { name, format: format ?? null } };
}

/**
 * parse_disktype() for a path a requester named without a format: the qcow2 signature read through a descriptor
 * opened as the requester (never by root, and never blocking on a FIFO), else the extension.
 */
export function diskFormatAs(path: string, who: FsIdentity): DiskFormat {
  const byName: DiskFormat = /\.qcow2$/i.test(path) ? 'qcow2' : 'raw';
  let fd: number;
  try {
    fd = openAsRequester(path, fsc.O_RDONLY | fsc.O_NONBLOCK, who);
  } catch {
    return byName; // the start reports why it cannot be opened
  }
  try {
    if (!fstatSync(fd).isFile()) return byName;
    const buf = Buffer.alloc(4);
    return readSync(fd, buf, 0, 4, 0) === 4 && buf.equals(QCOW2_MAGIC) ? 'qcow2' : byName;
  } catch {
    return byName;
  } finally {
    closeSync(fd);
  }
}
