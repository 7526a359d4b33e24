// vmctl -H: how a host operand becomes ssh's argv, how ssh's failures are worded, and the relay carrying the protocol
// unchanged (framed replies, then raw pcap bytes) from a stand-in ssh that runs the remote command as sshd would.

import t from 'tap';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { encodeFrame } from '../../share/frame.js';
import { chunkPrefix, encodeStreamHeader, STREAM_END, type StreamConfig } from '../../share/stream.js';
import { vmctlEntry } from '../../share/paths.js';
import { explainExit, parseHost, sshArgv } from '../../vmctl/ssh.js';
import { parseGlobal } from '../../vmctl/vmctl.js';
import { fakeVmd, STATUS_FIXTURE, type Handler } from './harness.js';

t.test('host operands: [user@]host[:port], IPv6 in brackets, nothing ssh could read as an option', async (t) => {
  t.same(parseHost('h'), { destination: 'h', port: undefined });
  t.same(parseHost('joe@h.example:2222'), { destination: 'joe@h.example', port: 2222 });
  t.same(parseHost('[fd00::1]:22'), { destination: 'fd00::1', port: 22 });
  t.same(parseHost('joe@fd00::1'), { destination: 'joe@fd00::1', port: undefined }, 'a bare IPv6 address has no port');
  t.throws(() => parseHost('-oProxyCommand=touch /tmp/x'), /host "-oProxyCommand=touch \/tmp\/x": a host name cannot start with "-"/);
  t.throws(() => parseHost('h:0'), /port 0 is out of range/);
  t.throws(() => parseHost('h:ssh'), /expected \[user@\]host\[:port\]/, 'a port is a number');
  t.same(parseHost('::1'), { destination: '::1', port: undefined });
  t.throws(() => parseHost('h:70000'), /port 70000 is out of range/);
  t.throws(() => parseHost('@h'), /expected \[user@\]host\[:port\]/);
  t.throws(() => parseHost('joe@'), /expected/);
  t.throws(() => parseHost(''), /empty host name/);
  t.throws(() => parseHost('a b'), /white space/);
});

t.test('ssh argv: the user\'s ssh and options first, no tty or forwarding, the port, -- before the destination', async (t) => {
  t.same(sshArgv(parseHost('joe@h:2222'), {}), ['ssh', '-T', '-x', '-a', '-p', '2222', '--', 'joe@h', 'vmctl relay']);
  t.same(sshArgv(parseHost('h'), { VMCTL_SSH: ' ssh  -F /x/cfg ', VMCTL_RELAY: '/opt/vmd/bin/vmctl relay /run/v.sock' }),
    ['ssh', '-F', '/x/cfg', '-T', '-x', '-a', '--', 'h', '/opt/vmd/bin/vmctl relay /run/v.sock']);
});

t.test('ssh failures name the host and say what to try', async (t) => {
  const refused = explainExit('h:2', 255, 'ssh: connect to host h port 2: Connection refused\r\n');
  t.equal(refused.message, 'host "h:2": ssh: connect to host h port 2: Connection refused');
  t.match(refused.hint, /check the host name and port/);
  const denied = explainExit('joe@h:2', 255, 'Warning: added\njoe@h: Permission denied (publickey).\n');
  t.equal(denied.message, 'host "joe@h:2": ssh: joe@h: Permission denied (publickey).');
  t.equal(denied.hint, 'check that ssh reaches it: ssh -p 2 joe@h true (keys, agent, ~/.ssh/config)');
  const missing = explainExit('h', 127, 'sh: 1: vmctl: not found\n');
  t.equal(missing.message, 'host "h": relay: sh: 1: vmctl: not found');
  t.match(missing.hint, /VMCTL_RELAY/);
  t.equal(explainExit('h', null, '', 'SIGKILL').message, 'host "h": ssh: killed by SIGKILL');
  t.equal(explainExit('h', 1, 'vmctl: connect: /run/vmd.sock: No such file or directory\n').message,
    'host "h": connect: /run/vmd.sock: No such file or directory');
});

t.test('-H before the command, in either getopt form', async (t) => {
  t.same(parseGlobal(['-H', 'joe@h', 'status']), { verbose: 0, host: 'joe@h', rest: ['status'] });
  t.same(parseGlobal(['-v', '-Hh:22', 'status']), { verbose: 1, host: 'h:22', rest: ['status'] });
  t.equal(parseGlobal(['-H']), undefined, '-H needs its operand');
});

/** A stand-in for ssh: it logs its argv, skips to the destination after `--`, and runs the command through sh. */
function fakeSsh(dir: string): string {
  const path = join(dir, 'ssh');
  writeFileSync(path, '#!/bin/sh\nprintf "%s\\n" "$@" > "$FAKE_SSH_LOG"\n'
    + 'if [ -n "$FAKE_SSH_FAIL" ]; then echo "$FAKE_SSH_FAIL" >&2; exit 255; fi\n'
    + 'while [ "$1" != "--" ]; do shift; done\nshift 2\nexec /bin/sh -c "$1"\n');
  chmodSync(path, 0o755);
  return path;
}

