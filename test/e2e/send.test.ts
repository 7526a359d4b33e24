// End to end: `vmctl send` and `vmctl receive` with the real guest. Its shell state and uptime survive a trip through
// a file and through a pipe into a second vmd; a truncated or foreign stream fails clearly and leaves nothing behind.

import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { vmctlEntry } from '../../share/paths.js';
import { STREAM_HEADER_BYTES, STREAM_MAGIC } from '../../share/stream.js';
import { guestInitrd, guestKernel, VmdHarness } from '../lib/vmd-harness.js';

const startArgs = (name: string): string[] => ['start', name, '-b', guestKernel, '--initrd', guestInitrd, '-m', '256M', '-L'];

/** A fresh vmd whose guest `src` booted and was sent to a file (and so is gone). */
async function sentToFile(t: Test): Promise<{ h: VmdHarness; file: string }> {
  const h = await VmdHarness.start();
  t.teardown(() => h.teardown());
  t.equal((await h.vmctl(startArgs('src'))).exitCode, 0);
  await h.console('src', '\n', /vmd-guest: ready/);
  const file = join(h.dir, 'src.vmstate');
  t.equal((await h.vmctlFiles(['send', 'src'], { stdout: file })).exitCode, 0);
  await h.waitState('src', 'gone', 10_000);
  return { h, file };
}

/** The guest's uptime in seconds, read on its console. */
async function uptime(h: VmdHarness, name: string): Promise<number> {
  const out = await h.console(name, 'echo UP-$(cut -d" " -f1 /proc/uptime)-UP\n', /UP-[\d.]+-UP/);
  const all = [...out.matchAll(/UP-([\d.]+)-UP/g)];
  return Number(all[all.length - 1]![1]);
}

/** Link rows of `vmctl links` for a VM: [link, mac]. */
async function links(h: VmdHarness, name: string): Promise<Array<[string, string]>> {
  const r = await h.vmctl(['links', '--json', name]);
  const lines = r.stdout.trim().split('\n').filter((l) => l.length > 0);
  const reply = JSON.parse(lines[lines.length - 1] ?? '{}') as { links?: Array<{ link: string; lladdr: string }> };
  return (reply.links ?? []).map((l) => [l.link, l.lladdr]);
}

/** Host links in the harness namespace whose names vmd gives taps. */
async function taps(h: VmdHarness): Promise<string[]> {
  const r = await execa('ip', ['-n', h.netns, '-o', 'link', 'show'], { reject: false });
  return String(r.stdout).split('\n').map((l) => l.split(': ')[1]?.split('@')[0] ?? '').filter((n) => /^vmd\d+i\d+$/.test(n));
}

t.before(() => {
  if (!existsSync(guestKernel)) throw new Error(`test guest missing: run share/guest/build (${guestKernel})`);
});

