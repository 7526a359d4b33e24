// End to end, issue 6's guests and images: an overlay holds what the guest wrote (its base does not) and is refused
// to a second guest; `-B` is one boot only, seen in the argv QEMU really gets; instances started by a non-root user.

import t from 'tap';
import { execa } from 'execa';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { getgrnam, getpwnam } from '../../share/users.js';
import { ensureUsers } from '../lib/users.js';
import { guestInitrd, guestKernel, VmdHarness } from '../lib/vmd-harness.js';

const cmdline = 'console=ttyS0 quiet panic=-1';

t.before(() => {
  if (!existsSync(guestKernel)) throw new Error(`test guest missing: run share/guest/build (${guestKernel})`);
});

/** A running VM's QEMU argv, from /proc (what QEMU was really given). */
async function qemuArgvOf(h: VmdHarness, name: string): Promise<string[]> {
  const row = await h.waitState(name, 'running', 30_000);
  const pid = Number(row.trim().split(/\s+/)[1]);
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0$/, '').split('\0');
}

t.test('an overlay holds what the guest wrote, its base does not; a second guest is refused', async (t) => {
  const h = await VmdHarness.start();
  t.teardown(() => h.teardown());
  const base = join(h.dir, 'base.qcow2');
  const overlay = join(h.dir, 'overlay.qcow2');
  t.match((await h.vmctl(['create', '-s', '64M', base])).stderr, /qcow2 imagefile created/);
  t.match((await h.vmctl(['create', '-b', base, overlay])).stderr, /qcow2 imagefile created/);
  const baseBefore = readFileSync(base);

  const args = (name: string): string[] => ['start', name, '-b', guestKernel, '--initrd', guestInitrd, '-m', '256M', '-d', overlay];
  const started = await h.vmctl(args('writer'));
  t.equal(started.exitCode, 0, started.stderr);
  await h.console('writer', '\n', /vmd-guest: ready/);
  // The marker is built by the shell, so the console's echo of the command line cannot be mistaken for it.
  const wrote = await h.console('writer', 'M=VMD-OVERLAY-MARKER-$((6*7)); echo $M > /dev/vda && sync && echo WROTE-$M\n', /WROTE-VMD-OVERLAY-MARKER-42|vda: .*(No such|error)/i);
  t.match(wrote, /WROTE-VMD-OVERLAY-MARKER-42/, 'the guest wrote to its disk');

  // While it runs, the overlay is its own: another guest is refused, with the image named.
  const second = await h.vmctl(args('other'));
  t.equal(second.exitCode, 1);
  t.match(second.stderr, new RegExp(`disk ${overlay.replace(/[/.]/g, '\\$&')}: in use by vm "writer"`));
  t.notMatch((await h.vmctl(['status'])).stdout, / other$/m, 'the refused guest was not left behind');

  t.equal((await h.vmctl(['stop', '-f', '-w', 'writer'])).exitCode, 0);
  const marker = Buffer.from('VMD-OVERLAY-MARKER-42');
  t.ok(readFileSync(overlay).includes(marker), 'the overlay holds the marker');
  t.notOk(readFileSync(base).includes(marker), 'the base does not');
  t.ok(readFileSync(base).equals(baseBefore), 'the base is byte for byte unchanged');
});

// A boot sector that prints VMD-MBR-BOOTED on COM1, then resets the machine (port 0xcf9) when it reads `r` there.
// Assembled from: cli; xor %ax,%ax; mov %ax,%ds; cld; mov $msg,%si; 1: lodsb; test %al,%al; jz 2f; mov $0x3f8,%dx;
// out %al,%dx; jmp 1b; 2: mov $0x3fd,%dx; 3: in %dx,%al; test $1,%al; jz 3b; mov $0x3f8,%dx; in %dx,%al;
// cmp $'r',%al; jne 2b; mov $0xcf9,%dx; mov $6,%al; out %al,%dx; 4: hlt; jmp 4b; msg: .asciz "VMD-MBR-BOOTED\r\n"
// (as --32, ld -Ttext=0x7c00 --oformat=binary), then 0x55 0xaa at 510.
const BOOT_SECTOR = (() => {
  const b = Buffer.alloc(1024 * 1024);
  Buffer.from('fa31c08ed8fcbe2d7cac84c07406baf803eeebf5bafd03eca80174fbbaf803ec3c7275f0baf90cb006eef4ebfd564d442d4d42522d424f4f5445440d0a00', 'hex').copy(b);
  b[510] = 0x55;
  b[511] = 0xaa;
  return b;
})();