/** Status, and a capture whose raw bytes follow the reply in one write, as the capture tests' stand-in sends them. */
const handler: Handler = (req, conn) => {
  if (req.type === 'vm.status.request') return { type: 'vm.status.response', id: req.id, vms: STATUS_FIXTURE };
  if (req.type === 'vm.receive.request') return receiveBody(req, conn);
  if (req.type === 'vm.send.request') {
    conn.switchToRaw();
    conn.socket.end(Buffer.concat([encodeFrame({ type: 'vm.send.response', id: req.id, vmId: 1, name: 'web' }), SEND_STREAM]));
    return undefined;
  }
  if (req.type !== 'vm.capture.request') return { type: 'error', id: req.id, error: { code: 'ERR_PROTOCOL', message: 'unexpected' } };
  conn.switchToRaw();
  conn.socket.write(Buffer.concat([encodeFrame({ type: 'vm.capture.response', id: req.id, vmId: 1, name: 'web', interface: 0, link: 'vmd1i0' }), BYTES.subarray(0, 300)]));
  setTimeout(() => conn.socket.end(BYTES.subarray(300)), 50);
  return undefined;
};
/** A pcap stream of 64 records of 1000 bytes each (every byte value, in varying order): 64 KB through the relay. */
function pcapOf(records: number): Buffer {
  const header = Buffer.from('d4c3b2a10200040000000000000000000000040001000000', 'hex');
  const parts = [header];
  for (let r = 0; r < records; r++) {
    const h = Buffer.alloc(16);
    h.writeUInt32LE(1_800_000_000 + r, 0);
    h.writeUInt32LE(1000, 8);
    h.writeUInt32LE(1000, 12);
    parts.push(h, Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7 + r) & 0xff)));
  }
  return Buffer.concat(parts);
}
const BYTES = pcapOf(64);

/** What the stand-in received after its `ready`: the answer comes only after the client's half-close, as vmd's does. */
let received = Buffer.alloc(0);

/** `ready`, then the raw body to its end, then `done`: the half-close must cross ssh and the relay for this to finish. */
function receiveBody(req: Record<string, unknown>, conn: Parameters<Handler>[1]): undefined {
  const vm = STATUS_FIXTURE[0];
  conn.socket.allowHalfOpen = true;
  const parts: Buffer[] = [conn.switchToRaw()];
  conn.send({ type: 'vm.receive.response', id: req.id, phase: 'ready', vm });
  conn.socket.on('data', (c: Buffer) => parts.push(c));
  conn.socket.resume();
  conn.socket.on('end', () => {
    received = Buffer.concat(parts);
    conn.socket.end(encodeFrame({ type: 'vm.receive.response', id: req.id, phase: 'done', vm }));
  });
  return undefined;
}

const STREAM_CONFIG: StreamConfig = {
  name: 'web', memory: 256 * 1024 * 1024, cpus: 1, boot: '/k', initrd: null, cmdline: null, cdrom: null, disks: [], interfaces: [], owner: null,
};
const SEND_STREAM = Buffer.concat([encodeStreamHeader(STREAM_CONFIG), chunkPrefix(BYTES.length), BYTES, STREAM_END]);

