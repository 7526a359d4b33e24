// Logs an operator reads: a detached vmd's lines reach syslog (facility daemon, program vmd), and a failed start
// shows in `vmctl status` while `vmctl log VM` shows what QEMU said.
import t from 'tap';
import { execa } from 'execa';
import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { vmdEntry } from '../../share/paths.js';
import { VmdHarness, pidsMatching } from '../lib/vmd-harness.js';

// A syslog daemon's socket, as python3 (share/setup installs it) can bind one: Node cannot receive unix datagrams.
const LISTENER = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("ready", flush=True)
while True:
    print(s.recv(65536).decode(errors="replace"), flush=True)
`;

t.test('a detached vmd logs to syslog: facility daemon, program vmd, a failed start with its reason', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-syslog-'));
  chmodSync(dir, 0o755);
  const netns = `vmdlog-${process.pid}`;
  const sock = join(dir, 'log.sock');
  writeFileSync(join(dir, 'fw.bin'), 'not a firmware image\n');
  writeFileSync(join(dir, 'vm.conf'), `vm "broken" {\n memory 64M\n boot "${dir}/fw.bin"\n}\n`);
  const listener = execa('python3', ['-c', LISTENER, sock], { reject: false, buffer: false });
  let received = '';
  t.teardown(async () => {
    for (const pid of pidsMatching(dir)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    listener.kill('SIGKILL');
    await listener;
    await execa('ip', ['netns', 'del', netns], { reject: false });
    rmSync(dir, { recursive: true, force: true });
  });
  await new Promise<void>((resolve) => listener.stdout!.on('data', (d: Buffer) => { received += d.toString(); if (received.includes('ready')) resolve(); }));
  await execa('ip', ['netns', 'add', netns]);
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', VMD_SOCKET: join(dir, 'vmd.sock'), VMD_STATE_DIR: join(dir, 'state'), VMD_NFT_DIR: join(dir, 'nft.d'), VMD_SYSLOG_SOCKET: sock };
  const start = await execa('ip', ['netns', 'exec', netns, '/usr/bin/env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), vmdEntry, '-f', join(dir, 'vm.conf')], {
    reject: false, extendEnv: false, env, cwd: dir, timeout: 60_000,
  });
  t.equal(start.exitCode, 0, `vmd detached: ${start.stderr}`);
  const deadline = Date.now() + 60_000;
  while (!/start failed/.test(received) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  // <28>: daemon (3) * 8 + warning (4); the RFC 3164 header, then the program and the daemon's pid.
  t.match(received, /<28>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ vmd\[\d+\]: vm "broken": start failed: \S/);
  const daemon = pidsMatching(dir).find((pid) => pid !== listener.pid);
  t.ok(daemon !== undefined, 'the daemon runs detached');
  process.kill(daemon!, 'SIGTERM');
  const end = Date.now() + 30_000;
  while (!/exiting; guests keep running/.test(received) && Date.now() < end) await new Promise((r) => setTimeout(r, 200));
  t.match(received, /<30>.* vmd\[\d+\]: exiting; guests keep running/, 'info is <30>');
});

t.test('a failed start shows in status until the next start, and vmctl log shows what QEMU said', async (t) => {
  const h = await VmdHarness.start();
  t.teardown(() => h.teardown());
  writeFileSync(join(h.dir, 'fw.bin'), 'not a firmware image\n');
  writeFileSync(h.configPath, `vm "broken" {\n disable\n memory 64M\n boot "${h.dir}/fw.bin"\n}\n`);
  t.equal((await h.vmctl(['reload'])).exitCode, 0);
  const start = await h.vmctl(['start', 'broken']);
  t.equal(start.exitCode, 1, 'the start fails');
  const status = await h.vmctl(['status', 'broken']);
  t.match(status.stdout, / failed broken\n/, 'STATE failed');
  // The reason's wording (QMP's or QEMU's own) is the start error's; here only that it is kept and shown.
  t.match(status.stdout, /^start failed: vm "broken": \S/m, 'the reason under the table');
  const json = JSON.parse((await h.vmctl(['--json', 'status', 'broken'])).stdout) as { vms: Array<{ failure?: string }> };
  t.match(json.vms[0]?.failure, /^vm "broken": \S/);
  const log = await h.vmctl(['log', 'broken']);
  t.equal(log.exitCode, 0, log.stderr);
  t.match(log.stdout, /^qemu(-system-x86_64)?: could not load PC BIOS/m, "QEMU's own line, kept after the failed start");
  t.match(h.daemonLog, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} vmd: vm "broken": start failed: /m, '-d lines carry a timestamp');
  // A VM given as id works too; a VM nobody knows is an error.
  t.match((await h.vmctl(['log', '1'])).stdout, /could not load PC BIOS/);
  t.equal((await h.vmctl(['log', 'nosuchvm'])).exitCode, 1);
});

t.test('a state directory the unprivileged user cannot reach fails vmd at start, naming it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-reach-'));
  // 0700 root: _vmd cannot search it, so QEMU could never create its sockets below.
  chmodSync(dir, 0o700);
  const netns = `vmdreach-${process.pid}`;
  t.teardown(async () => {
    await execa('ip', ['netns', 'del', netns], { reject: false });
    rmSync(dir, { recursive: true, force: true });
  });
  writeFileSync(join(dir, 'vm.conf'), '# empty\n');
  await execa('ip', ['netns', 'add', netns]);
  const state = join(dir, 'state');
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', VMD_SOCKET: join(tmpdir(), `vmd-reach-${process.pid}.sock`), VMD_STATE_DIR: state, VMD_NFT_DIR: join(dir, 'nft.d') };
  const r = await execa('ip', ['netns', 'exec', netns, '/usr/bin/env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), vmdEntry, '-d', '-f', join(dir, 'vm.conf')], {
    reject: false, extendEnv: false, env, timeout: 30_000,
  });
  t.equal(r.exitCode, 1, 'vmd exits');
  t.match(r.stderr, new RegExp(`vmd: state directory ${state}: _vmd cannot reach ${state}/run \\(EACCES\\)`));
  t.match(r.stderr, /vmd: hint: .*chmod o\+x/);
  const missing = await execa('ip', ['netns', 'exec', netns, '/usr/bin/env', '-i', ...Object.entries({ ...env, VMD_STATE_DIR: join(tmpdir(), `vmd-reach-ok-${process.pid}`), VMD_SOCKET: '/nonexistent-dir/vmd.sock' }).map(([k, v]) => `${k}=${v}`), vmdEntry, '-d', '-f', join(dir, 'vm.conf')], {
    reject: false, extendEnv: false, env, timeout: 30_000,
  });
  rmSync(join(tmpdir(), `vmd-reach-ok-${process.pid}`), { recursive: true, force: true });
  t.equal(missing.exitCode, 1);
  t.match(missing.stderr, /vmd: socket directory \/nonexistent-dir: ENOENT/);
});

t.test('under a service manager: READY=1 on NOTIFY_SOCKET once it listens, lines to syslog when the unit asks', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-notify-'));
  chmodSync(dir, 0o755);
  const netns = `vmdnotify-${process.pid}`;
  const notify = join(dir, 'notify.sock');
  const sock = join(dir, 'log.sock');
  writeFileSync(join(dir, 'vm.conf'), '# empty\n');
  const listeners = [notify, sock].map((p) => execa('python3', ['-c', LISTENER, p], { reject: false, buffer: false }));
  const got = ['', ''];
  await Promise.all(listeners.map((l, i) => new Promise<void>((resolve) => l.stdout!.on('data', (d: Buffer) => {
    got[i] += d.toString();
    if (got[i]!.includes('ready')) resolve();
  }))));
  await execa('ip', ['netns', 'add', netns]);
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin', VMD_SOCKET: join(dir, 'vmd.sock'), VMD_STATE_DIR: join(dir, 'state'),
    VMD_NFT_DIR: join(dir, 'nft.d'), VMD_SYSLOG_SOCKET: sock, VMD_LOG_TARGET: 'syslog', NOTIFY_SOCKET: notify,
  };
  const d = execa('ip', ['netns', 'exec', netns, '/usr/bin/env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), vmdEntry, '-d', '-f', join(dir, 'vm.conf')], {
    reject: false, extendEnv: false, env, all: true,
  });
  t.teardown(async () => {
    d.kill('SIGKILL');
    for (const pid of pidsMatching(dir)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    for (const l of listeners) l.kill('SIGKILL');
    await Promise.allSettled([d, ...listeners]);
    await execa('ip', ['netns', 'del', netns], { reject: false });
    rmSync(dir, { recursive: true, force: true });
  });
  const deadline = Date.now() + 30_000;
  while (!got[0]!.includes('READY=1') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  t.match(got[0], /READY=1\nMAINPID=\d+/, 'readiness reached the service manager');
  d.kill('SIGTERM');
  await d;
  const end = Date.now() + 10_000;
  while (!got[1]!.includes('exiting') && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
  t.match(got[1], /<30>.* vmd\[\d+\]: exiting; guests keep running/, 'its lines went to syslog, not stderr');
  t.notMatch(d.all ?? '', /exiting/, 'nothing on stderr');
});
