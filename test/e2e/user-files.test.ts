// End to end: a non-root user speaking the socket protocol itself (no vmctl checks) cannot have vmd open a file
// it could not open itself: another user's 0700 directory, a symlink to a root-only file, a symlink swapped mid-request.

import t, { type Test } from 'tap';
import { chmodSync, chownSync, lchownSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { packageRoot } from '../../share/paths.js';
import { getgrnam, getpwnam } from '../../share/users.js';
import { ensureUsers } from '../lib/users.js';
import { VmdHarness } from '../lib/vmd-harness.js';

const USERS = ['vmdopen1', 'vmdopen2'];
const GROUP = 'vmdopen';
const frameModule = pathToFileURL(join(packageRoot, 'dist', 'share', 'frame.js')).href;

interface Reply {
  readonly type: string;
  readonly error?: { readonly code: string; readonly message: string };
}

// A raw protocol client run as `user`: `count` start requests for an instance of "tmpl" on `disk`, one reply each.
const clientScript = `
  import { connect } from 'node:net';
  import { once } from 'node:events';
  import { encodeFrame, readFrames } from ${JSON.stringify(frameModule)};
  const [socket, disk, count] = process.argv.slice(1);
  const s = connect(socket);
  const reader = readFrames(s);
  await once(s, 'connect');
  for (let i = 1; i <= Number(count); i++) {
    const reply = new Promise((resolve) => reader.once('message', resolve));
    s.write(encodeFrame({ v: 1, id: i, type: 'vm.start.request', target: 'x', options: { instanceOf: 'tmpl', disks: [disk] } }));
    console.log(JSON.stringify(await reply));
  }
  s.end();
`;

async function startRequests(h: VmdHarness, user: { uid: number; gid: number }, disk: string, count: number): Promise<Reply[]> {
  // env -i: tap's NODE_OPTIONS hooks must not follow a process of another user (see VmdHarness.cleanEnv).
  const r = await execa('/usr/bin/env', ['-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, process.execPath,
    '--input-type=module', '-e', clientScript, h.socket, disk, String(count)], {
    uid: user.uid, gid: user.gid, reject: false, timeout: 300_000,
  });
  if (r.exitCode !== 0) throw new Error(`protocol client failed (${r.exitCode}): ${r.stderr}`);
  return r.stdout.split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l) as Reply);
}

// Files and a daemon: a 4-byte "firmware" makes any QEMU that gets this far fail at once, so no guest outlives a try.
async function setup(t: Test): Promise<{ h: VmdHarness; u1: { uid: number; gid: number }; u2: { uid: number; gid: number } }> {
  t.teardown(await ensureUsers(USERS, GROUP, { primary: true }));
  const gid = getgrnam(GROUP)!.gid;
  const u1 = { uid: getpwnam('vmdopen1')!.uid, gid };
  const u2 = { uid: getpwnam('vmdopen2')!.uid, gid };
  const h = await VmdHarness.start();
  t.teardown(() => h.teardown());
  const bios = join(h.dir, 'bios');
  writeFileSync(bios, 'junk', { mode: 0o644 });
  writeFileSync(h.configPath, `socket owner root:${GROUP}\n` +
    `vm "tmpl" {\n  disable\n  memory 64M\n  boot "${bios}"\n  allow instance { disk, owner vmdopen1 }\n}\n`);
  await h.stopDaemon();
  await h.startDaemon();
  return { h, u1, u2 };
}

// A qcow2 image made by root, then handed to uid with mode.
async function qcow2(path: string, mode: number, uid: number, gid: number, backing?: string): Promise<string> {
  const args = backing === undefined ? [] : ['-u', '-b', backing, '-F', 'qcow2'];
  await execa('qemu-img', ['create', '-q', '-f', 'qcow2', ...args, path, '1M']);
  chownSync(path, uid, gid);
  chmodSync(path, mode);
  return path;
}

