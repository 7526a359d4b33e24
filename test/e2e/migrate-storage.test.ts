// End to end: `vmctl migrate --copy-storage` between two vmds in two namespaces. Both run on this one filesystem,
// so "a path only the source has" is made honestly: the source's QEMU holds its disk open and the path is unlinked.

import t, { type Test } from 'tap';
import { execa } from 'execa';
import { existsSync, openSync, readFileSync, readSync, closeSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { sh } from '../lib/guest-tools.js';
import { HOST_ADDRS, migrateInBackground, twoHostsStart } from '../lib/two-hosts.js';
import { guestInitrd, guestKernel, type VmdHarness } from '../lib/vmd-harness.js';

const DST_ADDR = HOST_ADDRS[1];
/** The marker goes 100 sectors in and 3 MiB further, so a copy of the first blocks alone would not do. */
const WRITE = 'printf DISK-MARK-42 | dd of=/dev/vda bs=512 seek=100 conv=fsync 2>/dev/null; printf FAR-MARK-42 | dd of=/dev/vda bs=512 seek=6244 conv=fsync 2>/dev/null';
/** Read past the guest's page cache (which migrates with its RAM): what the disk itself holds. */
const READ = 'sync; echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda bs=512 skip=100 count=1 2>/dev/null | head -c 12; echo; dd if=/dev/vda bs=512 skip=6244 count=1 2>/dev/null | head -c 11; echo';

const startArgs = (name: string, disk: string): string[] =>
  ['start', name, '-b', guestKernel, '--initrd', guestInitrd, '-m', '256M', '-d', disk, '--cmdline', `console=ttyS0 quiet panic=-1 vmd.hostname=${name}`];

async function twoHosts(t: Test): Promise<[VmdHarness, VmdHarness]> {
  const [a, b] = await twoHostsStart();
  t.teardown(async () => {
    await a.teardown();
    await b.teardown();
  });
  return [a, b];
}

/** Bytes of a host file at an offset. */
function bytesAt(file: string, offset: number, length: number): string {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, offset);
    return buf.toString('latin1');
  } finally {
    closeSync(fd);
  }
}

/** A guest on `a` with `disk`, booted, the markers written to its disk. */
async function guestWithMarks(t: Test, a: VmdHarness, name: string, disk: string): Promise<void> {
  const started = await a.vmctl(startArgs(name, disk));
  t.equal(started.exitCode, 0, started.stderr);
  await a.waitState(name, 'running', 30_000);
  await a.console(name, '\n', /vmd-guest: ready/, 90);
  await sh(a, name, WRITE, 60);
  t.match(await sh(a, name, READ, 60), /DISK-MARK-42\r?\nFAR-MARK-42/, 'the guest wrote its markers at the source');
}

/**
 * Starts `migrate --copy-storage` of `name` from `a` to `b` in the background and returns once the mirror's first
 * bytes landed in the target's (sparse) image, with the target's QEMU.
 */
async function mirrorCaught(t: Test, a: VmdHarness, b: VmdHarness, name: string, disk: string, size: number): Promise<{ qemu: number; exited: Promise<number>; err: () => string }> {
  const mig = migrateInBackground(a, ['--copy-storage', '-s', b.socket, name, DST_ADDR]);
  // The target's QEMU listens twice: for the migration, then the NBD server the mirror writes to.
  let qemu: number | undefined;
  for (let i = 0; i < 1200 && qemu === undefined; i++) {
    await new Promise((r) => setTimeout(r, 25));
    const ss = String((await execa('ip', ['netns', 'exec', b.netns, 'ss', '-Htlnp'])).stdout);
    qemu = b.guestPids().find((pid) => ss.split('\n').filter((l) => l.includes(`pid=${pid},`)).length >= 2);
  }
  t.ok(qemu !== undefined, 'the target\'s QEMU serves the disks');
  t.ok(existsSync(disk), 'the target made the image');
  // Caught as soon as the mirror's first bytes land in the target's (sparse) image.
  let copied = 0;
  for (let i = 0; i < 2000 && copied === 0; i++) {
    copied = statSync(disk).blocks * 512;
    if (copied === 0) await new Promise((r) => setTimeout(r, 5));
  }
  t.ok(copied > 0 && copied < size, `caught mid-mirror (${copied} of ${size} bytes there)`);
  return { qemu: qemu!, exited: mig.exited, err: mig.err };
}

