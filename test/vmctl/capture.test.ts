// Tests for `vmctl capture`: its arguments as OpenBSD's vmctl would check them, and the compiled vmctl against a stand-in
// vmd that answers and then streams pcap bytes: summary lines, -w FILE written as sent, -w - on stdout, errors, --json.

import t, { type Test } from 'tap';
import { execa } from 'execa';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeFrame } from '../../share/frame.js';
import { vmctlEntry } from '../../share/paths.js';
import { parseCapture } from '../../vmctl/capture.js';
import { CliError, UsageError } from '../../vmctl/errors.js';
import { fakeVmd, runVmctl, type Handler } from './harness.js';

t.test('arguments', async (t) => {
  const warnings: string[] = [];
  const p = (args: string[]) => parseCapture(args, (m) => warnings.push(m));
  t.same(p(['web']), { target: 'web', interface: 0 });
  t.same(p(['3', '1']), { target: '3', interface: 1 }, 'id and interface');
  t.same(p(['web', 'icmp']), { target: 'web', interface: 0, filter: 'icmp' });
  t.same(p(['web', '2', 'icmp', 'and', 'host', '10.0.0.1']), { target: 'web', interface: 2, filter: 'icmp and host 10.0.0.1' }, 'words joined');
  t.same(p(['web', 'tcp port 80']), { target: 'web', interface: 0, filter: 'tcp port 80' }, 'one quoted word');
  t.same(p(['-w', 'f.pcap', '-c', '10', '-s', '96', 'web', 'icmp']), { target: 'web', interface: 0, count: 10, snaplen: 96, filter: 'icmp', write: 'f.pcap' });
  t.same(p(['web', 'icmp', '-c', '10']), { target: 'web', interface: 0, count: 10, filter: 'icmp' }, 'options after the operands, as elsewhere in vmctl');
  t.same(p(['-w', '-', 'web']), { target: 'web', interface: 0, write: '-' });
  t.same(p(['-c', '2147483647', '-s', '262144', 'web']), { target: 'web', interface: 0, count: 2 ** 31 - 1, snaplen: 262144 });
  t.same(p(['web', '--', 'not', '-x']), { target: 'web', interface: 0, filter: 'not -x' }, 'after --, anything is expression');
  t.same(warnings, []);

  const fails = (args: string[], message: string, warning?: string): void => {
    warnings.length = 0;
    t.throws(() => p(args), new CliError(message), args.join(' '));
    t.same(warnings, warning === undefined ? [] : [warning], `${args.join(' ')}: warning`);
  };
  fails(['web', '4'], 'invalid interface: 4', 'interface is too large: 4');
  fails(['-c', '0', 'web'], 'invalid count: 0', 'count is too small: 0');
  fails(['-c', 'ten', 'web'], 'invalid count: ten', 'count is invalid: ten');
  fails(['-c', '2147483648', 'web'], 'invalid count: 2147483648', 'count is too large: 2147483648');
  fails(['-s', '262145', 'web'], 'invalid snaplen: 262145', 'snaplen is too large: 262145');
  fails(['-s', '0', 'web'], 'invalid snaplen: 0', 'snaplen is too small: 0');
  fails(['-c', '1', '-c', '2', 'web'], 'count specified multiple times');
  fails(['-s', '1', '-s', '2', 'web'], 'snaplen specified multiple times');
  fails(['-w', 'a', '-w', 'b', 'web'], 'output file specified multiple times');
  fails(['-w', '', 'web'], 'invalid output file: empty name');
  fails(['web', 'x'.repeat(5000)], 'filter expression too long: at most 4096 characters');
  fails(['n'.repeat(64)], `invalid id: ${'n'.repeat(64)}`, 'name too long');
  t.throws(() => p([]), UsageError, 'no id');
  t.throws(() => p(['-x', 'web']), UsageError, 'unknown option');
  t.throws(() => p(['-c']), UsageError, 'missing value');
});

