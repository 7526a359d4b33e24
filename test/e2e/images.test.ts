// End to end, guests and images: an overlay holds what the guest wrote (its base does not) and is refused to a second
// guest; `-B cdrom` boots a real ISO once and the reboot boots the disk, on both paths; instances of a non-root user.

import t, { type Test } from 'tap';
import { execa } from 'execa';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { getgrnam, getpwnam } from '../../share/users.js';
import { ensureUsers } from '../lib/users.js';
import { GUEST_CMDLINE } from '../../share/guest/guest.js';
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

/**
 * A real bootable installer-like ISO: isolinux (Debian's isolinux and syslinux-common) boots the busybox test guest
 * from the CD, as an installer CD boots its kernel. The guest says which medium it came from in its host name.
 */
async function bootIso(dir: string): Promise<string> {
  const root = join(dir, 'iso-root');
  mkdirSync(join(root, 'isolinux'), { recursive: true });
  copyFileSync('/usr/lib/ISOLINUX/isolinux.bin', join(root, 'isolinux', 'isolinux.bin'));
  copyFileSync('/usr/lib/syslinux/modules/bios/ldlinux.c32', join(root, 'isolinux', 'ldlinux.c32'));
  copyFileSync(guestKernel, join(root, 'kernel'));
  copyFileSync(guestInitrd, join(root, 'initrd.img'));
  writeFileSync(join(root, 'isolinux', 'isolinux.cfg'),
    `SERIAL 0 115200\nDEFAULT live\nTIMEOUT 1\nLABEL live\n  LINUX /kernel\n  INITRD /initrd.img\n  APPEND ${GUEST_CMDLINE} vmd.hostname=from-cdrom\n`);
  const iso = join(dir, 'boot.iso');
  await execa('genisoimage', ['-quiet', '-o', iso, '-J', '-R', '-b', 'isolinux/isolinux.bin', '-c', 'isolinux/boot.cat',
    '-no-emul-boot', '-boot-load-size', '4', '-boot-info-table', root]);
  return iso;
}

/** -B cdrom once: the ISO's isolinux boots the guest, which reboots itself; the same VM starts again from its disk. */
async function installFlow(t: Test, h: VmdHarness, name: string, start: string[]): Promise<void> {
  const once = await h.vmctl(start);
  t.equal(once.exitCode, 0, once.stderr);
  const argv1 = await qemuArgvOf(h, name);
  t.ok(argv1.some((a) => a.startsWith('ide-cd,') && a.includes('bootindex=0')), '-B cdrom: the cdrom is boot index 0');
  const live = await h.console(name, '\n', /from-cdrom# /, 120);
  t.match(live, /ISOLINUX 6\.04[\s\S]*vmd-guest: ready[\s\S]*from-cdrom# /, 'isolinux booted the ISO\'s kernel, under the host name it gave');
  const pid1 = (await h.waitState(name, 'running')).trim().split(/\s+/)[1];
  await h.vmctl(['console', '-t', '1', name], { input: 'reboot -f\n' });
  const rebooted = new RegExp(`vm "${name}" \\(vm \\d+\\) rebooted`);
  const deadline = Date.now() + 30_000;
  while (!rebooted.test(h.daemonLog) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  t.match(h.daemonLog, rebooted, 'the guest\'s reboot restarts the VM');
  const row = await h.waitState(name, 'running', 15_000);
  t.not(row.trim().split(/\s+/)[1], pid1, 'as a new QEMU');
  const argv2 = await qemuArgvOf(h, name);
  t.notOk(argv2.some((a) => a.includes('bootindex=')), 'without the one-time boot order');
  t.ok(argv2.some((a) => a.startsWith('ide-cd,')), 'the cdrom is still attached');
  // vmctl's table shows a starting guest as running: wait for vmd's own state, then give the boot under a loaded
  // machine time (CI once saw nothing in the default 20 s).
  await h.waitStarted(name, 30_000);
  t.match(await h.console(name, '', /VMD-MBR-BOOTED/, 60), /VMD-MBR-BOOTED/, 'the second boot runs the disk\'s boot sector');
  t.equal((await h.vmctl(['stop', '-f', '-w', name])).exitCode, 0);
}

t.test('-B cdrom is for the next boot only: the guest boots the ISO, and after its reboot the disk', async (t) => {
  const h = await VmdHarness.start();
  t.teardown(() => h.teardown());
  const disk = join(h.dir, 'boot.raw');
  writeFileSync(disk, BOOT_SECTOR);
  writeFileSync(join(h.dir, 'cl.raw'), BOOT_SECTOR);
  const iso = await bootIso(h.dir);
  writeFileSync(h.configPath, `vm "bt" {\n  disable\n  memory 256M\n  disk "${disk}"\n  cdrom "${iso}"\n}\n`);
  t.equal((await h.vmctl(['reload'])).exitCode, 0);

  await t.test('a vm.conf VM', (t) => installFlow(t, h, 'bt', ['start', '-B', 'cdrom', 'bt']));
  await t.test('a command-line VM', (t) => installFlow(t, h, 'cl', ['start', '-B', 'cdrom', '-r', iso, '-d', `raw:${join(h.dir, 'cl.raw')}`, '-m', '256M', 'cl']));
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
