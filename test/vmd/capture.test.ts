// Tests for vmd/capture: tcpdump's command line, tcpdump's errors in vmd's words, and real captures on a veth in a
// namespace of the test's own: ready, count, bad filter, client close, and no tcpdump left when its parent is killed.

import t from 'tap';
import { execa } from 'execa';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { captureArgv, captureError, Captures, type CaptureSpec } from '../../vmd/capture.js';
import { encodeFrame, readFrames } from '../../share/frame.js';
import { PcapStreamReader } from '../../share/pcap.js';
import { getpwnam } from '../../share/users.js';
import { packageRoot } from '../../share/paths.js';
import { pidsMatching } from '../lib/vmd-harness.js';

const base: CaptureSpec = { link: 'vmd3i0', netns: null, uid: 102, gid: 105 };

t.test('argv: privileges dropped by setpriv, parent-death signal, filter after --', async (t) => {
  const { file, args } = captureArgv(base);
  t.equal(file, 'setpriv');
  t.same(args, [
    '--reuid=102', '--regid=105', '--clear-groups', '--inh-caps=-all,+net_raw', '--ambient-caps=-all,+net_raw', '--bounding-set=-all,+net_raw',
    '--no-new-privs', '--pdeathsig=KILL', '--', 'tcpdump', '-i', 'vmd3i0', '-U', '--immediate-mode', '-w', '-', '--',
  ]);
  const full = captureArgv({ ...base, netns: 'vmd-rdomain1', count: 10, snaplen: 96, filter: 'icmp and host 10.0.0.1' });
  t.same([full.file, ...full.args.slice(0, 4)], ['ip', 'netns', 'exec', 'vmd-rdomain1', 'setpriv'], 'ip netns exec enters the rdomain first');
  t.same(full.args.slice(-8), ['-w', '-', '-c', '10', '-s', '96', '--', 'icmp and host 10.0.0.1'], 'count, snaplen, the filter as one word');
  const hostile = captureArgv({ ...base, filter: '-w /etc/passwd -Z root' });
  t.same(hostile.args.slice(-2), ['--', '-w /etc/passwd -Z root'], 'a filter that looks like options stays a filter');
  t.equal(hostile.args.filter((a) => a === '-w').length, 1, 'only vmd\'s own -w');
});

t.test('errors: tcpdump\'s words, the VM and the filter named', async (t) => {
  const s = { vm: 'a', index: 0, link: 'vmd3i0', filter: 'icmpx' };
  const syntax = captureError('tcpdump: can\'t parse filter expression: syntax error\n', s);
  t.equal(syntax.code, 'ERR_INVALID');
  t.equal(syntax.message, 'vm "a": filter "icmpx": syntax error');
  t.match(syntax.hint, /pcap-filter\(7\)/);
  t.equal(captureError('tcpdump: illegal port number 99999 > 65535\n', { ...s, filter: 'port 99999' }).message,
    'vm "a": filter "port 99999": illegal port number 99999 > 65535', 'a semantic filter error');
  t.equal(captureError('tcpdump: WARNING: x\ntcpdump: vmd3i0: No such device exists\n(No such device exists)\n', s).message,
    'vm "a": interface 0: link vmd3i0: No such device exists', 'the link named, not the filter');
  t.equal(captureError('Cannot open network namespace "vmd-rdomain1": No such file or directory\n', { ...s, filter: undefined }).message,
    'vm "a": interface 0: link vmd3i0: Cannot open network namespace "vmd-rdomain1": No such file or directory');
  const missing = captureError('setpriv: failed to execute tcpdump: No such file or directory\n', s);
  t.equal(missing.code, 'ERR_UNSUPPORTED');
  t.equal(missing.message, 'vm "a": capture: tcpdump is not installed');
  t.equal(captureError('', s).message, 'vm "a": interface 0: capture ended before it started');
});

// ---- real tcpdump ----

const root = process.getuid?.() === 0;
const user = getpwnam('tcpdump') ?? { uid: 65534, gid: 65534 };
const ns = `vmdcap-${process.pid}`;

/** A namespace with a veth pair: `cap0` (10.9.0.1) towards `cap1`; UDP sent to 10.9.0.2 crosses cap1. */
async function netns(): Promise<void> {
  await execa('ip', ['netns', 'add', ns]);
  for (const cmd of [
    ['link', 'set', 'lo', 'up'],
    ['link', 'add', 'cap0', 'type', 'veth', 'peer', 'name', 'cap1'],
    ['addr', 'add', '10.9.0.1/24', 'dev', 'cap0'],
    ['link', 'set', 'cap0', 'up'],
    ['link', 'set', 'cap1', 'up'],
    ['neigh', 'add', '10.9.0.2', 'lladdr', '02:00:00:00:00:02', 'dev', 'cap0'],
  ]) await execa('ip', ['-n', ns, ...cmd]);
}

/** Sends n UDP datagrams to 10.9.0.2:port from inside the namespace, 50 ms apart. */
function udp(n: number, port: number): Promise<unknown> {
  return execa('ip', ['netns', 'exec', ns, process.execPath, '-e',
    `const s = require('dgram').createSocket('udp4'); let i = 0; const tick = () => { if (i++ >= ${n}) return s.close(); s.send('x', ${port}, '10.9.0.2', () => setTimeout(tick, 50)); }; tick();`]);
}

/** A connected pair of Unix sockets: the daemon's end (given to Captures) and the client's. */
async function socketPair(dir: string, name: string): Promise<{ server: Socket; client: Socket }> {
  const path = join(dir, name);
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(path, r));
  const accepted = new Promise<Socket>((r) => srv.once('connection', r));
  const client = connect(path);
  const server = await accepted;
  srv.close();
  return { server, client };
}

