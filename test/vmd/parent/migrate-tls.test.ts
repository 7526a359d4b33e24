// vmd/parent/migrate-tls.ts: a migration's key on disk is QEMU's user's alone, in a fresh directory per migration,
// readable by that user and by no other; removing it (or sweeping at start) leaves nothing, links not followed.

import t from 'tap';
import { execa } from 'execa';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { migrateKeyRemove, migrateKeysSweep, migrateKeyWrite } from '../../../vmd/parent/migrate-tls.js';
import type { Parent } from '../../../vmd/parent/context.js';

const QEMU = { uid: 65534, gid: 65534 };
/** Another unprivileged user: a local user, not QEMU's. */
const OTHER = { uid: 4243, gid: 4243 };
const KEY = 'a1'.repeat(32);

function fixture(t: { teardown: (fn: () => void) => void }): { p: Parent; run: string } {
  const run = mkdtempSync(join(tmpdir(), 'vmd-mig-tls-'));
  chmodSync(run, 0o755);
  t.teardown(() => rmSync(run, { recursive: true, force: true }));
  return { p: { env: { runRoot: run, root: true, qemuIdentity: QEMU } } as unknown as Parent, run };
}

/** Whether `who` can read `file` (cat run as that user). */
async function readableBy(who: { uid: number; gid: number }, file: string): Promise<boolean> {
  const r = await execa('cat', [file], { uid: who.uid, gid: who.gid, reject: false });
  return r.exitCode === 0 && String(r.stdout).includes(KEY);
}

t.test('the key file is QEMU\'s user\'s, 0400 in a 0700 directory, readable by it and by no other user', async (t) => {
  const { p } = fixture(t);
  const dir = migrateKeyWrite(p, 7, KEY);
  const file = join(dir, 'keys.psk');
  t.equal(readFileSync(file, 'utf8'), `vmd:${KEY}\n`, 'QEMU\'s keys.psk format: identity:hexkey');
  t.same([statSync(file).uid, statSync(file).mode & 0o777], [QEMU.uid, 0o400], 'the file');
  t.same([statSync(dir).uid, statSync(dir).mode & 0o777], [QEMU.uid, 0o700], 'its directory');
  t.same([statSync(dirname(dir)).uid, statSync(dirname(dir)).mode & 0o777], [0, 0o711], 'the directory above is root\'s, searchable only');
  t.equal(await readableBy(QEMU, file), true, 'QEMU\'s user reads it');
  t.equal(await readableBy(OTHER, file), false, 'another user does not');
  t.equal((await execa('ls', [dirname(dir)], { uid: QEMU.uid, gid: QEMU.gid, reject: false })).exitCode, 2, 'QEMU\'s user cannot list the other migrations\' directories');
  migrateKeyRemove(dir);
  t.equal(existsSync(dir), false, 'removed, with the key');
});

t.test('each migration has its own directory; removing one leaves the other', async (t) => {
  const { p } = fixture(t);
  const one = migrateKeyWrite(p, 3, KEY);
  const two = migrateKeyWrite(p, 3, 'b2'.repeat(32));
  t.not(one, two);
  migrateKeyRemove(one);
  t.equal(readFileSync(join(two, 'keys.psk'), 'utf8'), `vmd:${'b2'.repeat(32)}\n`);
});

t.test('removing a directory QEMU\'s user filled with links removes the links, not their targets', async (t) => {
  const { p, run } = fixture(t);
  const dir = migrateKeyWrite(p, 1, KEY);
  const victim = join(run, 'victim');
  mkdirSync(victim);
  writeFileSync(join(victim, 'precious'), 'x');
  symlinkSync(victim, join(dir, 'link'));
  migrateKeyRemove(dir);
  t.equal(existsSync(dir), false);
  t.same(readdirSync(victim), ['precious'], 'the link\'s target is untouched');
});

t.test('at start, keys a dead vmd left behind are swept', async (t) => {
  const { p, run } = fixture(t);
  const dir = migrateKeyWrite(p, 1, KEY);
  migrateKeysSweep(run);
  t.equal(existsSync(dir), false, 'gone');
  t.equal(existsSync(dirname(dir)), false, 'the whole key area');
  migrateKeysSweep(run);
  t.ok(existsSync(migrateKeyWrite(p, 2, KEY)), 'and made again on the next migration');
});