/** A pcap stream of two ICMP echoes, byte for byte as tcpdump writes one (little-endian, microseconds). */
function pcapBytes(): Buffer {
  const header = Buffer.from('d4c3b2a10200040000000000000000000000040001000000', 'hex');
  const frame = (type: number, seq: number): Buffer => Buffer.concat([
    Buffer.from('52540000000b52540000000a0800', 'hex'),
    Buffer.from('4500001c00000000400100000a00000a0a00000b', 'hex'),
    Buffer.from([type, 0, 0, 0, 0, 7, 0, seq]),
  ]);
  const record = (sec: number, data: Buffer): Buffer => {
    const h = Buffer.alloc(16);
    h.writeUInt32LE(sec, 0);
    h.writeUInt32LE(250, 4);
    h.writeUInt32LE(data.length, 8);
    h.writeUInt32LE(data.length, 12);
    return Buffer.concat([h, data]);
  };
  return Buffer.concat([header, record(1_800_000_000, frame(8, 1)), record(1_800_000_001, frame(0, 1))]);
}

const PCAP = pcapBytes();

/** The stand-in answers a capture request, streams the pcap bytes in two pieces, then ends the stream as tcpdump's exit does. */
const streaming: Handler = (req, conn) => {
  if (req.type !== 'vm.capture.request') return { type: 'error', id: req.id, error: { code: 'ERR_PROTOCOL', message: 'unexpected' } };
  if (req.target === 'nope') return { type: 'error', id: req.id, error: { code: 'ERR_VM_NOT_FOUND', message: 'vm "nope": not found' } };
  if (req.target === 'bad') {
    return { type: 'error', id: req.id, error: { code: 'ERR_INVALID', message: `vm "bad": filter "${String(req.filter)}": syntax error`, hint: 'see pcap-filter(7) for the syntax' } };
  }
  conn.switchToRaw();
  // The reply and the first bytes in one write: vmctl must split them where the frame ends.
  conn.socket.write(Buffer.concat([encodeFrame({ type: 'vm.capture.response', id: req.id, vmId: 1, name: 'web', interface: 0, link: 'vmd1i0' }), PCAP.subarray(0, 30)]));
  setTimeout(() => conn.socket.end(PCAP.subarray(30)), 100);
  return undefined;
};

async function withVmd(t: Test, handler: Handler) {
  const vmd = await fakeVmd(handler);
  t.teardown(() => vmd.close());
  return vmd;
}

