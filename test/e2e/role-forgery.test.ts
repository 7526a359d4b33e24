// End to end: a subverted control or vmm role (messages written into its real channel to the root parent from outside)
// that sends one forged field is killed and restarted, what it asked for does not happen, and vmd keeps answering.

import t from 'tap';
import { execa } from 'execa';
import { statSync } from 'node:fs';
import { getgrnam, getpwnam } from '../../share/users.js';
import { ensureUsers } from '../lib/users.js';
import { guestInitrd, guestKernel, VmdHarness } from '../lib/vmd-harness.js';
import { injectBytes, injectIntoChannel } from '../lib/role-inject.js';

const vm = (name: string, disable: boolean): string =>
  `vm "${name}" {\n${disable ? '  disable\n' : ''}  memory 256M\n  boot "${guestKernel}"\n  initrd "${guestInitrd}"\n` +
  `  cmdline "console=ttyS0 quiet panic=-1 vmd.hostname=${name}"\n}\n`;

/** Waits until the role runs with a pid other than `old`. */
const respawned = (h: VmdHarness, role: 'control' | 'vmm', old: number): Promise<number> => h.roleRespawned(role, old);

const fields = (row: string): string[] => row.trim().split(/\s+/);

t.test('control asking root to start a VM with a forged field is restarted, and the VM is not started', async (t) => {
  const h = await VmdHarness.start({ config: vm('victim', true) });
  t.teardown(() => h.teardown());
  const control = h.rolePid('control')!;
  t.ok(control > 0, 'a control process runs');

  // As control would forward a client's start, from root, with one key no reader knows.
  const start = { v: 1, id: 1, type: 'vm.start.request', target: 'victim', options: {} };
  await injectIntoChannel(control, [{ type: 'control.request', peer: 1, uid: 0, gid: 0, request: { ...start, forged: 'x' } }]);
  const second = await respawned(h, 'control', control);
  t.match(h.daemonLog, /vmd: control process: malformed message: control\.request request: vm\.start\.request: unknown field "forged"\n/);
  t.match(h.daemonLog, /restarting the control process/);

  // A field of the right shape but out of range: an id no control hands out.
  await injectIntoChannel(second, [{ type: 'control.request', peer: 0, uid: 0, gid: 0, request: start }]);
  const third = await respawned(h, 'control', second);
  t.match(h.daemonLog, /vmd: control process: malformed message: control\.request: field "peer" must be an integer from 1 to \d+\n/);

  // Below the messages: a line that is not JSON, which Node's own channel code would throw on inside the root parent.
  await injectBytes(third, 'not json\n');
  await respawned(h, 'control', third);
  t.match(h.daemonLog, /vmd: control process: malformed message: channel: a line that is not JSON\n/);

  // Nothing it asked for: long enough for a start to have shown (status shows a QEMU within a second of a start).
  await new Promise((r) => setTimeout(r, 3000));
  t.same(h.guestPids(), [], 'no QEMU was started');
  const status = await h.vmctl(['status', 'victim']);
  t.equal(status.exitCode, 0, `vmd still answers: ${status.stderr}`);
  t.equal(fields(status.stdout.split('\n').find((l) => l.trim().endsWith(' victim')) ?? '')[7], 'stopped', 'victim is stopped');
  t.notMatch(h.daemonLog, /victim.*start|starting vm/i, 'no start was logged');
});