t.test('send to a file, receive under another name: shell state, uptime, MAC survive', async (t) => {
  const h = await VmdHarness.start();
  t.teardown(() => h.teardown());
  const started = await h.vmctl(startArgs('orig'));
  t.equal(started.exitCode, 0, started.stderr);
  await h.console('orig', '\n', /vmd-guest: ready/);
  await h.console('orig', 'export KEEPME=kept-$((6*7)); echo SET-$KEEPME\n', /SET-kept-42/);
  const [before] = await links(h, 'orig');
  t.ok(before, 'the guest has a link');
  const up1 = await uptime(h, 'orig');

  const file = join(h.dir, 'orig.vmstate');
  const hostT0 = Date.now();
  const sent = await h.vmctlFiles(['send', 'orig'], { stdout: file });
  t.equal(sent.exitCode, 0, `send: ${sent.stderr}`);
  t.equal(sent.stderr, '', 'send is silent on success (no progress on a pipe)');
  t.ok(readFileSync(file).subarray(0, STREAM_MAGIC.length).equals(STREAM_MAGIC), 'the file starts with the magic');
  t.ok(statSync(file).size > 1024 * 1024, `the file holds the guest state (${statSync(file).size} bytes)`);
  await h.waitState('orig', 'gone', 10_000);
  t.equal(h.guestPids().length, 0, 'the sent guest is stopped');

  const received = await h.vmctlFiles(['receive', 'copy'], { stdin: file });
  t.equal(received.exitCode, 0, `receive: ${received.stderr}\n${h.daemonLog}`);
  t.match(received.stderr, /^vmctl: started vm \d+ successfully, tty \/\S+\/console$/);
  const hostElapsed = (Date.now() - hostT0) / 1000;
  await h.waitState('copy', 'running', 5000);

  const echoed = await h.console('copy', 'echo GOT-$KEEPME\n', /GOT-\S+/);
  t.match(echoed, /GOT-kept-42/, 'the shell variable is still set: the same shell, not a new boot');
  const up2 = await uptime(h, 'copy');
  t.ok(up2 >= up1, `uptime continues (${up1} s before, ${up2} s after)`);
  t.ok(up2 - up1 < hostElapsed + 10, `and does not jump (${(up2 - up1).toFixed(1)} s guest, ${hostElapsed.toFixed(1)} s host)`);

  const [after] = await links(h, 'copy');
  t.ok(after, 'the received guest has a link');
  t.equal(after?.[1], before?.[1], 'same MAC');
  t.equal(after?.[0], before?.[0], 'on a link of the same name: the id it had was free again, so it kept it');
  t.same(await taps(h), [after?.[0]], 'only the new link exists on the host');

  // The received guest works as any other: stop it.
  const stopped = await h.vmctl(['stop', '-f', '-w', 'copy']);
  t.equal(stopped.exitCode, 0, stopped.stderr);
  t.same(h.guestPids(), []);
});

t.test('send through a pipe into a second vmd', async (t) => {
  const a = await VmdHarness.start();
  t.teardown(() => a.teardown());
  const b = await VmdHarness.start();
  t.teardown(() => b.teardown());
  // Each vmd lives in its own namespace: the guest's local link is re-made in b's.
  t.equal((await a.vmctl(startArgs('mover'))).exitCode, 0);
  await a.console('mover', '\n', /vmd-guest: ready/);
  await a.console('mover', 'export WHERE=moved; echo SET-$WHERE\n', /SET-moved/);
  const up1 = await uptime(a, 'mover');

  const sender = spawn('/usr/bin/env', [process.execPath, vmctlEntry, 'send', 'mover'], { env: a.env, stdio: ['ignore', 'pipe', 'pipe'] });
  const receiver = spawn('/usr/bin/env', [process.execPath, vmctlEntry, 'receive', 'mover'], { env: b.env, stdio: ['pipe', 'ignore', 'pipe'] });
  sender.stdout!.pipe(receiver.stdin!);
  let senderErr = '';
  let receiverErr = '';
  sender.stderr!.on('data', (c: Buffer) => { senderErr += c.toString(); });
  receiver.stderr!.on('data', (c: Buffer) => { receiverErr += c.toString(); });
  const exit = (p: ReturnType<typeof spawn>): Promise<number> => new Promise((r) => p.on('close', (code) => r(code ?? 1)));
  const [sc, rc] = await Promise.all([exit(sender), exit(receiver)]);
  t.equal(sc, 0, `send exits 0: ${senderErr}`);
  t.equal(rc, 0, `receive exits 0: ${receiverErr}\n${b.daemonLog}`);
  t.match(receiverErr, /started vm 1 successfully/);

  await a.waitState('mover', 'gone', 10_000);
  t.same(a.guestPids(), [], 'nothing left on the sending vmd');
  t.match(await b.console('mover', 'echo AT-$WHERE\n', /AT-\S+/), /AT-moved/, 'the shell state moved');
  t.ok((await uptime(b, 'mover')) >= up1, 'uptime continues');
  t.equal(b.guestPids().length, 1);
});

