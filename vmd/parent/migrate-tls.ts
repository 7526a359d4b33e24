// A live migration's TLS pre-shared key on disk: QEMU's tls-creds-psk reads it only from `DIR/keys.psk`, so the
// parent writes vmctl's fresh key into a directory of its own for the one migration, and removes it when it ends.

import { chmodSync, chownSync, closeSync, constants as fsc, fchownSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { MIGRATE_TLS_USER } from '../../share/migrate.js';
import type { Parent } from './context.js';

/** Where the key directories live: root's, so no one else can rename or replace one while the parent fills it. */
const KEYS_DIR = 'migrate-keys';

/**
 * Writes `key` (already read as 64 hex digits) as `DIR/keys.psk` in a fresh directory and returns DIR. The
 * directory is made and filled while it is root's and 0700, then given to QEMU's user (0700, the file 0400): the
 * guest's QEMU reads it by path, as QEMU's other processes of that user could; nothing else on the host can.
 */
export function migrateKeyWrite(p: Parent, vmId: number, key: string): string {
  const base = join(p.env.runRoot, KEYS_DIR);
  mkdirSync(base, { recursive: true, mode: 0o711 });
  // PRIV: root's directory, searchable (not listable) by QEMU's user, which needs to reach the one below.
  chmodSync(base, 0o711);
  const dir = mkdtempSync(join(base, `${vmId}-`));
  try {
    const fd = openSync(join(dir, 'keys.psk'), fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o400);
    try {
      writeSync(fd, `${MIGRATE_TLS_USER}:${key}\n`);
      // PRIV: only QEMU's user may read the key; root gives the file away before the directory, never after.
      if (p.env.root) fchownSync(fd, p.env.qemuIdentity.uid, p.env.qemuIdentity.gid);
    } finally {
      closeSync(fd);
    }
    if (p.env.root) chownSync(dir, p.env.qemuIdentity.uid, p.env.qemuIdentity.gid);
  } catch (err) {
    migrateKeyRemove(dir);
    throw err;
  }
  return dir;
}

/** The migration ended, either way: no key of it stays on disk. */
export function migrateKeyRemove(dir: string): void {
  // rm does not follow links: whatever QEMU's user put in its directory goes, and nothing outside it.
  rmSync(dir, { recursive: true, force: true });
}

/** At start: keys a vmd that died mid-migration left behind (their migrations died with it). */
export function migrateKeysSweep(runRoot: string): void {
  rmSync(join(runRoot, KEYS_DIR), { recursive: true, force: true });
}
