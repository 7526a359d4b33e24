// Which running guest holds an image a starting guest needs, told before QEMU's image locks refuse it.
// Files are compared by device and inode through each QEMU's own descriptors, so backing chains, other paths to
// the same file and guests re-adopted after a vmd restart all count.

import { fstatSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { VmdError } from '../../share/errors.js';

/** One file of a starting guest's disks: the top image (written) or a backing file (read). */
export interface ImageLayer {
  /** The parent's descriptor of the opened file. */
  readonly hostFd: number;
  readonly path: string;
  /** The disk (top image) the layer belongs to. */
  readonly disk: string;
  readonly writable: boolean;
}

/** A running guest: its name and its QEMU's pid. */
export interface RunningGuest {
  readonly name: string;
  readonly pid: number;
}

interface OpenFile {
  readonly path: string;
  readonly writable: boolean;
}

/** O_ACCMODE of a descriptor's flags in /proc/PID/fdinfo (octal): O_WRONLY 1 or O_RDWR 2 write. */
const O_ACCMODE = 3;

/**
 * The regular files a process has open, keyed `dev:ino`, and whether any of its descriptors writes them.
 * PRIV: reads another user's QEMU descriptor table; a process that is gone meanwhile has no files.
 */
export function openFilesOf(pid: number): Map<string, OpenFile> {
  const out = new Map<string, OpenFile>();
  let names: string[];
  try {
    names = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return out;
  }
  for (const n of names) {
    try {
      const st = statSync(`/proc/${pid}/fd/${n}`);
      if (!st.isFile()) continue;
      const info = readFileSync(`/proc/${pid}/fdinfo/${n}`, 'utf8');
      const flags = parseInt(/^flags:\s*([0-7]+)/m.exec(info)?.[1] ?? '0', 8);
      const key = `${st.dev}:${st.ino}`;
      const writable = (flags & O_ACCMODE) !== 0 || (out.get(key)?.writable ?? false);
      out.set(key, { path: readlinkSync(`/proc/${pid}/fd/${n}`), writable });
    } catch {
      // Closed between the listing and the look: not held.
    }
  }
  return out;
}

/**
 * Refuses a start whose images another running guest holds in a way QEMU's locks would refuse: two guests may
 * read the same base, but neither may write what the other has open. The message names both guests' files.
 */
export function diskHoldersCheck(vm: string, layers: readonly ImageLayer[], running: readonly RunningGuest[]): void {
  const ids = layers.map((l) => {
    const st = fstatSync(l.hostFd);
    return `${st.dev}:${st.ino}`;
  });
  for (const other of running) {
    const files = openFilesOf(other.pid);
    layers.forEach((l, i) => {
      const held = files.get(ids[i]!);
      if (held === undefined || (!l.writable && !held.writable)) return;
      let why: string;
      let hint = `stop vm "${other.name}" first`;
      if (l.writable && held.writable) {
        why = `disk ${l.path}: in use by vm "${other.name}"`;
        hint = 'give each guest its own disk, e.g. an overlay: vmctl create -b BASE NEW.qcow2';
      } else if (l.writable) {
        why = `disk ${l.path}: vm "${other.name}" reads it (${held.path}) as a backing file, which must not change`;
      } else {
        why = `disk ${l.disk}: its backing file ${l.path} is in use by vm "${other.name}" (${held.path}), which writes it`;
      }
      throw new VmdError('ERR_DISK_LOCKED', `vm "${vm}": ${why}`, { hint });
    });
  }
}