t.test('a truncated, foreign or newer stream: clear errors, nothing left', async (t) => {
  const { h, file } = await sentToFile(t);
  const whole = readFileSync(file);
  const runDirs = (): string[] => (existsSync(join(h.stateDir, 'run')) ? readdirSync(join(h.stateDir, 'run')) : []);

  const cut = join(h.dir, 'cut.vmstate');
  writeFileSync(cut, whole.subarray(0, Math.floor(whole.length / 2)));
  const truncated = await h.vmctlFiles(['receive', 'half'], { stdin: cut });
  t.equal(truncated.exitCode, 1);
  t.match(truncated.stderr, /^vmctl: vm "half": receive: stream truncated after \d+ bytes of guest state\n/, 'the truncation is named');
  const status = await h.vmctl(['status']);
  t.notMatch(status.stdout, / half$/m, 'no guest left');
  t.same(h.guestPids(), [], 'no QEMU left');
  t.same(await taps(h), [], 'no link left');
  t.same(runDirs(), [], 'no run directory left');

  const foreign = join(h.dir, 'foreign');
  writeFileSync(foreign, 'this is not a vm\n'.repeat(10));
  const bad = await h.vmctlFiles(['receive', 'x'], { stdin: foreign });
  t.equal(bad.exitCode, 1);
  t.match(bad.stderr, /^vmctl: receive: stream: not a vmd send stream \(bad magic\)\n/);

  const newer = Buffer.from(whole);
  newer.writeUInt32BE(99, STREAM_MAGIC.length);
  const newerFile = join(h.dir, 'newer');
  writeFileSync(newerFile, newer);
  const tooNew = await h.vmctlFiles(['receive', 'x'], { stdin: newerFile });
  t.equal(tooNew.exitCode, 1);
  t.match(tooNew.stderr, /^vmctl: receive: stream: version 99 is newer than this vmd understands \(1\)\n/);

  const shortHeader = join(h.dir, 'short');
  writeFileSync(shortHeader, whole.subarray(0, STREAM_HEADER_BYTES - 3));
  const short = await h.vmctlFiles(['receive', 'x'], { stdin: shortHeader });
  t.equal(short.exitCode, 1);
  t.match(short.stderr, /^vmctl: receive: stream: truncated in the header \(13 of 16 bytes\)$/);

  t.same(h.guestPids(), [], 'still nothing running');
  t.same(runDirs(), []);
  // The whole file still works afterwards: the failures left nothing in the way.
  const ok = await h.vmctlFiles(['receive', 'whole'], { stdin: file });
  t.equal(ok.exitCode, 0, ok.stderr);
  await h.vmctl(['stop', '-f', '-w', 'whole']);
});