t.test('a file the user cannot open is refused, whatever its own mode bits say', async (t) => {
  const { h, u1, u2 } = await setup(t);
  // World-writable, but inside vmdopen2's 0700 directory: vmdopen1 cannot reach it.
  const home2 = join(h.dir, 'home2');
  mkdirSync(home2, { mode: 0o700 });
  chownSync(home2, u2.uid, u2.gid);
  const hidden = join(home2, 'disk.img');
  writeFileSync(hidden, Buffer.alloc(1 << 20));
  chownSync(hidden, u2.uid, u2.gid);
  chmodSync(hidden, 0o666);
  const [r1] = await startRequests(h, u1, `raw:${hidden}`, 1);
  t.match(r1, { type: 'error', error: { code: 'ERR_DISK_MISSING', message: `vm "x": disk ${hidden}: permission denied` } });

  // A symlink of vmdopen1's own, in its own directory, to a root-only image.
  const home1 = join(h.dir, 'home1');
  mkdirSync(home1, { mode: 0o755 });
  chownSync(home1, u1.uid, u1.gid);
  const secret = await qcow2(join(h.dir, 'secret.qcow2'), 0o600, 0, 0);
  const link = join(home1, 'disk.qcow2');
  symlinkSync(secret, link);
  const [r2] = await startRequests(h, u1, `qcow2:${link}`, 1);
  t.match(r2, { type: 'error', error: { code: 'ERR_DISK_MISSING', message: `vm "x": disk ${link}: permission denied` } });
  t.notMatch(h.daemonLog, /started x/, 'no guest was started');
});

t.test('a symlink swapped during the requests never gets a root-only image opened', async (t) => {
  const { h, u1 } = await setup(t);
  const home1 = join(h.dir, 'home1');
  mkdirSync(home1, { mode: 0o755 });
  chownSync(home1, u1.uid, u1.gid);
  // The user's own image names a backing file that does not exist: as far as a start on it can get.
  const good = await qcow2(join(home1, 'good.qcow2'), 0o600, u1.uid, u1.gid, 'missing.qcow2');
  // Root's image is complete: a start that opened it would get as far as QEMU (and its 4-byte firmware).
  const secret = await qcow2(join(h.dir, 'secret.qcow2'), 0o600, 0, 0);
  const link = join(home1, 'disk.qcow2');
  symlinkSync(good, link);
  lchownSync(link, u1.uid, u1.gid);
  // The attacker flips the link as fast as it can, atomically (rename), for as long as the requests run.
  const swapper = execa('/usr/bin/env', ['-i', process.execPath, '-e', `
    const fs = require('node:fs');
    const [good, secret, link] = process.argv.slice(1);
    for (let i = 0; ; i++) { fs.symlinkSync(i % 2 ? good : secret, link + '.new'); fs.renameSync(link + '.new', link); }
  `, good, secret, link], { uid: u1.uid, gid: u1.gid, reject: false });
  t.teardown(() => { swapper.kill('SIGKILL'); });

  const count = 300;
  const replies = await startRequests(h, u1, `qcow2:${link}`, count);
  swapper.kill('SIGKILL');
  t.equal(replies.length, count, `${count} requests answered`);
  const refused = `vm "x": disk ${link}: permission denied`;
  const ownImage = `vm "x": disk base ${home1}/missing.qcow2: no such file`;
  const tally = new Map<string, number>();
  for (const r of replies) {
    const what = r.type === 'error' ? r.error!.message : r.type;
    tally.set(what, (tally.get(what) ?? 0) + 1);
  }
  const reachedQemu = replies.filter((r) => r.type !== 'error' || r.error!.code === 'ERR_QEMU').length;
  t.equal(reachedQemu, 0, 'no start got as far as QEMU, which only the root-only image allows');
  t.same([...tally.keys()].filter((m) => m !== refused && m !== ownImage), [], `only the two expected answers: ${JSON.stringify([...tally])}`);
  t.ok((tally.get(refused) ?? 0) >= 5 && (tally.get(ownImage) ?? 0) >= 5, `the swap was live: ${JSON.stringify([...tally])}`);
  t.notMatch(h.daemonLog, /started x/, 'no guest was started');
});
