// `vmctl migrate --copy-storage` at the target: empty images of each disk's format and size, made at the source's
// paths as the requester (never over an existing file), and removed again if the migration does not complete.

import { closeSync, constants as fsc, ftruncateSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import type { VmConfig } from '../../share/config.js';
import { VmdError } from '../../share/errors.js';
import { asRequester, fsIdentityOf, openAsRequester, runWithFd, type FsIdentity } from '../user-files.js';

/** qemu-img writes a qcow2 header and tables only: quick even for a large virtual size. */
const QEMU_IMG_TIMEOUT_MS = 60_000;

/** The first line of a tool's complaint, without its own prefix. */
function firstLine(stderr: string, fallback: string): string {
  return stderr.split('\n').find((l) => l.trim().length > 0)?.replace(/^(qemu-img|dd): /, '') ?? fallback;
}

/**
 * Creates each disk of `vm` with its size from `sizes` (config order); returns the paths made, for the undo. A
 * file already at a path is refused, naming it. A qcow2 disk becomes one standalone image: the source's mirror
 * (sync=full) copies the whole backing chain into it, flattened.
 */
export async function copyImagesCreate(vm: VmConfig, sizes: readonly number[], who: FsIdentity): Promise<string[]> {
  if (sizes.length !== vm.disks.length) {
    throw new VmdError('ERR_INVALID', `vm "${vm.name}": copy-storage: ${sizes.length} disk sizes for ${vm.disks.length} disks`);
  }
  const made: string[] = [];
  try {
    for (const [i, d] of vm.disks.entries()) {
      await imageCreate(vm.name, d.path, d.format, sizes[i] as number, who);
      made.push(d.path);
    }
  } catch (err) {
    await copyImagesRemove(made, who);
    throw err;
  }
  return made;
}

/** One empty image: made exclusively by dd as the requester (the kernel decides, O_EXCL refuses any file there). */
async function imageCreate(vm: string, path: string, format: 'raw' | 'qcow2', size: number, who: FsIdentity): Promise<void> {
  // PRIV: the file is made by a process running as the requester, in a directory the requester may write.
  const dd = asRequester(['dd', 'if=/dev/null', `of=${path}`, 'conv=excl', 'status=none'], who);
  const made = await execa(dd[0] as string, dd.slice(1), { reject: false, stdin: 'ignore', env: { LC_ALL: 'C' } });
  if (made.exitCode !== 0) {
    const exists = /File exists/.test(String(made.stderr));
    throw new VmdError(exists ? 'ERR_INVALID' : 'ERR_DISK_MISSING', `vm "${vm}": copy-storage: disk ${path}: ${exists ? 'already exists on the target' : firstLine(String(made.stderr), 'cannot create')}`,
      exists ? { hint: 'remove it there, or migrate without --copy-storage if it is shared storage' } : undefined);
  }
  let fd: number;
  try {
    fd = openAsRequester(path, fsc.O_RDWR | fsc.O_NONBLOCK, who);
  } catch (err) {
    await copyImagesRemove([path], who);
    throw new VmdError('ERR_DISK_MISSING', `vm "${vm}": copy-storage: disk ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    if (format === 'raw') {
      ftruncateSync(fd, size);
      return;
    }
    const r = await runWithFd(asRequester(['qemu-img', 'create', '-q', '-f', 'qcow2', '/proc/self/fd/3', String(size)], who), fd, QEMU_IMG_TIMEOUT_MS);
    if (r.exitCode !== 0) throw new VmdError('ERR_QEMU', `vm "${vm}": copy-storage: disk ${path}: qemu-img: ${firstLine(r.stderr, `exit ${r.exitCode}`)}`);
  } catch (err) {
    await copyImagesRemove([path], who);
    throw err;
  } finally {
    closeSync(fd);
  }
}

/** Removes images a failed migration made, as the requester (the path is theirs to change meanwhile). */
export async function copyImagesRemove(paths: readonly string[], who: FsIdentity): Promise<void> {
  for (const path of paths) {
    const argv = asRequester(['rm', '-f', '--', path], who);
    await execa(argv[0] as string, argv.slice(1), { reject: false, stdin: 'ignore' });
  }
}

/** The record of a receive's made images in its run directory (root's): a vmd that dies mid-way removes them when it restarts. */
const RECORD = 'copied-disks.json';

/** Notes the images a receive made, and for whom, until the receive ends. */
export function copyImagesRecord(runDir: string, uid: number, paths: readonly string[]): void {
  if (paths.length > 0) writeFileSync(join(runDir, RECORD), JSON.stringify({ uid, paths }), { mode: 0o600 });
}

/** The receive succeeded: the images are the guest's now. */
export function copyImagesKeep(runDir: string): void {
  rmSync(join(runDir, RECORD), { force: true });
}

/** The record a receive left, or null; root wrote it in root's run directory. */
function recordRead(runDir: string): { uid: number; paths: string[] } | null {
  try {
    return JSON.parse(readFileSync(join(runDir, RECORD), 'utf8')) as { uid: number; paths: string[] };
  } catch {
    return null;
  }
}

/** The images a receive recorded as made by it (none: an empty list). */
export function copyImagesRecorded(runDir: string): string[] {
  return recordRead(runDir)?.paths ?? [];
}

/**
 * At restart, for a receive the daemon died in whose QEMU was still receiving (so the guest never ran there):
 * removes the images it had made.
 */
export async function copyImagesRecovered(runDir: string): Promise<void> {
  const rec = recordRead(runDir);
  if (rec !== null) await copyImagesRemove(rec.paths, fsIdentityOf(rec.uid));
}
