// End to end: snapshots of a real guest's qcow2 disk. A marker written before a running snapshot and deleted after
// it is back once the guest is reverted; a stopped guest's snapshots are qemu-img's, listed without RAM state.

import t from 'tap';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { guestInitrd, guestKernel, VmdHarness } from '../lib/vmd-harness.js';
import { sh } from '../lib/guest-tools.js';

t.before(() => {
  if (!existsSync(guestKernel)) throw new Error(`test guest missing: run share/guest/build (${guestKernel})`);
});

/** What the guest reads at byte 51200 of its disk, past its page cache. */
const READ = 'sync; echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda bs=512 skip=100 count=1 2>/dev/null | head -c 9; echo';

t.test('revert brings back a marker deleted after the snapshot; stopped guests snapshot too', async (t) => {
  const h = await VmdHarness.start();
  t.teardown(() => h.teardown());
  const disk = join(h.dir, 'disk.qcow2');
  await execa('qemu-img', ['create', '-q', '-f', 'qcow2', disk, '64M']);
  const raw = join(h.dir, 'disk.raw');
  await execa('qemu-img', ['create', '-q', '-f', 'raw', raw, '8M']);
  const vm = (name: string, d: string): string => `vm "${name}" {\n  disable\n  memory 256M\n  boot "${guestKernel}"\n  initrd "${guestInitrd}"\n  disk "${d}"\n}\n`;
  await writeFile(h.configPath, vm('sn', disk) + vm('rw', raw));
  t.equal((await h.vmctl(['reload'])).exitCode, 0);
  t.equal((await h.vmctl(['start', 'sn'])).exitCode, 0);
  await h.console('sn', '\n', /vmd-guest: ready/, 120);

  await sh(h, 'sn', 'printf MARKER-42 | dd of=/dev/vda bs=512 seek=100 conv=fsync 2>/dev/null');
  t.match(await sh(h, 'sn', READ), /MARKER-42/, 'the marker is on the disk');
  const took = await h.vmctl(['snapshot', 'sn', 'before'], { timeoutMs: 600_000 });
  t.equal(took.exitCode, 0, took.stderr);
  t.match(took.stderr, /^vmctl: took snapshot before of vm 1$/m);

  await sh(h, 'sn', 'dd if=/dev/zero of=/dev/vda bs=512 seek=100 count=1 conv=fsync 2>/dev/null');
  t.notMatch(await sh(h, 'sn', READ), /MARKER-42/, 'the marker is gone');
  const reverted = await h.vmctl(['snapshot', '-r', 'before', 'sn'], { timeoutMs: 600_000 });
  t.equal(reverted.exitCode, 0, reverted.stderr);
  t.match(reverted.stderr, /reverted vm 1 to snapshot before/);
  t.match(await sh(h, 'sn', READ, 60), /MARKER-42/, 'the marker is back after the revert');
  await h.waitState('sn', 'running', 5000);

  const listed = await h.vmctl(['snapshot', '-l', 'sn']);
  t.equal(listed.exitCode, 0);
  t.match(listed.stdout, /^NAME +VMSTATE +DATE +DISK$/m);
  t.match(listed.stdout, new RegExp(`^before +[\\d.]+[KMG] +\\S+Z +${disk.replace(/[/.]/g, '\\$&')}$`, 'm'), 'with its RAM state');

  // Stopped: qemu-img's snapshots, disk only.
  t.equal((await h.vmctl(['stop', '-f', '-w', 'sn'])).exitCode, 0);
  const coldTaken = await h.vmctl(['snapshot', 'sn', 'cold']);
  t.equal(coldTaken.exitCode, 0, coldTaken.stderr);
  const cold = await h.vmctl(['snapshot', '-l', '--json', 'sn']);
  const names = (JSON.parse(cold.stdout) as { snapshots: Array<{ name: string; vmStateBytes: number }> }).snapshots;
  t.same(names.map((s) => [s.name, s.vmStateBytes > 0]), [['before', true], ['cold', false]]);
  const deleted = await h.vmctl(['snapshot', '-d', 'cold', 'sn']);
  t.equal(deleted.exitCode, 0, deleted.stderr);
  t.notMatch((await h.vmctl(['snapshot', '-l', 'sn'])).stdout, /cold/, 'deleted');
  const img = await execa('qemu-img', ['snapshot', '-l', disk]);
  t.match(img.stdout, /before/, 'qemu-img sees what vmctl listed');

  const refused = await h.vmctl(['snapshot', 'rw']);
  t.equal(refused.exitCode, 1);
  t.match(refused.stderr, /disk \S+disk\.raw is raw, which holds no snapshots/);
  const missing = await h.vmctl(['snapshot', '-r', 'nosuch', 'sn']);
  t.equal(missing.exitCode, 1, 'reverting to a snapshot that does not exist fails');
});
