// End to end: `vmctl -H user@host:port` through a real OpenSSH server (the test's own, in a namespace it made) to the
// relay on the vmd host, so vmd decides on the ssh user's uid: status, start, console in pipe mode, and a refusal.

import t from 'tap';
import { execa } from 'execa';
import { vmctlEntry } from '../../share/paths.js';
import { startSshd, type TestSshd } from '../lib/sshd.js';
import { ensureUsers } from '../lib/users.js';
import { guestInitrd, guestKernel, pidsMatching, VmdHarness, type VmctlResult } from '../lib/vmd-harness.js';

const USERS = ['vmdssh1', 'vmdssh2'];
const GROUP = 'vmdsshtest';
const SERVER = '10.231.0.2';
const PORT = 2222;

/** A client namespace joined to the vmd host's namespace by a veth: client 10.231.0.1, vmd host 10.231.0.2. */
async function makeClientNetns(hostNetns: string): Promise<string> {
  const ns = `vmdssh-c-${process.pid}`;
  await execa('ip', ['netns', 'add', ns]);
  await execa('ip', ['-n', hostNetns, 'link', 'add', 'sshu0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
  await execa('ip', ['-n', hostNetns, 'addr', 'add', `${SERVER}/30`, 'dev', 'sshu0']);
  await execa('ip', ['-n', hostNetns, 'link', 'set', 'sshu0', 'up']);
  await execa('ip', ['-n', ns, 'addr', 'add', '10.231.0.1/30', 'dev', 'eth0']);
  await execa('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
  await execa('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  return ns;
}

interface Remote { readonly ns: string; readonly sshd: TestSshd; readonly h: VmdHarness }

/** The argv of vmctl -H in the client namespace, with a clean environment (no tap hooks, no VMD_SOCKET). */
function remoteArgv(ctx: Remote, host: string, args: string[]): string[] {
  const env = [
    'PATH=/usr/sbin:/usr/bin:/sbin:/bin', `VMCTL_SSH=ssh -F ${ctx.sshd.clientConfig}`,
    // The relay on the far side: this tree's vmctl, and the test daemon's socket rather than /run/vmd.sock.
    `VMCTL_RELAY=${process.execPath} ${vmctlEntry} relay ${ctx.h.socket}`,
  ];
  return ['netns', 'exec', ctx.ns, '/usr/bin/env', '-i', ...env, process.execPath, vmctlEntry, '-H', host, ...args];
}

/** vmctl -H from the client namespace, as root there, to the end. */
async function remote(ctx: Remote, host: string, args: string[], input?: string): Promise<VmctlResult> {
  const r = await execa('ip', remoteArgv(ctx, host, args), {
    reject: false, extendEnv: false, timeout: 60_000, ...(input === undefined ? { stdin: 'ignore' as const } : { input }),
  });
  return { stdout: String(r.stdout), stderr: String(r.stderr), exitCode: r.exitCode ?? 1 };
}

/** Polls (bounded) until no process of this test's ssh session or relay remains; the ones still there. */
async function sessionsGone(ctx: Remote, timeoutMs: number): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = [...pidsMatching(`relay ${ctx.h.socket}`), ...pidsMatching(ctx.sshd.clientConfig)];
    if (left.length === 0 || Date.now() > deadline) return left;
    await new Promise((r) => setTimeout(r, 200));
  }
}

t.test('vmctl -H reaches vmd as the ssh user: status, start, console, refusal', async (t) => {
  const cleanupUsers = await ensureUsers(USERS, GROUP, { login: true });
  t.teardown(cleanupUsers);
  const h = await VmdHarness.start({
    config: `socket owner root:${GROUP}\nvm "owned" {\n  disable\n  memory 256M\n  owner vmdssh1\n`
      + `  boot "${guestKernel}"\n  initrd "${guestInitrd}"\n  cmdline "console=ttyS0 quiet panic=-1"\n}\n`,
  });
  t.teardown(() => h.teardown());
  const ns = await makeClientNetns(h.netns);
  t.teardown(() => execa('ip', ['netns', 'del', ns], { reject: false }));
  const sshd = await startSshd(h.netns, SERVER, PORT, USERS);
  t.teardown(() => sshd.stop());
  const ctx = { ns, sshd, h };
  const owner = `vmdssh1@${SERVER}:${PORT}`;
  const other = `vmdssh2@${SERVER}:${PORT}`;

  const status = await remote(ctx, owner, ['status']);
  t.equal(status.exitCode, 0, 'status through ssh succeeds', { stderr: status.stderr, sshd: sshd.log() });
  t.match(status.stdout, /vmdssh1\s+stopped owned/, 'the remote vmd lists its VM');

  const started = await remote(ctx, owner, ['start', 'owned']);
  t.equal(started.exitCode, 0, 'the owner starts its VM through ssh', { stderr: started.stderr });
  t.match(started.stderr, /started vm \d+ successfully/);
  await h.waitState('owned', 'running', 60_000);

  // Console in pipe mode through ssh: a command typed in, its answer read back (retried while the guest boots).
  let out = '';
  const deadline = Date.now() + 120_000;
  while (!/ssh-42/.test(out) && Date.now() < deadline) {
    const c = await remote(ctx, owner, ['console', '-t', '3', 'owned'], 'echo ssh-$((6*7))\n');
    t.equal(c.exitCode, 0, 'the console session ends cleanly', { stderr: c.stderr });
    out += c.stdout;
  }
  t.match(out, /ssh-42/, 'the guest answered through the remote console');

  // Another user on the same host: vmd sees vmdssh2's uid through the relay and refuses, with OpenBSD's words.
  const denied = await remote(ctx, other, ['stop', 'owned']);
  t.equal(denied.exitCode, 1);
  t.match(denied.stderr, /Operation not permitted/);
  const deniedConsole = await remote(ctx, other, ['console', '-t', '1', 'owned'], '');
  t.equal(deniedConsole.exitCode, 1);
  t.match(deniedConsole.stderr, /^vmctl: failed to open the console: Operation not permitted$/m);
  t.match((await h.vmctl(['status', 'owned'])).stdout, /running/, 'the refusals changed nothing');

  // What goes wrong on the way is named with the host, and a hint.
  const refused = await remote(ctx, `vmdssh1@${SERVER}:${PORT + 1}`, ['status']);
  t.equal(refused.exitCode, 1);
  t.match(refused.stderr, new RegExp(`^vmctl: host "vmdssh1@${SERVER}:${PORT + 1}": ssh: .*Connection refused\\nvmctl: hint: `));
  const nobody = await remote(ctx, `root@${SERVER}:${PORT}`, ['status']);
  t.equal(nobody.exitCode, 1);
  t.match(nobody.stderr, /^vmctl: host "root@[\d.]+:2222": ssh: .*Permission denied.*\nvmctl: hint: check that ssh reaches it: ssh -p 2222 root@/);

  // Events through ssh while the owner stops the VM, then the watcher is interrupted: nothing of it stays behind.
  let events = '';
  const watcher = execa('ip', remoteArgv(ctx, owner, ['--json', 'events', 'owned']), { reject: false, extendEnv: false, stdin: 'ignore' });
  watcher.stdout?.on('data', (c: Buffer) => { events += c.toString(); });
  const acked = Date.now() + 30_000;
  while (!events.includes('"vm.events.response"') && Date.now() < acked) await new Promise((r) => setTimeout(r, 100));
  t.match(events, /"vm\.events\.response"/, 'the subscription is acknowledged through ssh');

  const stopped = await remote(ctx, owner, ['stop', '-w', 'owned']);
  t.equal(stopped.exitCode, 0, 'the owner stops its VM through ssh', { stderr: stopped.stderr });
  t.match(stopped.stderr, /stopping vm owned: terminated vm \d+/);
  const seen = Date.now() + 30_000;
  while (!/"event":"stopped"/.test(events) && Date.now() < seen) await new Promise((r) => setTimeout(r, 100));
  t.match(events, /"event":"stopped"/, 'the stop arrives as an event through ssh');
  watcher.kill('SIGTERM');
  await watcher;
  t.same(await sessionsGone(ctx, 20_000), [], 'no ssh client or relay outlives the commands');
});