t.test('through ssh and the relay, vmctl says what it says locally; failures name the host', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmctl-ssh-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const vmd = await fakeVmd(handler);
  t.teardown(() => vmd.close());
  const log = join(dir, 'argv');
  const base = { ...process.env, VMCTL_SSH: fakeSsh(dir), FAKE_SSH_LOG: log, VMD_SOCKET: '/nonexistent/local.sock' };
  const relayEnv = { ...base, VMCTL_RELAY: `${process.execPath} ${vmctlEntry} relay ${vmd.path}` };
  const run = (args: string[], env: NodeJS.ProcessEnv = relayEnv) =>
    execa(process.execPath, [vmctlEntry, ...args], { env, reject: false, stdin: 'ignore', timeout: 20_000, encoding: 'buffer', stripFinalNewline: false });

  const local = await execa(process.execPath, [vmctlEntry, 'status'], { env: { ...process.env, VMD_SOCKET: vmd.path }, reject: false, stdin: 'ignore', stripFinalNewline: false });
  const remote = await run(['-H', 'joe@far:2200', 'status']);
  t.equal(remote.exitCode, 0, Buffer.from(remote.stderr).toString());
  t.equal(Buffer.from(remote.stdout).toString(), local.stdout, 'the same table as a local status');
  t.same(readFileSync(log, 'utf8').trim().split('\n').slice(-5), ['-p', '2200', '--', 'joe@far', relayEnv.VMCTL_RELAY]);

  const fromEnv = await run(['capture', '-w', '-', 'web'], { ...relayEnv, VMCTL_HOST: 'far' });
  t.equal(fromEnv.exitCode, 0, Buffer.from(fromEnv.stderr).toString());
  t.ok(Buffer.from(fromEnv.stdout).equals(BYTES), 'raw bytes after the reply arrive byte for byte (VMCTL_HOST)');

  // receive: the header, 64 KB of state and the end mark go through; vmd's answer comes after the half-close.
  // From a pipe whose whole content comes in one chunk with its end, which once left receive waiting forever.
  const body = Buffer.concat([chunkPrefix(BYTES.length), BYTES, STREAM_END]);
  const received1 = await execa(process.execPath, [vmctlEntry, '-H', 'far', 'receive', 'web2'], {
    env: relayEnv, reject: false, input: Buffer.concat([encodeStreamHeader(STREAM_CONFIG), body]), timeout: 20_000,
  });
  t.equal(received1.exitCode, 0, received1.stderr);
  t.match(received1.stderr, /started vm 1 successfully/);
  t.ok(received.equals(body), 'the stream after the header reached vmd byte for byte, and its end too');

  const sent = await run(['-H', 'far', 'send', 'web']);
  t.equal(sent.exitCode, 0, Buffer.from(sent.stderr).toString());
  t.ok(Buffer.from(sent.stdout).equals(SEND_STREAM), 'send: the stream comes out of ssh byte for byte');

  const noSocket = await run(['-H', 'far', 'status'], { ...base, VMCTL_RELAY: `${process.execPath} ${vmctlEntry} relay /nonexistent/vmd.sock` });
  t.equal(Buffer.from(noSocket.stderr).toString(), 'vmctl: host "far": connect: /nonexistent/vmd.sock: No such file or directory\n');
  const down = await run(['-H', 'far:2', 'status'], { ...base, FAKE_SSH_FAIL: 'ssh: connect to host far port 2: Connection refused' });
  t.equal(Buffer.from(down.stderr).toString(),
    'vmctl: host "far:2": ssh: connect to host far port 2: Connection refused\nvmctl: hint: check the host name and port, and that sshd runs there\n');
  t.equal(down.exitCode, 1);
});

t.test('what cannot apply over -H is refused before ssh runs', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmctl-ssh-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log = join(dir, 'argv');
  const env = { ...process.env, VMCTL_SSH: fakeSsh(dir), FAKE_SSH_LOG: log };
  const run = (args: string[]) => execa(process.execPath, [vmctlEntry, ...args], { env, reject: false, stdin: 'ignore', timeout: 20_000, stripFinalNewline: false });

  // A host operand that ssh would read as an option runs a command of the attacker's choice (ProxyCommand).
  const marker = join(dir, 'pwned');
  const payload = join(dir, 'payload');
  writeFileSync(payload, `#!/bin/sh\ntouch ${marker}\n`, { mode: 0o755 });
  const hostile = await run(['-H', `-oProxyCommand=${payload}`, 'status']);
  t.equal(hostile.exitCode, 1);
  t.match(hostile.stderr, /a host name cannot start with "-"/);
  t.notOk(existsSync(log), 'ssh never ran');
  t.notOk(existsSync(marker));

  const create = await run(['-H', 'far', 'create', '-s', '1M', 'x.img']);
  t.equal(create.stderr, 'vmctl: create: works on files of this host and does not go through vmd, so it cannot run on host "far"\n'
    + 'vmctl: hint: run vmctl create on that host itself\n');
  const grow = await execa(process.execPath, [vmctlEntry, 'grow', '-s', '2M', 'x.img'], {
    env: { ...env, VMCTL_HOST: 'far' }, reject: false, stdin: 'ignore', stripFinalNewline: false,
  });
  t.equal(grow.stderr, 'vmctl: grow: works on files of this host and does not go through vmd, so it cannot run on host "far"\n'
    + 'vmctl: hint: run vmctl grow on that host itself, or unset VMCTL_HOST for this one\n', 'VMCTL_HOST is named where it came from there');
  const relative = await run(['-H', 'far', 'start', '-d', 'disk.img', 'web']);
  t.equal(relative.stderr, 'vmctl: invalid disk path: disk.img: a path on host "far" must be absolute\n');
  const load = await run(['-H', 'far', 'load', 'x.conf']);
  t.equal(load.stderr, 'vmctl: x.conf: a path on host "far" must be absolute\n');
  const relayHop = await run(['-H', 'far', 'relay']);
  t.match(relayHop.stderr, /relay: -H does not apply/);
  t.notOk(existsSync(log), 'ssh never ran for any of them');
});
