// Tests for vmd/user-files: files a requester names are opened with its own credentials, on real files and real
// users, including a symlink swapped in a tight loop while root opens it; and qcow2 chains read as the requester.

import t, { type Test } from 'tap';
import { chmodSync, chownSync, closeSync, fstatSync, lstatSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { hasQcow2Magic } from '../../share/diskformat.js';
import { getgrnam, getpwnam } from '../../share/users.js';
import { ensureUsers } from '../lib/users.js';
import {
  backingPathOf, diskFormatAs, diskOpenAs, fsIdentityOf, qemuImgHeader, readImageInfo, userFileOpen, type FsIdentity,
} from '../../vmd/user-files.js';

const isRoot = process.getuid?.() === 0;
const USERS = ['vmdfiles1', 'vmdfiles2'];
const GROUP = 'vmdfiles';

// A scratch directory anyone may search, removed afterwards.
function scratch(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-user-files-'));
  chmodSync(dir, 0o755);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// A file with content, owner and mode, in one step.
function put(path: string, mode: number, uid = 0, gid = 0, content = 'data'): string {
  writeFileSync(path, content);
  chownSync(path, uid, gid);
  chmodSync(path, mode);
  return path;
}

async function users(t: Test): Promise<{ u1: FsIdentity; u2: FsIdentity; group: number }> {
  t.teardown(await ensureUsers(USERS, GROUP));
  return { u1: fsIdentityOf(getpwnam('vmdfiles1')!.uid), u2: fsIdentityOf(getpwnam('vmdfiles2')!.uid), group: getgrnam(GROUP)!.gid };
}

const disk = (who: FsIdentity, write = true) => ({ vm: 'x', role: 'disk' as const, who, code: 'ERR_DISK_MISSING' as const, write });

t.test('the kernel decides with the requester\'s credentials', { skip: !isRoot && 'needs root' }, async (t) => {
  const { u1, u2, group } = await users(t);
  const dir = scratch(t);

  // World-writable image inside a 0700 directory of another user: mode bits alone would allow it.
  const private2 = join(dir, 'home2');
  mkdirSync(private2, { mode: 0o700 });
  chownSync(private2, u2.uid, u2.gid);
  const hidden = put(join(private2, 'disk.img'), 0o666, u2.uid, u2.gid);
  t.throws(() => userFileOpen(hidden, disk(u1)), { code: 'ERR_DISK_MISSING', message: `vm "x": disk ${hidden}: permission denied` });
  const own = userFileOpen(hidden, disk(u2));
  t.equal(own.stat.ino, statSync(hidden).ino, 'its owner opens it');
  closeSync(own.fd);

  // A symlink of the user's own pointing at a root-only file.
  const secret = put(join(dir, 'secret'), 0o600);
  const link = join(dir, 'link');
  symlinkSync(secret, link);
  t.throws(() => userFileOpen(link, disk(u1, false)), { message: `vm "x": disk ${link}: permission denied` });

  // Group membership counts (supplementary groups included), and write permission is checked for disks.
  const shared = put(join(dir, 'shared.img'), 0o640, 0, group);
  t.throws(() => userFileOpen(shared, disk(u1)), { message: /permission denied$/ }, 'read-only to the group: no read-write disk');
  const ro = userFileOpen(shared, disk(u1, false));
  closeSync(ro.fd);
  t.ok(u1.groups.includes(group), 'the user database lists the supplementary group');
  t.throws(() => userFileOpen(shared, disk({ ...u1, groups: [u1.gid] }, false)), { message: /permission denied$/ }, 'not without the group');
  t.throws(() => userFileOpen(join(dir, 'missing'), disk(u1)), { message: /: no such file$/ });
});

t.test('a symlink swapped while root opens it never yields the root-only file', { skip: !isRoot && 'needs root' }, async (t) => {
  const { u1 } = await users(t);
  const dir = scratch(t);
  const attacker = join(dir, 'attacker');
  mkdirSync(attacker, { mode: 0o755 });
  chownSync(attacker, u1.uid, u1.gid);
  const good = put(join(attacker, 'good.img'), 0o644, u1.uid, u1.gid);
  const secret = put(join(dir, 'secret'), 0o600);
  const secretIno = statSync(secret).ino;
  const link = join(attacker, 'disk.img');
  // The attacker's loop, as the attacker: rename() makes each swap atomic, so the link always exists.
  const swapper = execa(process.execPath, ['-e', `
    const fs = require('node:fs');
    const [good, secret, link] = process.argv.slice(1);
    for (let i = 0; ; i++) { fs.symlinkSync(i % 2 ? good : secret, link + '.new'); fs.renameSync(link + '.new', link); }
  `, good, secret, link], { uid: u1.uid, gid: u1.gid, reject: false });
  t.teardown(() => { swapper.kill('SIGKILL'); });
  // Wait until the link exists, then race; bounded, and only done once both outcomes were seen enough times.
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline && lstatSync(link, { throwIfNoEntry: false }) === undefined) {
    await new Promise((r) => setTimeout(r, 10));
  }
  let opened = 0, refused = 0, leaked = 0, tries = 0;
  while (tries < 20_000 && (tries < 300 || opened < 20 || refused < 20)) {
    tries++;
    try {
      const { fd } = userFileOpen(link, disk(u1, false));
      if (fstatSync(fd).ino === secretIno) leaked++;
      else opened++;
      closeSync(fd);
    } catch (err) {
      if ((err as Error).message !== `vm "x": disk ${link}: permission denied`) throw err;
      refused++;
    }
    // Let the swapper run between opens, as a real request path would.
    if (tries % 50 === 0) await new Promise((r) => setImmediate(r));
  }
  t.equal(leaked, 0, `root never opened the secret for the attacker (${tries} tries)`);
  t.ok(tries >= 300, 'at least 300 opens raced the swap');
  t.ok(opened >= 20 && refused >= 20, `the swap was live: ${opened} opened the good file, ${refused} refused`);
});

t.test('descriptors that are not regular files are refused', { skip: !isRoot && 'needs root' }, async (t) => {
  const { u1 } = await users(t);
  const dir = scratch(t);
  // A block device node the user may open by its mode: only the descriptor check stands in the way.
  const blk = join(dir, 'blk');
  await execa('mknod', ['-m', '0666', blk, 'b', '7', '0']);
  t.throws(() => userFileOpen(blk, disk(u1, false)), { code: 'ERR_DISK_MISSING', message: `vm "x": disk ${blk}: block device: only root may give one to a guest` });
  const mine = userFileOpen(blk, disk(fsIdentityOf(0), false));
  t.ok(fstatSync(mine.fd).isBlockDevice(), 'root may give a block device to a guest');
  closeSync(mine.fd);
  t.throws(() => userFileOpen(blk, { vm: 'x', role: 'cdrom', who: fsIdentityOf(0), code: 'ERR_CDROM_MISSING', invalidCode: 'ERR_CDROM_INVALID' }),
    { code: 'ERR_CDROM_INVALID', message: /cdrom .*: not a regular file$/ }, 'a cdrom is a regular file, even for root');
  t.throws(() => userFileOpen('/dev/null', disk(u1)), { message: 'vm "x": disk /dev/null: not a regular file' });
  t.throws(() => userFileOpen(dir, disk(u1, false)), { message: /: is a directory$/ });
  // A FIFO opens without blocking (O_NONBLOCK) and is refused.
  await execa('mkfifo', ['-m', '0666', join(dir, 'fifo')]);
  t.throws(() => userFileOpen(join(dir, 'fifo'), disk(u1, false)), { message: /fifo: not a regular file$/ });
  t.equal(diskFormatAs(join(dir, 'fifo'), u1), 'raw', 'format detection does not block on a FIFO');
  t.equal(hasQcow2Magic(join(dir, 'fifo')), false, 'nor does the vm.conf parser\'s');
});

// qemu-img images in dir: base (raw) and an overlay naming it as `name`.
async function overlay(dir: string, name: string, file = 'ov.qcow2'): Promise<string> {
  await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-u', '-b', name, '-F', 'raw', join(dir, file), '1M']);
  return join(dir, file);
}

t.test('qcow2 backing chains are opened as the requester', { skip: !isRoot && 'needs root' }, async (t) => {
  const { u1 } = await users(t);
  const dir = scratch(t);
  const base = put(join(dir, 'base.raw'), 0o600);
  await execa('truncate', ['-s', '1M', base]);
  const ov = await overlay(dir, 'base.raw');
  chownSync(ov, u1.uid, u1.gid);
  await t.rejects(diskOpenAs('x', { path: ov, format: 'qcow2' }, u1), { code: 'ERR_DISK_MISSING', message: `vm "x": disk base ${dir}/base.raw: permission denied` });

  chmodSync(base, 0o644);
  const opened = await diskOpenAs('x', { path: ov, format: 'qcow2' }, u1);
  t.match(opened, { format: 'qcow2', path: ov, backing: [{ format: 'raw', path: `${dir}/base.raw` }] });
  t.equal(fstatSync(opened.backing[0]!.fd).ino, statSync(base).ino, 'the relative name resolved next to the overlay');
  for (const fd of [opened.fd, ...opened.backing.map((b) => b.fd)]) closeSync(fd);

  // Through a symlink in another directory: QEMU resolves against the name it was given, not the target.
  const other = join(dir, 'other');
  mkdirSync(other, { mode: 0o755 });
  symlinkSync(ov, join(other, 'ov.qcow2'));
  await t.rejects(diskOpenAs('x', { path: join(other, 'ov.qcow2'), format: 'qcow2' }, u1), { message: `vm "x": disk base ${other}/base.raw: no such file` });

  // A header naming a protocol, and a chain that loops, are refused without opening anything by them.
  const proto = await overlay(dir, 'json:{"driver":"file","filename":"/etc/shadow"}', 'proto.qcow2');
  await t.rejects(diskOpenAs('x', { path: proto, format: 'qcow2' }, fsIdentityOf(0)), { message: /disk .*proto\.qcow2: backing file "json:.*" is not a local file$/ });
  await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-u', '-b', 'b.qcow2', '-F', 'qcow2', join(dir, 'a.qcow2'), '1M']);
  await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-u', '-b', 'a.qcow2', '-F', 'qcow2', join(dir, 'b.qcow2'), '1M']);
  await t.rejects(diskOpenAs('x', { path: join(dir, 'a.qcow2'), format: 'qcow2' }, fsIdentityOf(0)), { message: /disk base .*a\.qcow2: backing chain loops back/ });
});

t.test('qemu-img runs as the requester, with its groups', { skip: !isRoot && 'needs root' }, async (t) => {
  const { u1 } = await users(t);
  const dir = scratch(t);
  // A stand-in qemu-img that reports who runs it and what fd 3 is; the real one cannot say.
  const bin = join(dir, 'bin');
  mkdirSync(bin, { mode: 0o755 });
  writeFileSync(join(bin, 'qemu-img'), '#!/bin/sh\nprintf \'{"backing-filename":"%s|%s|%s|%s"}\' "$(id -u)" "$(id -G)" "$(readlink /proc/self/fd/3)" "$*"\n', { mode: 0o755 });
  const image = put(join(dir, 'img'), 0o644);
  const path = process.env.PATH;
  process.env.PATH = `${bin}:${path ?? ''}`;
  t.teardown(() => { process.env.PATH = path; });
  const fd = userFileOpen(image, disk(u1, false)).fd;
  t.teardown(() => closeSync(fd));
  const seen = (await qemuImgHeader(fd, 'qcow2', u1)).backing!.name.split('|');
  t.equal(seen[0], String(u1.uid), 'its uid');
  t.same(seen[1]!.split(' ').map(Number).sort(), [...new Set([u1.gid, ...u1.groups])].sort(), 'its gid and groups');
  t.equal(seen[2], image, 'the image arrives as fd 3');
  t.equal(seen[3], 'info -U -f qcow2 --output=json /proc/self/fd/3', 'one image, no --backing-chain');
});

t.test('qemu-img output is read field by field', async (t) => {
  t.same(readImageInfo('{"format":"qcow2"}'), { backing: null });
  t.same(readImageInfo('{"backing-filename":"b.raw","backing-filename-format":"raw"}'), { backing: { name: 'b.raw', format: 'raw' } });
  t.same(readImageInfo('{"backing-filename":"b"}'), { backing: { name: 'b', format: null } });
  t.throws(() => readImageInfo('[]'), { code: 'EQEMUIMG' });
  t.throws(() => readImageInfo('not json'), { code: 'EQEMUIMG' });
  t.throws(() => readImageInfo('{"backing-filename":7}'), { message: /bad backing file name/ });
  t.throws(() => readImageInfo('{"backing-filename":"a\\u0000b"}'), { message: /bad backing file name/ });
  t.throws(() => readImageInfo('{"backing-filename":"b","backing-filename-format":"x y"}'), { message: /bad backing file format/ });
});

t.test('backing names resolve as QEMU resolves them', async (t) => {
  t.equal(backingPathOf('/a/b/ov.qcow2', 'base.raw'), '/a/b/base.raw');
  t.equal(backingPathOf('/a/b/ov.qcow2', '../c/base.raw'), '/a/b/../c/base.raw', 'by string, as path_combine');
  t.equal(backingPathOf('/a/b/ov.qcow2', '/abs/base.raw'), '/abs/base.raw');
  t.equal(backingPathOf('/a/b/ov.qcow2', 'dir/x:y'), '/a/b/dir/x:y', 'a colon after a slash is part of a file name');
  t.throws(() => backingPathOf('/a/ov.qcow2', 'nbd:localhost:10809'), { code: 'EFTYPE' });
  t.throws(() => backingPathOf('/a/ov.qcow2', 'json:{"driver":"file"}'), { code: 'EFTYPE' });
});