/** Reads the client's end: the frame first, then pcap records until the stream ends. */
function readClient(client: Socket): Promise<{ reply: unknown; records: number }> {
  return new Promise((resolve) => {
    const reader = readFrames(client);
    const pcap = new PcapStreamReader();
    let reply: unknown;
    reader.once('message', (m) => {
      reply = m;
      const rest = reader.switchToRaw();
      pcap.push(rest);
      client.on('data', (c: Buffer) => pcap.push(c));
      client.resume();
    });
    client.on('close', () => resolve({ reply, records: pcap.records }));
  });
}

t.test('real captures on a veth', { skip: root ? false : 'needs root (tcpdump, namespaces)' }, async (t) => {
  await netns();
  const dir = mkdtempSync(join(tmpdir(), 'vmd-capture-'));
  t.teardown(async () => {
    await execa('ip', ['netns', 'del', ns], { reject: false });
    rmSync(dir, { recursive: true, force: true });
  });
  const captures = new Captures();
  const spec: CaptureSpec = { link: 'cap1', netns: ns, uid: user.uid, gid: user.gid };
  const subject = { vm: 'v', index: 0, link: 'cap1' };
  const header = encodeFrame({ type: 'vm.capture.response', id: 1, vmId: 1, name: 'v', interface: 0, link: 'cap1' });

  await t.test('count: the stream ends by itself after COUNT matching packets', async (t) => {
    const { server, client } = await socketPair(dir, 'count.sock');
    const read = readClient(client);
    await captures.start(1, { ...subject, filter: 'udp port 4000' }, { ...spec, count: 3, filter: 'udp port 4000' }, server, header);
    t.equal(captures.size, 1);
    await udp(5, 5000);
    await udp(5, 4000);
    const got = await read;
    t.match(got.reply, { type: 'vm.capture.response', link: 'cap1' });
    t.equal(got.records, 3, 'three packets, only the filtered port');
    const until = Date.now() + 3000;
    while (captures.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    t.equal(captures.size, 0, 'tcpdump is gone');
  });

  await t.test('bad filter: tcpdump\'s message, nothing left running', async (t) => {
    const { server, client } = await socketPair(dir, 'bad.sock');
    t.teardown(() => client.destroy());
    await t.rejects(captures.start(1, { ...subject, filter: 'icmpx' }, { ...spec, filter: 'icmpx' }, server, header),
      { code: 'ERR_INVALID', message: 'vm "v": filter "icmpx": syntax error' });
    t.equal(captures.size, 0);
  });

  await t.test('a client that goes away ends its capture; two captures of one link at once', async (t) => {
    const a = await socketPair(dir, 'a.sock');
    const b = await socketPair(dir, 'b.sock');
    const readB = readClient(b.client);
    await captures.start(1, subject, spec, a.server, header);
    await captures.start(1, subject, { ...spec, count: 2 }, b.server, header);
    t.equal(pidsMatching('tcpdump\0-i\0cap1\0').length, 2, 'two tcpdumps on cap1');
    a.client.destroy();
    await udp(2, 4000);
    t.equal((await readB).records, 2, 'the other capture carried on');
    const until = Date.now() + 3000;
    while (captures.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    t.equal(captures.size, 0, 'both ended');
    t.same(pidsMatching('tcpdump\0-i\0cap1\0'), [], 'no tcpdump left');
  });

  await t.test('stopVm ends only that VM\'s captures; stopAll the rest', async (t) => {
    const a = await socketPair(dir, 'vm1.sock');
    const b = await socketPair(dir, 'vm2.sock');
    const readA = readClient(a.client);
    await captures.start(1, subject, spec, a.server, header);
    await captures.start(2, subject, spec, b.server, header);
    captures.stopVm(1);
    await readA;
    // The client's stream can end before tcpdump's exit is reaped: give the reaping a moment, then count.
    const until = Date.now() + 3000;
    while (captures.size > 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    t.equal(captures.size, 1, 'vm 2 still captures');
    await captures.stopAll();
    t.equal(captures.size, 0);
    b.client.destroy();
  });

  await t.test('the parent is killed: tcpdump dies with it (parent-death signal survives the privilege drop)', async (t) => {
    const script = `
      import { Captures } from ${JSON.stringify(join(packageRoot, 'dist', 'vmd', 'capture.js'))};
      import { createServer, connect } from 'node:net';
      const path = ${JSON.stringify(join(dir, 'orphan.sock'))};
      const srv = createServer((s) => new Captures().start(9, { vm: 'v', index: 0, link: 'cap1' },
        { link: 'cap1', netns: ${JSON.stringify(ns)}, uid: ${user.uid}, gid: ${user.gid}, filter: 'udp port 4242' }, s, Buffer.alloc(0))
        .then(() => process.stdout.write('ready\\n')));
      srv.listen(path, () => connect(path));`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (c: Buffer) => { if (c.toString().includes('ready')) resolve(); });
      child.once('exit', () => reject(new Error('capture child exited early')));
    });
    const pids = pidsMatching('--\0udp port 4242');
    t.equal(pids.length, 1, 'tcpdump runs');
    const status = await execa('ps', ['-o', 'user=', '-p', String(pids[0])]);
    t.equal(status.stdout.trim(), 'tcpdump', 'as the tcpdump user, not root');
    child.kill('SIGKILL');
    const until = Date.now() + 3000;
    while (pidsMatching('--\0udp port 4242').length > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    t.same(pidsMatching('--\0udp port 4242'), [], 'no orphan tcpdump');
  });
});
