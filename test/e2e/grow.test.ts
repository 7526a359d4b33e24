// End to end: `vmctl grow` on a real guest's disk. Refused while the guest runs (QEMU holds the image), refused to
// shrink, and after a grow of the stopped guest's disk the guest sees the new size at its next boot.

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

for (const format of ['qcow2', 'raw'] as const) {
  t.test(`a stopped guest's ${format} disk grows and the guest sees it`, async (t) => {
    const h = await VmdHarness.start();
    t.teardown(() => h.teardown());
    const disk = join(h.dir, `disk.${format}`);
    await execa('qemu-img', ['create', '-q', '-f', format, disk, '32M']);
    await writeFile(h.configPath, `vm "gr" {\n  disable\n  memory 256M\n  boot "${guestKernel}"\n  initrd "${guestInitrd}"\n  disk "${disk}"\n}\n`);
    t.equal((await h.vmctl(['reload'])).exitCode, 0);
    t.equal((await h.vmctl(['start', 'gr'])).exitCode, 0);
    await h.console('gr', '\n', /vmd-guest: ready/, 120);
    t.match(await sh(h, 'gr', 'cat /sys/block/vda/size'), /^65536\s*$/m, '32 MiB in 512-byte sectors');

    const busy = await h.vmctl(['grow', '-s', '64M', disk]);
    t.equal(busy.exitCode, 1, 'refused while the guest runs');
    t.match(busy.stderr, /hint: a running vm uses the disk: stop it first/);

    t.equal((await h.vmctl(['stop', '-f', '-w', 'gr'])).exitCode, 0);
    const shrink = await h.vmctl(['grow', '-s', '16M', disk]);
    t.equal(shrink.exitCode, 1);
    t.match(shrink.stderr, /16\.0M is smaller than its 32\.0M: disks are never shrunk/);
    const grown = await h.vmctl(['grow', '-s', '64M', disk]);
    t.equal(grown.exitCode, 0, grown.stderr);
    t.match(grown.stderr, /grown from 32\.0M to 64\.0M/);

    t.equal((await h.vmctl(['start', 'gr'])).exitCode, 0);
    await h.console('gr', '\n', /vmd-guest: ready/, 120);
    t.match(await sh(h, 'gr', 'cat /sys/block/vda/size'), /^131072\s*$/m, 'the guest sees 64 MiB');
  });
}
