// Tests for vmd/proc: the Node flags (the parent's from vmd.ts's shebang, which must equal PARENT_NODE_FLAGS; the
// roles' from fork's execArgv; Node must accept all silently) and RoleChannel's refusal of a malformed message.

import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { PARENT_NODE_FLAGS, RoleChannel, ROLE_NODE_FLAGS } from '../../vmd/proc.js';
import { vmdEntry } from '../../share/paths.js';
import { readVmmToParent, type ParentToVmm, type VmmToParent } from '../../share/ipc.js';
import { injectBytes, injectIntoChannel } from '../lib/role-inject.js';

t.test('the shebang of the vmd executable carries exactly PARENT_NODE_FLAGS', async (t) => {
  const first = readFileSync(vmdEntry, 'utf8').split('\n')[0] ?? '';
  t.equal(first, `#!/usr/bin/env -S node ${PARENT_NODE_FLAGS.join(' ')}`);
});

t.test('this Node accepts every flag without a word on stderr (a rejected flag would stop vmd from starting)', async (t) => {
  for (const flags of [PARENT_NODE_FLAGS, ROLE_NODE_FLAGS]) {
    const r = spawnSync(process.execPath, [...flags, '-e', 'process.stdout.write("ok")'], { encoding: 'utf8' });
    t.equal(r.stdout, 'ok', flags.join(' '));
    t.equal(r.stderr, '', `${flags.join(' ')}: stderr`);
  }
});

/** A real vmm role (as this user) on a RoleChannel, recording what the parent side gets and logs. */
async function startRole(t: Test): Promise<{ pid: number; got: VmmToParent[]; exit: Promise<NodeJS.Signals | null | 'still running'>; log: string[] }> {
  const got: VmmToParent[] = [];
  const log: string[] = [];
  let ready!: () => void;
  const isReady = new Promise<void>((r) => { ready = r; });
  let exited!: (s: NodeJS.Signals | null) => void;
  const exit = new Promise<NodeJS.Signals | null>((r) => { exited = r; });
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
    log.push(String(chunk));
    return write(chunk, ...rest);
  }) as typeof process.stderr.write;
  t.teardown(() => { process.stderr.write = write; });
  const vmm = new RoleChannel<VmmToParent, ParentToVmm>(
    { role: 'vmm', uid: null, gid: null, verbose: 0 },
    readVmmToParent,
    (msg) => {
      got.push(msg);
      if (msg.type === 'vmm.ready') ready();
    },
    (_code, signal) => exited(signal),
  );
  t.teardown(() => vmm.stop());
  await isReady;
  // Bounded: a role that is not killed fails the test in seconds rather than hanging it.
  const bounded = Promise.race([exit, new Promise<'still running'>((r) => setTimeout(() => r('still running'), 15_000).unref())]);
  return { pid: vmm.pid!, got, exit: bounded, log };
}

// Messages are written into the role's channel from outside, as a subverted vmm would write them.

t.test('RoleChannel: a role that sends a malformed message is killed, and neither it nor what followed is acted on', async (t) => {
  const { pid, got, exit, log } = await startRole(t);
  // The path works: a well-formed message written this way reaches the parent.
  await injectIntoChannel(pid, [{ type: 'vm.state', vmId: 1, state: 'running' }]);
  const deadline = Date.now() + 5000;
  while (got.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.same(got, [{ type: 'vmm.ready' }, { type: 'vm.state', vmId: 1, state: 'running' }], 'a well-formed injected message is delivered');

  // One forged field, and a well-formed message right behind it in the same write.
  await injectIntoChannel(pid, [{ type: 'vm.state', vmId: 1, state: 'paused', forged: true }, { type: 'vm.state', vmId: 2, state: 'paused' }]);
  t.equal(await exit, 'SIGKILL', 'the role is killed');
  t.equal(got.length, 2, 'neither the forged message nor the one after it was acted on');
  t.match(log.join(''), /vmd: vmm process: malformed message: vm\.state: unknown field "forged"\n/, 'the log names the field');
});

t.test('RoleChannel: what a role writes reaches the log escaped, one line', async (t) => {
  const { pid, exit, log } = await startRole(t);
  await injectIntoChannel(pid, [{ type: 'vm.state', vmId: 1, state: 'running', 'x\nvmd: forged line': 1 }]);
  t.equal(await exit, 'SIGKILL', 'the role is killed');
  t.match(log.join(''), /malformed message: vm\.state: unknown field "x\\x0avmd: forged line"\n/, 'the newline is escaped');
  t.notMatch(log.join(''), /\nvmd: forged line/, 'no forged log line');
});

for (const [name, bytes, why] of [
  ['a line that is not JSON', 'not json\n', 'channel: a line that is not JSON'],
  ['a forged Node internal message', '{"cmd":"NODE_HANDLE_ACK"}\n', 'channel: a Node internal message that does not fit'],
  ['a line with no end past 16 MiB', 'x'.repeat(16 * 1024 * 1024 + 1), 'channel: a line longer than 16777216 characters'],
] as const) {
  t.test(`RoleChannel: ${name} kills the role, not the parent`, async (t) => {
    const { pid, got, exit, log } = await startRole(t);
    await injectBytes(pid, bytes);
    t.equal(await exit, 'SIGKILL', 'the role is killed (and this process, the parent, still runs)');
    t.same(got, [{ type: 'vmm.ready' }], 'nothing else was delivered');
    t.ok(log.join('').includes(`vmd: vmm process: malformed message: ${why}\n`), 'the log says why');
  });
}

/** TCP sockets a process listens on: its socket inodes among the LISTEN rows of its network namespace. */
function listeningTcp(pid: number): string[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m !== null) inodes.add(m[1]!);
    } catch { /* closed meanwhile */ }
  }
  const rows = ['tcp', 'tcp6'].flatMap((f) => readFileSync(`/proc/${pid}/net/${f}`, 'utf8').split('\n').slice(1));
  // Columns: sl local remote st ... inode (10th); st 0A is LISTEN.
  return rows.map((r) => r.trim().split(/\s+/)).filter((c) => c[3] === '0A' && inodes.has(c[9] ?? '')).map((c) => c[1]!);
}

t.test('a role ignores SIGUSR1: no debugger opens for local users to attach to', async (t) => {
  let ready!: () => void;
  const isReady = new Promise<void>((r) => { ready = r; });
  // --inspect-port=0: on a Node that opened it, the debugger would always find a port, so the test cannot pass by a busy 9229.
  const vmm = new RoleChannel<VmmToParent, ParentToVmm>(
    { role: 'vmm', uid: null, gid: null, verbose: 0, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', NODE_OPTIONS: '--inspect-port=0' } },
    readVmmToParent, (msg) => { if (msg.type === 'vmm.ready') ready(); }, () => undefined,
  );
  t.teardown(() => vmm.stop());
  const pid = vmm.pid!;
  // vmm.ready comes after roleMain has set up the role's signal handling.
  await isReady;
  process.kill(pid, 'SIGUSR1');
  await new Promise((r) => setTimeout(r, 1500));
  t.ok(existsSync(`/proc/${pid}`), 'the role still runs');
  t.same(listeningTcp(pid), [], 'it listens on no TCP port');
});
