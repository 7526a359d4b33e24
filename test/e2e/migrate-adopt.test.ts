// End to end: a source vmd that dies after its migration completed but before vmctl's commit reached it leaves a
// QEMU whose guest may already run at the target; the restarted vmd adopts it paused, never running, and says so.

import t from 'tap';
import { execa } from 'execa';
import { sh } from '../lib/guest-tools.js';
import { HOST_ADDRS, migrateInBackground, twoHostsStart } from '../lib/two-hosts.js';
import { guestInitrd, guestKernel } from '../lib/vmd-harness.js';

const NAME = 'twice';
const START = ['start', NAME, '-b', guestKernel, '--initrd', guestInitrd, '-m', '256M', '-L', '--cmdline', `console=ttyS0 quiet panic=-1 vmd.hostname=${NAME}`];

/** The TCP sockets (listening or not) a process has in a namespace. */
async function tcpSockets(netns: string, pid: number): Promise<string[]> {
  const ss = String((await execa('ip', ['netns', 'exec', netns, 'ss', '-Htanp'])).stdout);
  return ss.split('\n').filter((l) => l.includes(`pid=${pid},`));
}

t.test('a source vmd killed between completion and commit: its QEMU comes back paused, not running', async (t) => {
  const [a, b] = await twoHostsStart();
  let frozen: number | null = null;
  t.teardown(async () => {
    if (frozen !== null) try { process.kill(frozen, 'SIGCONT'); } catch { /* gone */ }
    await a.teardown();
    await b.teardown();
  });
  t.equal((await a.vmctl(START)).exitCode, 0, 'the guest starts on the source');
  await a.waitState(NAME, 'running', 30_000);
  await a.console(NAME, '\n', /vmd-guest: ready/, 90);

  const mig = migrateInBackground(a, ['-s', b.socket, NAME, HOST_ADDRS[1]]);
  let qemu: number | undefined;
  for (let i = 0; i < 600 && qemu === undefined; i++) {
    await new Promise((r) => setTimeout(r, 50));
    for (const pid of b.guestPids()) if ((await tcpSockets(b.netns, pid)).some((l) => l.startsWith('LISTEN'))) qemu = pid;
  }
  t.ok(qemu !== undefined, 'the target\'s QEMU listens for the migration');
  // The target's vmm holds vmctl's connection: frozen, it never answers the commit, so the source waits for it
  // with its guest paused after a completed migration.
  frozen = b.rolePid('vmm');
  t.ok(frozen !== null, 'the target has a vmm');
  process.kill(frozen!, 'SIGSTOP');
  // The stream ends when the migration completed: QEMU then has no TCP socket left.
  let streaming = true;
  for (let i = 0; i < 1200 && streaming; i++) {
    await new Promise((r) => setTimeout(r, 100));
    streaming = (await tcpSockets(b.netns, qemu!)).length > 0;
  }
  t.notOk(streaming, 'the migration stream ended');
  await new Promise((r) => setTimeout(r, 2000));
  t.ok(mig.running(), `vmctl waits for the target's word: ${mig.err()}`);
  const source = a.guestPids();
  t.equal(source.length, 1, 'the source QEMU is still there');

  await a.killDaemon();
  process.kill(frozen!, 'SIGCONT');
  frozen = null;
  t.equal(await mig.exited, 0, `the target took the guest: ${mig.err()}`);
  t.match(mig.err(), /did not confirm it left/, 'and vmctl says the source did not confirm');
  await b.waitState(NAME, 'running', 10_000);

  await a.startDaemon();
  const paused = await a.waitState(NAME, 'paused', 15_000).then(() => true, () => false);
  t.ok(paused, `the restarted source adopts its QEMU paused: ${(await a.vmctl(['status', NAME])).stdout}`);
  t.same(a.guestPids(), source, 'the same QEMU, neither killed nor replaced');
  t.match(a.daemonLog, `vm "${NAME}": pid ${source[0]} was left by an outgoing migration (qemu postmigrate): adopted paused`, 'the log names the VM');
  t.match(await sh(b, NAME, 'echo TARGET-$((40+2))'), 'TARGET-42', 'the guest runs at the target');

  // An operator who knows better (here it would run twice, harmless without disks) resumes it.
  t.equal((await a.vmctl(['unpause', NAME])).exitCode, 0, 'vmctl unpause');
  await a.waitState(NAME, 'running', 10_000);
  t.match(await sh(a, NAME, 'echo SOURCE-$((40+2))'), 'SOURCE-42', 'unpause resumes it at the source');
  for (const h of [a, b]) t.equal((await h.vmctl(['stop', '-f', '-w', NAME])).exitCode, 0, 'the guest stops');
});
