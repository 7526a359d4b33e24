// End to end: who may do what through the control socket, decided on the peer uid the kernel reports.
// Real users (created for the test if missing), a real vmd and a real guest; and a flood of garbage at the socket.

import t from 'tap';
import { connect } from 'node:net';
import { getgrnam, getpwnam } from '../../share/users.js';
import { encodeFrame } from '../../share/frame.js';
import { ensureUsers } from '../lib/users.js';
import { guestInitrd, guestKernel, VmdHarness } from '../lib/vmd-harness.js';

const USERS = ['vmdtest1', 'vmdtest2'];
const GROUP = 'vmdtest';

t.test('owner may stop its VM, another user may not; reload is root-only', async (t) => {
  const cleanupUsers = await ensureUsers(USERS, GROUP);
  t.teardown(cleanupUsers);
  // Spawning with a uid drops supplementary groups, so the socket's group is given as the primary gid.
  const gid = getgrnam(GROUP)!.gid;
  const u1 = { uid: getpwnam('vmdtest1')!.uid, gid };
  const u2 = { uid: getpwnam('vmdtest2')!.uid, gid };
  const h = await VmdHarness.start({
    config: `socket owner root:${GROUP}\nvm "owned" {\n  disable\n  memory 256M\n  owner vmdtest1\n` +
      `  boot "${guestKernel}"\n  initrd "${guestInitrd}"\n  cmdline "console=ttyS0 quiet panic=-1"\n}\n`,
  });
  t.teardown(() => h.teardown());

  // Everyone with socket access sees every VM (OpenBSD).
  const seen = await h.vmctl(['status'], { uid: u2.uid, gid: u2.gid });
  t.match(seen.stdout, /vmdtest1  stopped owned/);

  // The owner starts it; the other user can neither stop nor pause it.
  const started = await h.vmctl(['start', 'owned'], { uid: u1.uid, gid: u1.gid });
  t.equal(started.exitCode, 0, started.stderr);
  await h.waitState('owned', 'running');
  const denied = await h.vmctl(['stop', 'owned'], { uid: u2.uid, gid: u2.gid });
  t.equal(denied.exitCode, 1);
  t.match(denied.stderr, /Operation not permitted/);
  const deniedPause = await h.vmctl(['pause', 'owned'], { uid: u2.uid, gid: u2.gid });
  t.equal(deniedPause.exitCode, 1);
  t.match(deniedPause.stderr, /Operation not permitted/);

  // Root-only commands are refused by the control gate.
  const reload = await h.vmctl(['reload'], { uid: u2.uid, gid: u2.gid });
  t.equal(reload.exitCode, 1);
  t.match(reload.stderr, /^vmctl: command failed: Operation not permitted/);

  // A non-root user may not invent VMs of its own.
  const adhoc = await h.vmctl(['start', 'mine', '-b', guestKernel, '-m', '64M'], { uid: u2.uid, gid: u2.gid });
  t.equal(adhoc.exitCode, 1);
  t.match(adhoc.stderr, /Operation not permitted/);

  const stopped = await h.vmctl(['stop', '-w', 'owned'], { uid: u1.uid, gid: u1.gid });
  t.equal(stopped.exitCode, 0, stopped.stderr);
  t.match(stopped.stderr, /stopping vm owned: terminated vm \d+/);
});

t.test('10,000 malformed messages leave the daemon answering', async (t) => {
  const h = await VmdHarness.start();
  t.teardown(() => h.teardown());
  let seed = 42;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const junk = (i: number): Buffer => {
    switch (i % 6) {
      case 0: return Buffer.from(Array.from({ length: 1 + rand(64) }, () => rand(256)));
      case 1: { const b = Buffer.alloc(4); b.writeUInt32BE(0xfffffff0); return b; }
      case 2: return encodeFrame({ v: 1, id: i, type: 'vm.start.request', target: 'x'.repeat(500) });
      case 3: return encodeFrame({ v: 99, id: i, type: 'vm.status.request' });
      case 4: return encodeFrame([1, 2, 3]);
      default: return encodeFrame({ v: 1, id: i, type: 'vm.stop.request', target: 'a', force: 'yes', wait: false });
    }
  };
  let replies = 0;
  const batch = 100;
  for (let start = 0; start < 10_000; start += batch) {
    await Promise.all(Array.from({ length: batch }, (_, k) => new Promise<void>((resolve) => {
      const s = connect(h.socket);
      const timer = setTimeout(() => { s.destroy(); resolve(); }, 5000);
      s.on('connect', () => s.end(junk(start + k)));
      s.on('data', () => { replies++; });
      s.on('error', () => undefined);
      s.on('close', () => { clearTimeout(timer); resolve(); });
    })));
  }
  t.ok(replies > 5000, `most malformed messages got an error reply (${replies})`);
  const status = await h.vmctl(['status']);
  t.match(status.stdout, /^ {3}ID {3}PID VCPUS/, 'daemon still answers');
  t.equal(h.daemonPids().length, 3, 'parent, vmm and control all still running');
  t.notMatch(h.daemonLog, /process exited/, 'no role died');
});
