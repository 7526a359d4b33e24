// End to end: a guest with a local interface sent through a pipe into a second vmd keeps its VM id there, so its
// 100.64.ID.3, its gateway and its forward keep working; where the id is taken, the receive is refused up front.

import t from 'tap';
import { spawn } from 'node:child_process';
import { execa } from 'execa';
import { vmctlEntry } from '../../share/paths.js';
import { guestInitrd, guestKernel, VmdHarness } from '../lib/vmd-harness.js';

const startArgs = (name: string, ...more: string[]): string[] =>
  ['start', name, '-b', guestKernel, '--initrd', guestInitrd, '-m', '256M', '--cmdline', `console=ttyS0 quiet panic=-1 vmd.hostname=${name}`, ...more];

/** `vmctl send NAME` on `a` piped into `vmctl receive NAME` on `b`; both exit codes and stderr. */
async function sendReceive(a: VmdHarness, b: VmdHarness, name: string): Promise<{ sc: number; rc: number; senderErr: string; receiverErr: string }> {
  const sender = spawn('/usr/bin/env', [process.execPath, vmctlEntry, 'send', name], { env: a.env, stdio: ['ignore', 'pipe', 'pipe'] });
  const receiver = spawn('/usr/bin/env', [process.execPath, vmctlEntry, 'receive', name], { env: b.env, stdio: ['pipe', 'ignore', 'pipe'] });
  sender.stdout!.pipe(receiver.stdin!);
  // The receiver may refuse before reading everything: as in a shell pipe, the sender's output then goes nowhere
  // and its next write fails (EPIPE), which is its failure to report.
  receiver.stdin!.on('error', () => undefined);
  receiver.on('close', () => { sender.stdout!.unpipe(); sender.stdout!.destroy(); });
  let senderErr = '';
  let receiverErr = '';
  sender.stderr!.on('data', (c: Buffer) => { senderErr += c.toString(); });
  receiver.stderr!.on('data', (c: Buffer) => { receiverErr += c.toString(); });
  const exit = (p: ReturnType<typeof spawn>): Promise<number> => new Promise((r) => p.on('close', (code) => r(code ?? 1)));
  const [sc, rc] = await Promise.all([exit(sender), exit(receiver)]);
  return { sc, rc, senderErr, receiverErr };
}

/** GET a URL from inside a namespace; the body, or '' on failure. */
async function httpGet(ns: string, url: string): Promise<string> {
  const r = await execa('ip', ['netns', 'exec', ns, process.execPath, '-e',
    `fetch(${JSON.stringify(url)}, { signal: AbortSignal.timeout(5000) }).then((r) => r.text()).then((t) => process.stdout.write(t), () => process.exit(1));`], { reject: false, timeout: 10_000 });
  return r.exitCode === 0 ? String(r.stdout) : '';
}

const idOf = (row: string): number => Number(row.trim().split(/\s+/)[0]);

t.test('a received guest keeps its VM id: its local address, gateway and forward work on the new host', async (t) => {
  const a = await VmdHarness.start();
  t.teardown(() => a.teardown());
  const b = await VmdHarness.start();
  t.teardown(() => b.teardown());
  // Id 1 goes to a VM that comes and goes on `a`, so the mover has id 2 there while `b` would hand out 1.
  t.equal((await a.vmctl(startArgs('pad'))).exitCode, 0);
  await a.waitState('pad', 'running', 30_000);
  t.equal((await a.vmctl(['stop', '-f', '-w', 'pad'])).exitCode, 0);
  const started = await a.vmctl(startArgs('web', '-L', '--forward', 'tcp:8080:80'));
  t.equal(started.exitCode, 0, started.stderr);
  const id = idOf(await a.waitState('web', 'running', 30_000));
  t.equal(id, 2, 'the mover has id 2 on the sender');
  await a.console('web', '\n', new RegExp(`vmd-guest: lease eth0 100\\.64\\.${id}\\.3/31`), 60);
  t.equal((await httpGet(a.netns, 'http://127.0.0.1:8080/')).trim(), 'web', 'the forward works on the sender');

  const r = await sendReceive(a, b, 'web');
  t.equal(r.sc, 0, `send: ${r.senderErr}`);
  t.equal(r.rc, 0, `receive: ${r.receiverErr}\n${b.daemonLog}`);
  t.match(r.receiverErr, `started vm ${id} successfully`, 'the receiver kept the id');
  t.equal(idOf(await b.waitState('web', 'running', 10_000)), id);
  await a.waitState('web', 'gone', 10_000);

  const links = await b.vmctl(['links', 'web']);
  t.match(links.stdout, `100.64.${id}.3/31`, 'the link carries the guest\'s address');
  // The console echoes the command: the verdict is a number the shell computes, not text typed in.
  const gw = await b.console('web', `ping -c 2 -W 3 100.64.${id}.2 >/dev/null && echo GW-$((6*7)) || echo GW-$((6*8))\n`, /GW-(42|48)\b/, 30);
  t.match(gw, /GW-42\b/, 'the guest reaches its gateway on the new host');
  t.equal((await httpGet(b.netns, 'http://127.0.0.1:8080/')).trim(), 'web', 'the forward answers on the new host');
  t.equal((await httpGet(b.netns, `http://100.64.${id}.3/`)).trim(), 'web', 'and the guest\'s own address from the host');
});

t.test('the id is taken on the receiver: refused before anything moves, the guest stays on the sender', async (t) => {
  const a = await VmdHarness.start();
  t.teardown(() => a.teardown());
  const b = await VmdHarness.start();
  t.teardown(() => b.teardown());
  t.equal((await b.vmctl(startArgs('holder'))).exitCode, 0);
  t.equal(idOf(await b.waitState('holder', 'running', 30_000)), 1);
  t.equal((await a.vmctl(startArgs('local', '-L'))).exitCode, 0);
  t.equal(idOf(await a.waitState('local', 'running', 30_000)), 1);
  await a.console('local', '\n', /vmd-guest: ready/, 60);

  const r = await sendReceive(a, b, 'local');
  t.equal(r.rc, 1, 'receive fails');
  t.match(r.receiverErr, 'vm "local": receive: vm id 1 is taken here by vm "holder", and the addresses of interface 0 derive from it');
  t.not(r.sc, 0, `send fails too: ${r.senderErr}`);
  t.equal((await b.vmctl(['status', 'local'])).stdout.includes(' local'), false, 'nothing of it on the receiver');
  t.equal(b.guestPids().length, 1, 'only the holder runs there');
  await a.waitState('local', 'running', 10_000);
  t.match(await a.console('local', 'echo STILL-$((40+2))\n', /STILL-\d+/), 'STILL-42', 'the guest runs on the sender');
});
