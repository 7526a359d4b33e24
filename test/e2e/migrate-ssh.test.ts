// End to end: `vmctl migrate VM root@host` with no -s reaches the target's vmd as `vmctl -H` does, through a real
// OpenSSH server (the test's own, in the target's namespace) and the relay there; the guest's state goes by TCP,
// and with --copy-storage its disk too.

import t, { type Test } from 'tap';
import { execa } from 'execa';
import { existsSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { vmctlEntry } from '../../share/paths.js';
import { sh } from '../lib/guest-tools.js';
import { startSshd } from '../lib/sshd.js';
import { HOST_ADDRS, twoHostsStart } from '../lib/two-hosts.js';
import { guestInitrd, guestKernel, type VmctlResult, type VmdHarness } from '../lib/vmd-harness.js';

const PORT = 2223;

/** vmctl as root in the source host's namespace (where the target's address is reachable), ssh set up for the test. */
async function vmctlOnSource(a: VmdHarness, b: VmdHarness, clientConfig: string, args: string[]): Promise<VmctlResult> {
  const env = {
    ...a.env, VMCTL_SSH: `ssh -F ${clientConfig} -o Port=${PORT}`,
    // The relay on the target: this tree's vmctl, to the target daemon's socket rather than /run/vmd.sock.
    VMCTL_RELAY: `${process.execPath} ${vmctlEntry} relay ${b.socket}`,
  };
  const argv = ['netns', 'exec', a.netns, '/usr/bin/env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), process.execPath, vmctlEntry, ...args];
  const r = await execa('ip', argv, { reject: false, extendEnv: false, timeout: 180_000, stdin: 'ignore' });
  return { stdout: String(r.stdout), stderr: String(r.stderr), exitCode: r.exitCode ?? 1 };
}

/** Two vmd hosts, the second with an sshd for root; all of it gone when the test ends. */
async function hostsWithSshd(t: Test) {
  const [a, b] = await twoHostsStart();
  t.teardown(async () => {
    await a.teardown();
    await b.teardown();
  });
  const sshd = await startSshd(b.netns, HOST_ADDRS[1], PORT, ['root']);
  t.teardown(() => sshd.stop());
  return { a, b, sshd };
}

t.test('vmctl migrate over ssh: the target is asked through the relay, the guest moves and runs there', async (t) => {
  const { a, b, sshd } = await hostsWithSshd(t);

  // A target that does not answer is said before the source is asked: the guest is not even paused.
  const unreachable = await vmctlOnSource(a, b, sshd.clientConfig, ['migrate', 'nosuch', 'root@10.96.43.9']);
  t.equal(unreachable.exitCode, 1);
  t.match(unreachable.stderr, /^vmctl: host "root@10\.96\.43\.9": ssh: /m, 'the unreachable target is named');

  const start = ['start', 'walker', '-b', guestKernel, '--initrd', guestInitrd, '-m', '256M', '--cmdline', 'console=ttyS0 quiet panic=-1 vmd.hostname=walker'];
  t.equal((await a.vmctl(start)).exitCode, 0);
  await a.waitState('walker', 'running', 30_000);
  await a.console('walker', '\n', /vmd-guest: ready/, 90);
  await sh(a, 'walker', 'echo before > /tmp/mark');

  const m = await vmctlOnSource(a, b, sshd.clientConfig, ['migrate', 'walker', `root@${HOST_ADDRS[1]}`]);
  t.equal(m.exitCode, 0, `migrate: ${m.stderr}\n${sshd.log()}\n${b.daemonLog}`);
  t.match(m.stderr, /migrated vm walker to 10\.96\.43\.2 as vm \d+/);
  await b.waitState('walker', 'running', 10_000);
  await a.waitState('walker', 'gone', 10_000);
  t.match(await sh(b, 'walker', 'cat /tmp/mark'), /before/, 'the guest on the target is the one that ran on the source');
  t.same(a.guestPids(), [], 'no guest left on the source');
  t.equal((await b.vmctl(['stop', '-f', '-w', 'walker'])).exitCode, 0);
});

/** Written by the guest 100 sectors and 3 MiB into its disk; read back past its page cache, which moves with its RAM. */
const WRITE = 'printf DISK-MARK-42 | dd of=/dev/vda bs=512 seek=100 conv=fsync 2>/dev/null; printf FAR-MARK-42 | dd of=/dev/vda bs=512 seek=6244 conv=fsync 2>/dev/null';
const READ = 'sync; echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda bs=512 skip=100 count=1 2>/dev/null | head -c 12; echo; dd if=/dev/vda bs=512 skip=6244 count=1 2>/dev/null | head -c 11; echo';

t.test('vmctl migrate --copy-storage over ssh: the disk only the source has arrives with its markers', async (t) => {
  const { a, b, sshd } = await hostsWithSshd(t);
  const disk = join(a.dir, 'carried.raw');
  writeFileSync(disk, Buffer.alloc(8 * 1024 * 1024));
  const start = ['start', 'carrier', '-b', guestKernel, '--initrd', guestInitrd, '-m', '256M', '-d', disk, '--cmdline', 'console=ttyS0 quiet panic=-1 vmd.hostname=carrier'];
  t.equal((await a.vmctl(start)).exitCode, 0, 'the guest starts on the source');
  await a.waitState('carrier', 'running', 30_000);
  await a.console('carrier', '\n', /vmd-guest: ready/, 90);
  await sh(a, 'carrier', WRITE, 60);
  t.match(await sh(a, 'carrier', READ, 60), /DISK-MARK-42\r?\nFAR-MARK-42/, 'the guest wrote its markers at the source');
  // Both hosts share this filesystem: the source's QEMU holds the image open, the path goes as on a host without it.
  unlinkSync(disk);

  const m = await vmctlOnSource(a, b, sshd.clientConfig, ['migrate', '--copy-storage', 'carrier', `root@${HOST_ADDRS[1]}`]);
  t.equal(m.exitCode, 0, `migrate: ${m.stderr}\n${sshd.log()}\n${a.daemonLog}\n${b.daemonLog}`);
  t.match(m.stderr, /migrated vm carrier to 10\.96\.43\.2 as vm \d+/);
  await b.waitState('carrier', 'running', 10_000);
  await a.waitState('carrier', 'gone', 10_000);
  t.ok(existsSync(disk), 'the target made the image at the same path');
  t.match(await sh(b, 'carrier', READ, 60), /DISK-MARK-42\r?\nFAR-MARK-42/, 'the guest reads its markers from the target\'s disk');
  t.same(a.guestPids(), [], 'no guest left on the source');
  t.equal((await b.vmctl(['stop', '-f', '-w', 'carrier'])).exitCode, 0, 'the guest stops on the target');
});
