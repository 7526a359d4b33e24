// End to end, starts that cannot work: QEMU's own reason reaches vmctl and the log, vmd refuses an overlay whose
// base another guest writes (naming both), a refused start uses up no VM id, -i makes unattached taps, and
// `vmctl start` prints each warning once and says that an existing VM exists.

import t from 'tap';
import { spawn } from 'node:child_process';
import { execa } from 'execa';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { guestInitrd, guestKernel, VmdHarness } from '../lib/vmd-harness.js';

const BOOT = ['-b', guestKernel, '--initrd', guestInitrd, '--cmdline', 'console=ttyS0 quiet panic=-1', '-m', '128M'];

t.before(() => {
  if (!existsSync(guestKernel)) throw new Error(`test guest missing: run share/guest/build (${guestKernel})`);
});

const escape = (s: string) => s.replace(/[/.[\]()]/g, '\\$&');

t.test('a start QEMU refuses prints QEMU\'s reason through vmctl and in the log, quickly', async (t) => {
  const h = await VmdHarness.start();
  t.teardown(() => h.teardown());
  const disk = join(h.dir, 'held.raw');
  writeFileSync(disk, Buffer.alloc(1024 * 1024));
  // A QEMU vmd knows nothing about holds the image's write lock: only QEMU itself can tell why it cannot start.
  const holder = spawn('qemu-system-x86_64', ['-S', '-nodefaults', '-display', 'none', '-accel', 'tcg', '-machine', 'q35',
    '-drive', `file=${disk},format=raw,if=none,id=d0`, '-device', 'virtio-blk-pci,drive=d0', '-qmp', 'stdio'], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => { holder.kill('SIGKILL'); });
  await new Promise<void>((resolve) => holder.stdout!.once('data', () => resolve()));

  const began = Date.now();
  const r = await h.vmctl(['start', ...BOOT, '-d', `raw:${disk}`, 'locked']);
  t.equal(r.exitCode, 1);
  t.match(r.stderr, /vmctl: vm "locked": qemu: vd0: Failed to get "write" lock/, 'QEMU\'s message, with the device it concerns');
  t.notMatch(r.stderr, /qmp|ENOENT|killed/, 'not the symptoms of the QMP socket QEMU never made');
  t.ok(Date.now() - began < 8000, `answered once QEMU exited, not after the QMP timeout (${Date.now() - began} ms)`);
  t.match(h.daemonLog, /vm "locked": start failed: qemu: vd0: Failed to get "write" lock/, 'the log says it too');
  t.notMatch(h.daemonLog, /vm "locked".*terminated/, 'the start owns the exit: no second report of it');
  t.notMatch((await h.vmctl(['status'])).stdout, / locked$/m, 'nothing is left of it');
});

t.test('an overlay whose base another guest writes is refused by vmd, naming both; a refused start uses no id', async (t) => {
  const h = await VmdHarness.start();
  t.teardown(() => h.teardown());
  const base = join(h.dir, 'base.qcow2');
  const overlay = join(h.dir, 'overlay.qcow2');
  t.equal((await h.vmctl(['create', '-s', '64M', base])).exitCode, 0);
  t.equal((await h.vmctl(['create', '-b', base, overlay])).exitCode, 0);
  const a = await h.vmctl(['start', ...BOOT, '-d', base, 'owner']);
  t.equal(a.exitCode, 0, a.stderr);
  await h.waitState('owner', 'running', 30_000);

  const b = await h.vmctl(['start', ...BOOT, '-d', overlay, 'child']);
  t.equal(b.exitCode, 1);
  t.match(b.stderr, new RegExp(`vm "child": disk ${escape(overlay)}: its backing file ${escape(base)} is in use by vm "owner"`));
  t.notMatch(b.stderr, /qemu:/, 'vmd refused it before QEMU ran');

  // The other way round: the base may not become another guest's disk while the overlay's guest reads it.
  t.equal((await h.vmctl(['stop', '-f', '-w', 'owner'])).exitCode, 0);
  t.equal((await h.vmctl(['start', ...BOOT, '-d', overlay, 'reader'])).exitCode, 0);
  await h.waitState('reader', 'running', 30_000);
  const w = await h.vmctl(['start', ...BOOT, '-d', base, 'writer']);
  t.equal(w.exitCode, 1);
  t.match(w.stderr, new RegExp(`vm "writer": disk ${escape(base)}: vm "reader" reads it .* as a backing file`));

  // owner was vm 1 (forgotten at its stop, its id kept for its name), reader vm 2; the refused ones took none.
  const c = await h.vmctl(['start', ...BOOT, '-i', '1', 'third']);
  t.match(c.stderr, /started vm 3 successfully/, 'the refused starts used up no id');

  // -i makes a host link attached to nothing (OpenBSD's tap), not a QEMU user-mode NIC.
  const pid = Number((await h.waitState('third', 'running', 30_000)).trim().split(/\s+/)[1]);
  const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  t.ok(argv.some((a) => /^tap,id=net0,fd=\d+$/.test(a)), '-i 1: a tap');
  t.notOk(argv.some((a) => a.startsWith('user,')), 'no user-mode network');
  const links = await h.vmctl(['--json', 'links', 'third']);
  const link = (JSON.parse(links.stdout) as { links: Array<{ link: string; switch: string | null; local: boolean }> }).links[0];
  t.match(link, { switch: null, local: false }, 'on no switch');
  const master = await execa('ip', ['-n', h.netns, '-o', 'link', 'show', link!.link]);
  t.notMatch(master.stdout, / master /, 'the host link is a port of no bridge');

  // An existing VM with options that describe a new one: OpenBSD's EALREADY, not a complaint about booting.
  const again = await h.vmctl(['start', 'third', '-m', '2G']);
  t.equal(again.exitCode, 1);
  t.equal(again.stderr.split('\n')[0], 'vmctl: start vm command failed: Operation already in progress');
  for (const name of ['reader', 'third']) t.equal((await h.vmctl(['stop', '-f', '-w', name])).exitCode, 0);
});

t.test('each start warning is printed once', async (t) => {
  const h = await VmdHarness.start();
  t.teardown(() => h.teardown());
  const iso = join(h.dir, 'empty.iso');
  writeFileSync(iso, Buffer.alloc(64 * 1024));
  const r = await h.vmctl(['start', '-r', iso, '-m', '64M', 'cd']);
  t.equal(r.exitCode, 0, r.stderr);
  t.equal(r.stderr.split('starting without disks').length - 1, 1, r.stderr);
  t.equal(r.stderr.split('starting without network interfaces').length - 1, 1, r.stderr);
  t.equal((await h.vmctl(['stop', '-f', '-w', 'cd'])).exitCode, 0);
});