t.test('control claiming root for a user\'s connection, or for one it never got, is restarted; nothing starts', async (t) => {
  const USER = 'vmdforge1';
  const GROUP = 'vmdforge';
  t.teardown(await ensureUsers([USER], GROUP));
  const user = { uid: getpwnam(USER)!.uid, gid: getgrnam(GROUP)!.gid };
  const h = await VmdHarness.start({ config: `socket owner root:${GROUP}\n${vm('victim', true)}` });
  t.teardown(() => h.teardown());
  t.equal((await h.vmctl(['log', 'verbose'])).exitCode, 0);
  // A user's connection, held open: the parent hands it to control with the kernel's uid for it.
  const holder = execa(process.execPath, ['-e', `const s = require('net').connect(${JSON.stringify(h.socket)}); s.on('connect', () => console.log('connected')); setTimeout(() => {}, 60000);`], {
    uid: user.uid, gid: user.gid, buffer: false, reject: false,
  });
  t.teardown(() => { holder.kill('SIGKILL'); });
  const deadline = Date.now() + 10_000;
  let peer: number | null = null;
  while (peer === null && Date.now() < deadline) {
    const m = [...h.daemonLog.matchAll(new RegExp(`control connection (\\d+): uid ${user.uid} `, 'g'))].at(-1);
    if (m !== undefined) peer = Number(m[1]);
    else await new Promise((r) => setTimeout(r, 50));
  }
  t.ok(peer !== null && peer > 0, `the parent logged the user's connection (${peer})`);
  const control = h.rolePid('control')!;
  const start = { v: 1, id: 1, type: 'vm.start.request', target: 'victim', options: {} };
  // Well-formed in every field: only the uid is a lie. Before, root took control's word for it and started the VM.
  await injectIntoChannel(control, [{ type: 'control.request', peer: peer!, uid: 0, gid: 0, request: start }]);
  const second = await respawned(h, 'control', control);
  t.match(h.daemonLog, new RegExp(`malformed message: control\\.request: connection ${peer} is uid ${user.uid} gid ${user.gid}, not uid 0 gid 0\n`));
  // A connection id the parent never handed out.
  await injectIntoChannel(second, [{ type: 'control.request', peer: 999_999, uid: 0, gid: 0, request: start }]);
  await respawned(h, 'control', second);
  t.match(h.daemonLog, /malformed message: control\.request: connection 999999 was never handed to control\n/);
  await new Promise((r) => setTimeout(r, 3000));
  t.same(h.guestPids(), [], 'no QEMU was started');
  t.notMatch(h.daemonLog, /started victim/, 'no start was logged');
  const status = await h.vmctl(['status', 'victim']);
  t.equal(status.exitCode, 0, `vmd still answers: ${status.stderr}`);
});

t.test('vmm reporting a running guest paused or gone with a forged field is restarted; the guest runs on, adopted', async (t) => {
  const h = await VmdHarness.start({ config: vm('guest', false) });
  t.teardown(() => h.teardown());
  const [id, pid] = fields(await h.waitState('guest', 'running', 30_000));
  await h.console('guest', '\n', /vmd-guest: ready/);
  const vmm = h.rolePid('vmm')!;

  // The state the parent would publish, with a key no reader knows; then an exit with a reason that forges a log line.
  await injectIntoChannel(vmm, [{ type: 'vm.state', vmId: Number(id), state: 'paused', forged: true }]);
  const second = await respawned(h, 'vmm', vmm);
  t.match(h.daemonLog, /vmd: vmm process: malformed message: vm\.state: unknown field "forged"\n/);
  await h.console('guest', '\n', /vmd-guest: ready|[#$] /);
  await injectIntoChannel(second, [{ type: 'vm.exited', vmId: Number(id), pid: Number(pid), reason: 'guest-shutdown\nvmd: forged line' }]);
  await respawned(h, 'vmm', second);
  t.match(h.daemonLog, /vmd: vmm process: malformed message: vm\.exited: field "reason" must be a word/);
  t.notMatch(h.daemonLog, /forged line/, 'the forged text reached no log');

  t.same(fields(await h.waitState('guest', 'running', 10_000)).slice(0, 2), [id, pid], 'still running, the same QEMU');
  t.same(h.guestPids(), [Number(pid)], 'its QEMU was not touched');
  t.match(await h.console('guest', 'hostname\n', /\nguest\r?\n/), /guest/, 'the console works through the third vmm');
  const stopped = await h.vmctl(['stop', '-w', 'guest']);
  t.equal(stopped.exitCode, 0, stopped.stderr);
});

t.test('QEMU\'s user cannot trace the roles or reach their memory through /proc', async (t) => {
  const h = await VmdHarness.start({ config: vm('guest', true) });
  t.teardown(() => h.teardown());
  const qemuUser = getpwnam(process.env.VMD_USER ?? '_vmd')!;
  for (const role of ['control', 'vmm'] as const) {
    const pid = h.rolePid(role)!;
    t.ok(pid > 0, `a ${role} process runs`);
    t.equal(statSync(`/proc/${pid}`).uid, qemuUser.uid, `${role} runs as QEMU's user`);
    // What a process escaped from QEMU would try: read the role's memory map (and from it, its memory).
    const r = await execa('setpriv', ['--reuid', String(qemuUser.uid), '--regid', String(qemuUser.gid), '--clear-groups',
      'cat', `/proc/${pid}/maps`], { reject: false });
    t.not(r.exitCode, 0, `${role}: /proc/PID/maps is closed to QEMU's user`);
    t.match(r.stderr, /Permission denied/);
    t.equal(statSync(`/proc/${pid}/mem`).uid, 0, `${role}: its /proc files belong to root (not dumpable)`);
  }
});
