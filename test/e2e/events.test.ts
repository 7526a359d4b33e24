// End to end: `vmctl events --json` follows a real guest through start, pause, unpause, a reboot of its own and a
// stop, in that order, with its link coming and going; a target that names no VM is refused.

import t from 'tap';
import { existsSync } from 'node:fs';
import { execa } from 'execa';
import { vmctlEntry } from '../../share/paths.js';
import { guestInitrd, guestKernel, VmdHarness } from '../lib/vmd-harness.js';

t.before(() => {
  if (!existsSync(guestKernel)) throw new Error(`test guest missing: run share/guest/build (${guestKernel})`);
});

const config = `vm "ev" {\n  disable\n  memory 256M\n  boot "${guestKernel}"\n  initrd "${guestInitrd}"\n  local interface\n}\n`;

/** `vmctl events ARGS` left running; resolves `ready` once vmd has acknowledged the subscription. */
function follow(h: VmdHarness, args: string[]): { lines: string[]; ready: Promise<void>; stop: () => Promise<void> } {
  const env = Object.entries(h.env).map(([k, v]) => `${k}=${v}`);
  const child = execa('/usr/bin/env', ['-i', ...env, process.execPath, vmctlEntry, 'events', ...args], {
    env: h.env, extendEnv: false, reject: false, stdin: 'ignore', cwd: h.dir,
  });
  const lines: string[] = [];
  let buf = '';
  let acked!: () => void;
  const ready = new Promise<void>((r) => { acked = r; });
  child.stdout?.on('data', (c: Buffer) => {
    buf += c.toString();
    const parts = buf.split('\n');
    buf = parts.pop() ?? '';
    for (const l of parts) {
      lines.push(l);
      if (l.includes('"vm.events.response"')) acked();
    }
  });
  return { lines, ready, stop: async () => { child.kill('SIGTERM'); await child; } };
}

t.test('events --json: start, pause, unpause, guest reboot and stop of a real guest, in order', async (t) => {
  const h = await VmdHarness.start({ config });
  t.teardown(() => h.teardown());
  const watch = follow(h, ['--json']);
  t.teardown(watch.stop);
  await watch.ready;

  t.equal((await h.vmctl(['start', 'ev'])).exitCode, 0);
  await h.console('ev', '\n', /vmd-guest: ready/, 120);
  t.equal((await h.vmctl(['pause', 'ev'])).exitCode, 0);
  t.equal((await h.vmctl(['unpause', 'ev'])).exitCode, 0);
  // A reboot from inside the guest: vmd restarts the same VM.
  await h.vmctl(['console', '-t', '1', 'ev'], { input: 'reboot -f\n' });
  const deadline = Date.now() + 120_000;
  while (!watch.lines.some((l) => l.includes('"reason":"reboot"')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  await h.console('ev', '\n', /vmd-guest: ready/, 120);
  const stopped = await h.vmctl(['stop', '-w', 'ev'], { timeoutMs: 90_000 });
  t.equal(stopped.exitCode, 0, stopped.stderr);
  await new Promise((r) => setTimeout(r, 500));
  await watch.stop();

  const frames = watch.lines.map((l) => JSON.parse(l) as { type: string; event?: { event: string; vm: string; reason?: string; link?: string } });
  t.equal(frames[0]?.type, 'vm.events.response', 'the acknowledgement comes first');
  const events = frames.slice(1).map((f) => f.event!);
  t.ok(events.every((e) => e.vm === 'ev'), 'every event names the VM');
  const lifecycle = events.filter((e) => !e.event.startsWith('link-')).map((e) => e.event + (e.reason === undefined ? '' : ` ${e.reason}`));
  t.same(lifecycle, ['started', 'paused', 'unpaused', 'rebooted guest-reset', 'started reboot', 'stopped guest-shutdown'],
    `in order: ${lifecycle.join(', ')}`);
  const all = events.map((e) => e.event);
  t.same(all.filter((e) => e.startsWith('link-')), ['link-up', 'link-down', 'link-up', 'link-down'], 'the link comes and goes with each run');
  t.ok(all.indexOf('link-up') < all.indexOf('started'), 'the link is up before the guest runs');
  t.equal(events.find((e) => e.event === 'link-up')?.link, 'vmd1i0');
});

t.test('events of a VM that does not exist are refused; text lines name the VM', async (t) => {
  const h = await VmdHarness.start({ config });
  t.teardown(() => h.teardown());
  const none = await h.vmctl(['events', 'nosuch']);
  t.equal(none.exitCode, 1);
  t.match(none.stderr, /vm "nosuch": not found/);
  const watch = follow(h, ['ev']);
  t.teardown(watch.stop);
  // The text form has no acknowledgement line: a reload (not for this VM) and a start tell when it follows.
  await new Promise((r) => setTimeout(r, 1500));
  t.equal((await h.vmctl(['reload'])).exitCode, 0);
  t.equal((await h.vmctl(['start', 'ev'])).exitCode, 0);
  const deadline = Date.now() + 30_000;
  while (!watch.lines.some((l) => / started /.test(l)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  await h.vmctl(['stop', '-f', '-w', 'ev']);
  await watch.stop();
  t.match(watch.lines.join('\n'), /^\d{4}-\d\d-\d\dT[\d:.]+Z link-up vm 1 ev link vmd1i0$/m);
  t.match(watch.lines.join('\n'), /^\S+ started vm 1 ev$/m);
  t.notMatch(watch.lines.join('\n'), /reloaded/, 'a VM\'s subscriber does not see the reload');
});
