// End to end: guests outlive a kill -9 of every vmd process and are re-adopted; a killed QEMU is noticed at once.
// Configured VMs with staggered start, real guests under TCG, state checked through vmctl like an operator would.

import t from 'tap';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { guestInitrd, guestKernel, VmdHarness } from '../lib/vmd-harness.js';

const vm = (name: string): string =>
  `vm "${name}" {\n  memory 256M\n  boot "${guestKernel}"\n  initrd "${guestInitrd}"\n  cmdline "console=ttyS0 quiet panic=-1 vmd.hostname=${name}"\n}\n`;

const CONFIG = `staggered start parallel 2 delay 1\n${vm('alpha')}${vm('beta')}`;

t.test('kill -9 of vmd leaves guests running; the next vmd re-adopts them', async (t) => {
  const h = await VmdHarness.start({ config: CONFIG });
  t.teardown(() => h.teardown());

  // Enabled VMs from vm.conf start by themselves.
  const a = await h.waitState('alpha', 'running', 30_000);
  const b = await h.waitState('beta', 'running', 30_000);
  await h.console('alpha', '\n', /vmd-guest: ready/);
  await h.console('beta', '\n', /vmd-guest: ready/);
  const fields = (row: string): string[] => row.trim().split(/\s+/);
  const [idA, pidA] = fields(a);
  const [idB, pidB] = fields(b);

  await h.killDaemon();
  t.same(h.daemonPids(), [], 'every vmd process is gone');
  t.equal(h.guestPids().length, 2, 'both guests still run');

  await h.startDaemon();
  const a2 = fields(await h.waitState('alpha', 'running', 10_000));
  t.match(h.daemonLog, /accelerator: tcg \(.*, remembered from an earlier probe\)/, 'no second accelerator probe');
  const b2 = fields(await h.waitState('beta', 'running', 10_000));
  t.same([a2[0], a2[1]], [idA, pidA], 'alpha: same id, same QEMU');
  t.same([b2[0], b2[1]], [idB, pidB], 'beta: same id, same QEMU');
  t.match(await h.console('alpha', 'hostname\n', /\nalpha\r?\n/), /alpha/, 'console of a re-adopted guest works');

  const stopped = await h.vmctl(['stop', '-w', 'beta']);
  t.equal(stopped.exitCode, 0, stopped.stderr);
  t.match(stopped.stderr, /stopping vm beta: terminated vm \d+/);
  await h.waitState('beta', 'stopped', 5000);

  // kill -9 of a QEMU: status says stopped within a second and its run directory is gone.
  const runDir = join(h.stateDir, 'run', idA!);
  t.ok(existsSync(runDir), 'run directory exists while alpha runs');
  process.kill(Number(pidA), 'SIGKILL');
  const noticed = await h.pollStatus((vms) => vms.some((v) => v.name === 'alpha' && v.state === 'stopped'), 3000);
  t.ok(noticed <= 1000, `status says stopped ${noticed} ms after the kill`);
  await h.waitState('alpha', 'stopped', 1000);
  t.notOk(existsSync(runDir), 'nothing of the dead guest is left in the run directory');
  t.same(readdirSync(join(h.stateDir, 'run')), [], 'no run directories left at all');
  t.same(h.guestPids(), [], 'no QEMU left');
});

t.test('guests that died while vmd was down are cleaned up at start', async (t) => {
  const h = await VmdHarness.start({ config: `staggered start parallel 1 delay 1\n${vm('gamma')}` });
  t.teardown(() => h.teardown());
  const row = (await h.waitState('gamma', 'running', 30_000)).trim().split(/\s+/);
  await h.killDaemon();
  process.kill(Number(row[1]), 'SIGKILL');
  await new Promise((r) => setTimeout(r, 300));
  // vmd starts it again (it is enabled), but first it must notice the old one is gone.
  await h.startDaemon();
  t.match(h.daemonLog, /vm "gamma": recorded pid \d+ is gone, cleaning up/);
  const again = (await h.waitState('gamma', 'running', 30_000)).trim().split(/\s+/);
  t.equal(again[0], row[0], 'same id');
  t.not(again[1], row[1], 'a new QEMU');
});

t.test('a role that dies is restarted; one that keeps dying ends vmd in order, guests running', async (t) => {
  const h = await VmdHarness.start({ config: `staggered start parallel 1 delay 1\n${vm('delta')}` });
  t.teardown(() => h.teardown());
  const fields = (row: string): string[] => row.trim().split(/\s+/);
  const [id, pid] = fields(await h.waitState('delta', 'running', 30_000));
  await h.console('delta', '\n', /vmd-guest: ready/);

  const respawned = (role: 'control' | 'vmm', old: number): Promise<number> => h.roleRespawned(role, old);

  // control: the only door for users. Killed, it comes back and answers status (the listing republished to it).
  const control = h.rolePid('control');
  t.ok(control !== null, 'a control process runs');
  process.kill(control!, 'SIGKILL');
  // A client that connects while there is no control process waits for the next one instead of failing.
  const meanwhile = await h.vmctl(['status', 'delta']);
  t.equal(meanwhile.exitCode, 0, `status while control restarts: ${meanwhile.stderr}`);
  await respawned('control', control!);
  t.same(fields(await h.waitState('delta', 'running', 5000)).slice(0, 2), [id, pid], 'status after control restarted: same guest');
  t.match(h.daemonLog, /control process exited \(SIGKILL\)/);
  t.match(h.daemonLog, /restarting the control process/);

  // vmm: owns the guests' lifecycle. Killed while delta runs, the new one adopts it again: console, pause, unpause.
  const vmm = h.rolePid('vmm');
  process.kill(vmm!, 'SIGKILL');
  await respawned('vmm', vmm!);
  t.match(h.daemonLog, /restarting the vmm process/);
  t.match(await h.console('delta', 'hostname\n', /\ndelta\r?\n/), /delta/, 'console through the new vmm');
  const paused = await h.vmctl(['pause', 'delta']);
  t.equal(paused.exitCode, 0, paused.stderr);
  await h.waitState('delta', 'paused', 5000);
  const resumed = await h.vmctl(['unpause', 'delta']);
  t.equal(resumed.exitCode, 0, resumed.stderr);
  t.same(fields(await h.waitState('delta', 'running', 5000)).slice(0, 2), [id, pid], 'the same QEMU throughout');

  // A control that dies again and again: after the budget vmd gives up and exits in order, leaving delta running.
  let victim = h.rolePid('control')!;
  for (let deaths = 2; ; deaths++) {
    process.kill(victim, 'SIGKILL');
    if (deaths === 6) break;
    victim = await respawned('control', victim);
  }
  const code = await h.daemonExit(10_000);
  t.equal(code, 1, 'vmd exits with status 1');
  t.match(h.daemonLog, /fatal: control process: died 6 times within 60 s, giving up/);
  t.match(h.daemonLog, /exiting; guests keep running/);
  t.same(h.daemonPids(), [], 'no vmd process left');
  t.same(h.guestPids(), [Number(pid)], 'delta still runs');

  // The next vmd adopts it as after any exit.
  await h.startDaemon();
  t.same(fields(await h.waitState('delta', 'running', 10_000)).slice(0, 2), [id, pid], 're-adopted by the next vmd');
  const stopped = await h.vmctl(['stop', '-f', '-w', 'delta']);
  t.equal(stopped.exitCode, 0, stopped.stderr);
});