t.test('-B is for one boot: the guest gets the boot order in its argv, a reboot stops it, the next start is normal', async (t) => {
  const h = await VmdHarness.start();
  t.teardown(() => h.teardown());
  const disk = join(h.dir, 'boot.raw');
  writeFileSync(disk, BOOT_SECTOR);
  writeFileSync(h.configPath, `vm "bt" {\n  disable\n  memory 64M\n  disk "${disk}"\n}\n`);
  t.equal((await h.vmctl(['reload'])).exitCode, 0);

  const once = await h.vmctl(['start', '-B', 'disk', 'bt']);
  t.equal(once.exitCode, 0, once.stderr);
  const argv1 = await qemuArgvOf(h, 'bt');
  t.ok(argv1.some((a) => a.startsWith('virtio-blk-pci,') && a.includes('bootindex=0')), '-B disk: the disk is boot index 0');
  await h.console('bt', '', /VMD-MBR-BOOTED/);
  // The guest resets itself: with a one-time boot device that is the end of it (OpenBSD), not a restart.
  await h.vmctl(['console', '-t', '1', 'bt'], { input: 'r' });
  await h.waitState('bt', 'stopped', 15_000);
  t.match(h.daemonLog, /vm "bt" \(vm 1\) terminated: guest-reset/);

  const normal = await h.vmctl(['start', 'bt']);
  t.equal(normal.exitCode, 0, normal.stderr);
  const argv2 = await qemuArgvOf(h, 'bt');
  t.notOk(argv2.some((a) => a.includes('bootindex=')), 'the next start has the normal boot order');
  await h.console('bt', '', /VMD-MBR-BOOTED/);
  // Without -B a reboot is a restart, again with the normal order.
  const pid2 = (await h.waitState('bt', 'running')).trim().split(/\s+/)[1];
  await h.vmctl(['console', '-t', '1', 'bt'], { input: 'r' });
  const deadline = Date.now() + 15_000;
  while (!/vm "bt" \(vm 1\) rebooted/.test(h.daemonLog) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  t.match(h.daemonLog, /vm "bt" \(vm 1\) rebooted/, 'a plain reboot restarts it');
  const row3 = await h.waitState('bt', 'running', 15_000);
  t.not(row3.trim().split(/\s+/)[1], pid2, 'as a new QEMU');
  const argv3 = await qemuArgvOf(h, 'bt');
  t.notOk(argv3.some((a) => a.includes('bootindex=')), 'still the normal order');
  t.equal((await h.vmctl(['stop', '-f', '-w', 'bt'])).exitCode, 0);
});

// Not permissions.test.ts' users: tests run in parallel, and each removes what it made.
const USER = 'vmdtest3';
const GROUP = 'vmdtest3';

t.test('an instance started by a non-root user: allowed overrides work, others are refused, no parent disk', async (t) => {
  const cleanup = await ensureUsers([USER], GROUP, { primary: true });
  t.teardown(cleanup);
  const gid = getgrnam(GROUP)!.gid;
  const user = { uid: getpwnam(USER)!.uid, gid };
  const h = await VmdHarness.start();
  t.teardown(() => h.teardown());
  const parentDisk = join(h.dir, 'parent.qcow2');
  const ownDisk = join(h.dir, 'own.qcow2');
  t.equal((await h.vmctl(['create', '-s', '64M', parentDisk])).exitCode, 0);
  t.equal((await h.vmctl(['create', '-b', parentDisk, ownDisk])).exitCode, 0);
  // The user's own overlay is theirs and its base readable to them (vmctl create makes 0600 images):
  // vmd checks the user's access to both before it opens them.
  await execa('chown', [`${user.uid}:${gid}`, ownDisk]);
  chmodSync(ownDisk, 0o600);
  chmodSync(parentDisk, 0o644);
  writeFileSync(h.configPath,
    `socket owner root:${GROUP}\n` +
    `vm "tmpl" {\n  disable\n  memory 256M\n  boot "${guestKernel}"\n  initrd "${guestInitrd}"\n  cmdline "${cmdline}"\n` +
    `  disk "${parentDisk}"\n  allow instance { memory, disk, owner ${USER} }\n}\n`);
  await h.stopDaemon();
  await h.startDaemon();
  const as = (args: string[]) => h.vmctl(args, { uid: user.uid, gid: user.gid });

  const ok = await as(['start', '-t', 'tmpl', '-m', '128M', '-d', ownDisk, 'mine']);
  t.equal(ok.exitCode, 0, `memory and disk are allowed: ${ok.stderr}\n${h.daemonLog}`);
  const row = await h.waitState('mine', 'running', 30_000);
  t.match(row, new RegExp(`^\\s*\\d+\\s+\\d+\\s+1\\s+128M\\s+\\S+\\s+console\\s+${USER}\\s+running mine$`), 'the user owns it, with its own memory');
  await h.console('mine', '\n', /vmd-guest: ready/);
  const disks = await h.console('mine', 'echo DISKS-$(ls /sys/block | grep -c vd)-END\n', /DISKS-\d+-END/);
  t.match(disks, /DISKS-1-END/, 'one disk: its own, the parent\'s is not inherited');

  const cdrom = await as(['start', '-t', 'tmpl', '-r', guestInitrd, 'cd']);
  t.equal(cdrom.exitCode, 1);
  t.match(cdrom.stderr, /^vmctl: start vm command failed: Operation not permitted$/m, 'cdrom is not allowed');
  const nic = await as(['start', '-t', 'tmpl', '-i', '1', 'nic']);
  t.equal(nic.exitCode, 1);
  t.match(nic.stderr, /^vmctl: start vm command failed: Operation not permitted$/m, 'interfaces are not allowed');
  const boot = await as(['start', '-t', 'tmpl', '-b', guestKernel, 'kern']);
  t.equal(boot.exitCode, 1);
  t.match(boot.stderr, /Operation not permitted/, 'the boot image is not allowed');
  const reuse = await as(['start', '-t', 'tmpl', '-d', parentDisk, 'reuse']);
  t.equal(reuse.exitCode, 1);
  t.match(reuse.stderr, new RegExp(`disk ${parentDisk.replace(/[/.]/g, '\\$&')} cannot be reused`), 'the parent\'s disk is refused');
  const status = await h.vmctl(['status']);
  for (const n of ['cd', 'nic', 'kern', 'reuse']) t.notMatch(status.stdout, new RegExp(` ${n}$`, 'm'), `no "${n}" left behind`);

  const stopped = await as(['stop', '-f', '-w', 'mine']);
  t.equal(stopped.exitCode, 0, stopped.stderr);
});