t.test('a qcow2 disk only the source has is copied while the guest runs; the guest reads its marker on the target', async (t) => {
  const [a, b] = await twoHosts(t);
  // An overlay on a base the host wrote a marker into: the copy must carry the whole chain, flattened.
  const base = join(a.dir, 'base.raw');
  const baseBytes = Buffer.alloc(8 * 1024 * 1024);
  baseBytes.write('BASE-MARK-42', 200 * 512, 'latin1');
  writeFileSync(base, baseBytes);
  const disk = join(a.dir, 'data.qcow2');
  t.equal((await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'raw', disk], { reject: false })).exitCode, 0);
  await guestWithMarks(t, a, 'mover', disk);

  // While the path still holds a file (as on a target with that file), the target refuses and leaves it be.
  const before = readFileSync(disk);
  const refused = await a.vmctl(['migrate', '--copy-storage', '-s', b.socket, 'mover', DST_ADDR], { timeoutMs: 60_000 });
  t.equal(refused.exitCode, 1, 'an existing file at the path is refused');
  t.match(refused.stderr, `disk ${disk}: already exists on the target`, `the refusal names it: ${refused.stderr}`);
  t.ok(readFileSync(disk).equals(before), 'the file there is untouched');
  t.same(b.guestPids(), [], 'nothing runs on the target');

  // The source's QEMU keeps its image open; the path is gone, as on a host without it.
  unlinkSync(disk);
  const m = await a.vmctl(['migrate', '--copy-storage', '-s', b.socket, 'mover', DST_ADDR], { timeoutMs: 240_000 });
  t.equal(m.exitCode, 0, `migrate: ${m.stderr}\n${a.daemonLog}\n${b.daemonLog}`);
  // QEMU's figures, not the 0s it says for a moment after completion (read then, in one migration in three).
  t.match(m.stderr, /migrated vm mover to .* as vm \d+: downtime [1-9]\d* ms .*, total [1-9]\d* ms/, 'with the downtime and total time QEMU measured');
  await b.waitState('mover', 'running', 10_000);
  await a.waitState('mover', 'gone', 10_000);

  t.ok(existsSync(disk), 'the target made the image at the same path');
  const info = JSON.parse(String((await execa('qemu-img', ['info', '-U', '--output=json', disk])).stdout)) as { format: string; 'virtual-size': number };
  t.same([info.format, info['virtual-size']], ['qcow2', 8 * 1024 * 1024], 'of the same format and virtual size');
  t.equal((info as { 'backing-filename'?: string })['backing-filename'], undefined, 'standalone: no backing file');
  // The source is gone; so goes the base, which the target's image must not need.
  unlinkSync(base);
  t.match(await sh(b, 'mover', READ, 60), /DISK-MARK-42\r?\nFAR-MARK-42/, 'the guest reads its markers from the target\'s disk');
  t.match(await sh(b, 'mover', 'dd if=/dev/vda bs=512 skip=200 count=1 2>/dev/null | head -c 12; echo', 60), 'BASE-MARK-42', 'and the base\'s, flattened into it');
  t.same(a.guestPids(), [], 'no guest left on the source');
  t.equal((await b.vmctl(['stop', '-f', '-w', 'mover'])).exitCode, 0);
  const raw = String((await execa('qemu-img', ['convert', '-O', 'raw', disk, join(b.dir, 'copy.raw')])).exitCode);
  t.equal(raw, '0');
  t.equal(bytesAt(join(b.dir, 'copy.raw'), 100 * 512, 12), 'DISK-MARK-42', 'the image on the target holds the marker');
});

const BIG = 96 * 1024 * 1024;

/**
 * Guest `stayer` on `a` with a 96 MiB raw disk of random data (not holes: the mirror has real bytes to move, so
 * it is caught under way), whose path is then removed as on a host that never had it; returns the path.
 */
async function bigGuest(t: Test, a: VmdHarness): Promise<string> {
  const disk = join(a.dir, 'big.raw');
  writeFileSync(disk, randomBytes(BIG));
  await guestWithMarks(t, a, 'stayer', disk);
  unlinkSync(disk);
  return disk;
}

t.test('the target\'s QEMU dies mid-mirror: the guest runs on at the source with its disk, no image is left', async (t) => {
  const [a, b] = await twoHosts(t);
  const disk = await bigGuest(t, a);

  const m = await mirrorCaught(t, a, b, 'stayer', disk, BIG);
  process.kill(m.qemu, 'SIGKILL');
  t.equal(await m.exited, 1, `migrate fails: ${m.err()}`);
  t.notMatch(m.err(), /migrated vm/, 'it did not complete');

  await b.waitState('stayer', 'gone', 15_000).catch((e: unknown) => t.fail(String(e)));
  t.same(b.guestPids(), [], 'no QEMU left on the target');
  t.equal(existsSync(disk), false, 'the target removed the image it made');
  await a.waitState('stayer', 'running', 10_000);
  t.match(await sh(a, 'stayer', READ, 60), /DISK-MARK-42\r?\nFAR-MARK-42/, 'the guest runs on at the source and reads its own disk');
  t.equal((await a.vmctl(['stop', '-f', '-w', 'stayer'])).exitCode, 0);
});

t.test('the target vmd dies mid-mirror: the restarted target removes the image it made', async (t) => {
  const [a, b] = await twoHosts(t);
  const disk = await bigGuest(t, a);
  const m = await mirrorCaught(t, a, b, 'stayer', disk, BIG);
  await b.killDaemon();
  t.equal(await m.exited, 1, `migrate fails: ${m.err()}`);
  t.ok(existsSync(disk), 'the image outlives the target vmd');
  await b.startDaemon();
  t.match(b.daemonLog, 'was still receiving the guest, terminating it');
  t.equal(existsSync(disk), false, 'the restarted target removed the image');
  t.same(b.guestPids(), [], 'no QEMU left on the target');
  await a.waitState('stayer', 'running', 10_000);
  t.match(await sh(a, 'stayer', READ, 60), /DISK-MARK-42\r?\nFAR-MARK-42/, 'the guest runs on at the source and reads its own disk');
  t.equal((await a.vmctl(['stop', '-f', '-w', 'stayer'])).exitCode, 0);
});