t.test('a send whose reader goes away fails, and the guest carries on', async (t) => {
  const h = await VmdHarness.start();
  t.teardown(() => h.teardown());
  t.equal((await h.vmctl(startArgs('stay'))).exitCode, 0);
  await h.console('stay', '\n', /vmd-guest: ready/);
  await h.console('stay', 'export STILL=here; echo SET-$STILL\n', /SET-here/);
  const pid = (await h.waitState('stay', 'running')).trim().split(/\s+/)[1];

  // `vmctl send stay | head -c 4M`: the reader stops after 4 MB of a ~95 MB stream.
  const sender = spawn('/usr/bin/env', [process.execPath, vmctlEntry, 'send', 'stay'], { env: h.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let got = 0;
  await new Promise<void>((resolve) => {
    sender.stdout!.on('data', (c: Buffer) => {
      got += c.length;
      if (got >= 4 * 1024 * 1024) {
        sender.stdout!.destroy();
        resolve();
      }
    });
    sender.on('close', () => resolve());
  });
  const code = await new Promise<number>((r) => (sender.exitCode !== null ? r(sender.exitCode) : sender.on('close', (c) => r(c ?? 1))));
  t.equal(code, 1, 'send exits 1');

  const row = await h.waitState('stay', 'running', 10_000);
  t.equal(row.trim().split(/\s+/)[1], pid, 'the same QEMU runs on');
  t.match(await h.console('stay', 'echo STILL-$STILL\n', /STILL-\S+/), /STILL-here/, 'and the guest resumed where it was');
  t.match(h.daemonLog, /vm "stay": send failed, the guest stays: vm "stay": send: the receiving end went away/);
  // A later send of the same guest works: nothing of the failed one is in the way.
  const file = join(h.dir, 'stay.vmstate');
  const again = await h.vmctlFiles(['send', 'stay'], { stdout: file });
  t.equal(again.exitCode, 0, again.stderr);
  await h.waitState('stay', 'gone', 10_000);
});

t.test('a receive cut off by a vmd crash leaves nothing once vmd is back', async (t) => {
  const { h, file } = await sentToFile(t);

  // A receive whose sender stalls after the header and a little state: the guest waits in QEMU for the rest.
  const receiver = spawn('/usr/bin/env', [process.execPath, vmctlEntry, 'receive', 'stalled'], { env: h.env, stdio: ['pipe', 'ignore', 'pipe'] });
  receiver.stdin!.write(readFileSync(file).subarray(0, 1024 * 1024));
  await h.waitState('stalled', 'starting', 15_000).catch(async () => h.waitState('stalled', 'running', 1000));
  t.equal(h.guestPids().length, 1, 'its QEMU is waiting');
  await h.killDaemon();
  receiver.stdin!.end();
  await new Promise((r) => receiver.on('close', r));
  await h.startDaemon();
  await h.waitState('stalled', 'gone', 15_000);
  t.same(h.guestPids(), [], 'the half-received guest was terminated');
  t.same(await taps(h), [], 'and its link removed');
  // QEMU ends its incoming migration when vmm's connection goes with vmd; one still waiting (vmd died before
  // connecting) is refused on re-adoption. Either way the restarted vmd says what it cleaned up.
  t.match(h.daemonLog, /vm "stalled": (recorded pid \d+ is gone, cleaning up|cannot re-adopt pid \d+: vm "stalled": an unfinished receive)/);
});

t.test('send and receive are root only (OpenBSD control gate); unknown vms are named', async (t) => {
  // nobody may use the socket (its group), so the refusal comes from vmd's gate, not from the file mode.
  const h = await VmdHarness.start({ config: 'socket owner root:nogroup\n' });
  t.teardown(() => h.teardown());
  t.equal((await h.vmctl(startArgs('mine'))).exitCode, 0);
  const asNobody = (args: string[], input?: Buffer) => execa('/usr/bin/env', [process.execPath, vmctlEntry, ...args], {
    env: h.env, extendEnv: false, reject: false, uid: 65534, gid: 65534, stdout: 'pipe',
    ...(input === undefined ? { stdin: 'ignore' as const } : { input }),
  });
  const send = await asNobody(['send', 'mine']);
  t.equal(send.exitCode, 1);
  // match, not equal: tap's process hooks, inherited through env(1), complain when a non-root child exits.
  t.match(String(send.stderr), /^vmctl: command failed: Operation not permitted$/m);
  t.equal(String(send.stdout), '', 'nothing written');
  await h.waitState('mine', 'running', 2000);

  const file = join(h.dir, 'mine.vmstate');
  t.equal((await h.vmctlFiles(['send', 'mine'], { stdout: file })).exitCode, 0);
  const receive = await asNobody(['receive', 'theirs'], readFileSync(file));
  t.equal(receive.exitCode, 1);
  t.match(String(receive.stderr), /^vmctl: command failed: Operation not permitted$/m);
  t.same(h.guestPids(), [], 'nothing started');

  const unknown = await h.vmctlFiles(['send', 'nosuch'], { stdout: join(h.dir, 'none') });
  t.equal(unknown.exitCode, 1);
  t.equal(unknown.stderr, 'vmctl: vm "nosuch": not found');
  const exists = await h.vmctlFiles(['receive', 'dup'], { stdin: file });
  t.equal(exists.exitCode, 0, exists.stderr);
  const again = await h.vmctlFiles(['receive', 'dup'], { stdin: file });
  t.equal(again.exitCode, 1);
  t.match(again.stderr, /^vmctl: vm "dup": already exists/);
  t.equal(h.guestPids().length, 1, 'the refused receive started nothing');
  await h.vmctl(['stop', '-f', '-w', 'dup']);
});
