// End to end: `vmctl grow` on a real guest's disk. While the guest runs its QEMU grows it and the guest sees the new
// size at once; never shrunk; a stopped guest's disk grows too and the guest sees it at its next boot.

import t from 'tap';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { guestInitrd, guestKernel, VmdHarness } from '../lib/vmd-harness.js';
import { sh } from '../lib/guest-tools.js';
import { ensureUsers } from '../lib/users.js';
import { getgrnam, getpwnam } from '../../share/users.js';

t.before(() => {
  if (!existsSync(guestKernel)) throw new Error(`test guest missing: run share/guest/build (${guestKernel})`);
});

for (const format of ['qcow2', 'raw'] as const) {
  t.test(`a running and a stopped guest's ${format} disk grows and the guest sees it`, async (t) => {
    const cleanup = await ensureUsers(['vmdgrow1'], 'vmdgrow');
    t.teardown(cleanup);
    const other = { uid: getpwnam('vmdgrow1')!.uid, gid: getgrnam('vmdgrow')!.gid };
    const h = await VmdHarness.start({ config: 'socket owner root:vmdgrow\n' });
    t.teardown(() => h.teardown());
    const disk = join(h.dir, `disk.${format}`);
    await execa('qemu-img', ['create', '-q', '-f', format, disk, '32M']);
    await writeFile(h.configPath, `socket owner root:vmdgrow\nvm "gr" {\n  disable\n  memory 256M\n  boot "${guestKernel}"\n  initrd "${guestInitrd}"\n  disk "${disk}"\n}\n`);
    t.equal((await h.vmctl(['reload'])).exitCode, 0);
    t.equal((await h.vmctl(['start', 'gr'])).exitCode, 0);
    await h.console('gr', '\n', /vmd-guest: ready/, 120);
    t.match(await sh(h, 'gr', 'cat /sys/block/vda/size'), /^65536\s*$/m, '32 MiB in 512-byte sectors');

    // Another user, who can read the image but not write it and does not own the guest, is refused: by vmd for qcow2
    // (qemu-img info already meets the guest's lock), by the file's mode for raw (whose resize qemu-img opens itself).
    const denied = await h.vmctl(['grow', '-s', '64M', disk], other);
    t.equal(denied.exitCode, 1);
    t.match(denied.stderr, format === 'qcow2' ? /^vmctl: vm "gr": grow: permission denied$/m : /^vmctl: grow: .*Permission denied$/m);
    // A running guest's disk: vmd has its QEMU grow it (block_resize), and the guest sees it at once.
    const live = await h.vmctl(['grow', '-s', '64M', disk]);
    t.equal(live.exitCode, 0, live.stderr);
    t.match(live.stderr, /grown from 32\.0M to 64\.0M while vm gr runs/);
    let seen = '';
    for (let i = 0; i < 20 && !/^131072\s*$/m.test(seen); i++) {
      seen = await sh(h, 'gr', 'cat /sys/block/vda/size');
      if (!/^131072\s*$/m.test(seen)) await new Promise((r) => setTimeout(r, 500));
    }
    t.match(seen, /^131072\s*$/m, 'the running guest sees 64 MiB');
    const liveShrink = await h.vmctl(['grow', '-s', '48M', disk]);
    t.equal(liveShrink.exitCode, 1);
    t.match(liveShrink.stderr, /48\.0M is smaller than its 64\.0M: disks are never shrunk/);

    t.equal((await h.vmctl(['stop', '-f', '-w', 'gr'])).exitCode, 0);
    const shrink = await h.vmctl(['grow', '-s', '16M', disk]);
    t.equal(shrink.exitCode, 1);
    t.match(shrink.stderr, /16\.0M is smaller than its 64\.0M: disks are never shrunk/);
    const grown = await h.vmctl(['grow', '-s', '96M', disk]);
    t.equal(grown.exitCode, 0, grown.stderr);
    t.match(grown.stderr, /grown from 64\.0M to 96\.0M$/m);

    t.equal((await h.vmctl(['start', 'gr'])).exitCode, 0);
    await h.console('gr', '\n', /vmd-guest: ready/, 120);
    t.match(await sh(h, 'gr', 'cat /sys/block/vda/size'), /^196608\s*$/m, 'the guest sees 96 MiB after a restart');
    await h.vmctl(['stop', '-f', '-w', 'gr']);
  });
}