t.test('summary lines, then the count on stderr', async (t) => {
  const vmd = await withVmd(t, streaming);
  const r = await runVmctl(['capture', '-c', '2', 'web', '1', 'icmp'], { socket: vmd.path });
  t.equal(r.exitCode, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  t.equal(lines.length, 2);
  // tcpdump's own lines (share/setup installs it): ICMP's length is its own, 8, not the frame's.
  t.match(lines[0], /^\d\d:\d\d:\d\d\.000250 IP 10\.0\.0\.10 > 10\.0\.0\.11: ICMP echo request, id 7, seq 1, length 8$/);
  t.match(lines[1], /ICMP echo reply, id 7, seq 1, length 8$/);
  t.equal(r.stderr, 'vmctl: listening on vmd1i0, vm web interface 0\n2 packets captured\n');
  t.same(vmd.requests[0], { v: 1, id: 1, type: 'vm.capture.request', target: 'web', interface: 1, count: 2, filter: 'icmp' });
});

t.test('without tcpdump on PATH the built-in reader prints the summaries', async (t) => {
  const vmd = await withVmd(t, streaming);
  const r = await execa(process.execPath, [vmctlEntry, 'capture', 'web'], {
    env: { ...process.env, VMD_SOCKET: vmd.path, PATH: '/nonexistent' }, reject: false, stdin: 'ignore', timeout: 20_000,
  });
  t.equal(r.exitCode, 0, String(r.stderr));
  const lines = String(r.stdout).trim().split('\n');
  t.equal(lines.length, 2);
  t.match(lines[0], /^\d\d:\d\d:\d\d\.000250 IP 10\.0\.0\.10 > 10\.0\.0\.11: ICMP echo request, id 7, seq 1, length 42$/);
});

t.test('-w FILE: the stream as vmd sent it, written by vmctl', async (t) => {
  const vmd = await withVmd(t, streaming);
  const dir = mkdtempSync(join(tmpdir(), 'vmctl-capture-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const r = await runVmctl(['capture', '-w', 'f.pcap', 'web'], { socket: vmd.path, cwd: dir });
  t.equal(r.exitCode, 0, r.stderr);
  t.equal(r.stdout, '');
  t.ok(readFileSync(join(dir, 'f.pcap')).equals(PCAP), 'byte for byte');
  t.match(r.stderr, /2 packets captured/);
  const denied = await runVmctl(['capture', '-w', 'no/such/dir/f.pcap', 'web'], { socket: vmd.path, cwd: dir });
  t.equal(denied.exitCode, 1);
  t.match(denied.stderr, /^vmctl: capture: no\/such\/dir\/f\.pcap: No such file or directory$/m);
});

t.test('-w -: pcap on stdout, nothing else there', async (t) => {
  const vmd = await withVmd(t, streaming);
  const r = await execa(process.execPath, [vmctlEntry, 'capture', '--json', '-w', '-', 'web'], {
    env: { ...process.env, VMD_SOCKET: vmd.path }, encoding: 'buffer', reject: false, stdin: 'ignore', timeout: 20_000,
  });
  t.equal(r.exitCode, 0, Buffer.from(r.stderr).toString());
  t.ok(Buffer.from(r.stdout).equals(PCAP), 'stdout is exactly the pcap stream, even with --json');
});

t.test('errors in the daemon\'s words, with its hint', async (t) => {
  const vmd = await withVmd(t, streaming);
  const missing = await runVmctl(['capture', 'nope'], { socket: vmd.path });
  t.same([missing.exitCode, missing.stdout, missing.stderr], [1, '', 'vmctl: capture: vm "nope": not found\n']);
  const bad = await runVmctl(['capture', 'bad', 'icmpx'], { socket: vmd.path });
  t.same([bad.exitCode, bad.stderr], [1, 'vmctl: capture: vm "bad": filter "icmpx": syntax error\nvmctl: hint: see pcap-filter(7) for the syntax\n']);
  const json = await runVmctl(['--json', 'capture', 'nope'], { socket: vmd.path });
  t.equal(json.exitCode, 1);
  t.match(JSON.parse(json.stdout), { type: 'error', error: { code: 'ERR_VM_NOT_FOUND' } });
});

t.test('--json: the reply, then one object per packet', async (t) => {
  const vmd = await withVmd(t, streaming);
  const r = await runVmctl(['--json', 'capture', 'web'], { socket: vmd.path });
  t.equal(r.exitCode, 0, r.stderr);
  const objects = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.match(objects[0], { type: 'vm.capture.response', link: 'vmd1i0' });
  t.same(objects[1], {
    type: 'capture.packet', time: '2027-01-15T08:00:00.000250Z', length: 42, captured: 42,
    summary: 'IP 10.0.0.10 > 10.0.0.11: ICMP echo request, id 7, seq 1',
  });
  t.equal(objects.length, 3);
  t.equal(r.stderr, '', 'no messages in JSON mode');
});

t.test('a stream that is not pcap is an error, not garbage', async (t) => {
  const vmd = await withVmd(t, (req, conn) => {
    conn.switchToRaw();
    conn.socket.end(Buffer.concat([encodeFrame({ type: 'vm.capture.response', id: req.id, vmId: 1, name: 'web', interface: 0, link: 'vmd1i0' }), Buffer.from('hello world, this is not pcap')]));
    return undefined;
  });
  const r = await runVmctl(['capture', 'web'], { socket: vmd.path });
  t.equal(r.exitCode, 1);
  t.match(r.stderr, /vmctl: capture: not a pcap stream/);
});
