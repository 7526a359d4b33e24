// One-shot requests (vmctl/oneshot.ts): through vmd's addon and through node:net alike, the same replies and the same
// failures; and the installed vmctl's status loads neither net nor Node's streams, from the code cache the build made.

import t, { type Test } from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { encodeFrame } from '../../share/frame.js';
import { packageRoot, vmctlEntry } from '../../share/paths.js';
import { ControlClient } from '../../vmctl/client.js';
import { readResponse } from '../../share/read-response.js';
import { decodeReply, exchangeOnce, loadExchange } from '../../vmctl/oneshot.js';
import { fakeVmd, STATUS_FIXTURE } from './harness.js';

/**
 * A stand-in vmd in a process of its own, since the addon's exchange blocks this one: `status` answers with
 * STATUS_FIXTURE, `silent` hangs up on the request, `huge` announces a 4 GiB reply. Resolves once it listens.
 */
async function childVmd(t: Test, mode: 'status' | 'silent' | 'huge'): Promise<{ path: string; requests: () => unknown[] }> {
  const dir = tempDir(t);
  const path = join(dir, 'vmd.sock');
  const script = [
    "const net = require('node:net'); const [path, mode, fixture] = process.argv.slice(1);",
    'const frame = (m) => { const b = Buffer.from(JSON.stringify(m)); const h = Buffer.alloc(4); h.writeUInt32BE(b.length); return Buffer.concat([h, b]); };',
    'net.createServer((s) => s.once(\'data\', (d) => {',
    "  process.stderr.write(d.subarray(4).toString() + '\\n');",
    "  if (mode === 'silent') return s.destroy();",
    "  if (mode === 'huge') return s.end(Buffer.from([0xff, 0xff, 0xff, 0xf0]));",
    '  const req = JSON.parse(d.subarray(4).toString());',
    "  s.end(frame({ type: 'vm.status.response', id: req.id, vms: JSON.parse(fixture), warnings: [] }));",
    "})).listen(path, () => process.stdout.write('ready\\n'));",
  ].join('\n');
  const child = execa(process.execPath, ['-e', script, path, mode, JSON.stringify(STATUS_FIXTURE)], { reject: false, stdin: 'ignore' });
  t.teardown(async () => { child.kill(); await child; });
  await new Promise<void>((resolve, reject) => {
    child.stdout?.once('data', () => resolve());
    void child.then((r) => reject(new Error(`stand-in vmd exited: ${String(r.stderr)}`)));
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  return { path, requests: () => stderr.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as unknown) };
}

const exchange = loadExchange();
const connectTo = (path: string) => () => ControlClient.connect(path);
const ways = [{ name: 'addon', exchange }, { name: 'node:net', exchange: null }] as const;

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'vmctl-oneshot-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('the addon is built and offers the exchange', async (t) => {
  t.not(exchange, null);
});

t.test('a status reply reads the same through the addon and through node:net', async (t) => {
  const vmd = await childVmd(t, 'status');
  for (const way of ways) {
    const reply = await exchangeOnce(vmd.path, { type: 'vm.status.request' }, connectTo(vmd.path), way.exchange, readResponse);
    t.equal(reply.response.type, 'vm.status.response', way.name);
    t.same((reply.raw as { vms: unknown[] }).vms, STATUS_FIXTURE, `${way.name}: every row`);
  }
  t.same(vmd.requests(), [{ v: 1, id: 1, type: 'vm.status.request' }, { v: 1, id: 1, type: 'vm.status.request' }]);
});

t.test('failures are worded as ControlClient words them', async (t) => {
  const dir = tempDir(t);
  const missing = join(dir, 'none.sock');
  for (const way of ways) {
    await t.rejects(exchangeOnce(missing, { type: 'vm.status.request' }, connectTo(missing), way.exchange, readResponse),
      { message: `connect: ${missing}: No such file or directory`, code: 'ERR_CONNECT' }, `${way.name}: no daemon`);
  }
  // A daemon that hangs up without answering.
  const silent = (await childVmd(t, 'silent')).path;
  for (const way of ways) {
    await t.rejects(exchangeOnce(silent, { type: 'vm.status.request' }, connectTo(silent), way.exchange, readResponse),
      { message: 'pipe closed' }, `${way.name}: closed without a reply`);
  }
});

t.test('a reply larger than any listing is refused before it is read', async (t) => {
  const { path } = await childVmd(t, 'huge');
  await t.rejects(exchangeOnce(path, { type: 'vm.status.request' }, connectTo(path), exchange, readResponse), { message: /^unexpected response received from vmd: frame/ });
});

t.test('decodeReply: strict framing, the response reader, and only the request\'s own id (or 0 for an error)', async (t) => {
  const reply = decodeReply(encodeFrame({ type: 'vm.status.response', id: 1, vms: [], warnings: [] }), readResponse);
  t.equal(reply.response.type, 'vm.status.response');
  const unreadable = decodeReply(encodeFrame({ type: 'error', id: 0, error: { code: 'ERR_PROTOCOL', message: 'bad frame' } }), readResponse);
  t.equal(unreadable.response.type, 'error', 'an error about an unreadable request belongs to the only request');
  t.throws(() => decodeReply(encodeFrame({ type: 'vm.status.response', id: 2, vms: [], warnings: [] }), readResponse), { message: /reply to request 2/ });
  t.throws(() => decodeReply(encodeFrame({ type: 'vm.status.response', id: 1, vms: 'none', warnings: [] }), readResponse), { message: /^unexpected response received from vmd: / });
  const notJson = Buffer.concat([Buffer.from([0, 0, 0, 3]), Buffer.from('{x}')]);
  t.throws(() => decodeReply(notJson, readResponse), { message: 'unexpected response received from vmd: frame is not valid JSON' });
});

t.test('the installed vmctl lists without loading net or streams, from an accepted code cache', async (t) => {
  const vmd = await fakeVmd((req) => ({ type: 'vm.status.response', id: req.id, vms: STATUS_FIXTURE, warnings: [] }));
  t.teardown(() => vmd.close());
  const dir = tempDir(t);
  // Runs before vmctl and reports, at exit, which of Node's own modules were loaded and whether V8 took the cache.
  const probe = join(dir, 'probe.cjs');
  writeFileSync(probe, [
    "const vm = require('node:vm'); const Script = vm.Script; let rejected = 'unused';",
    'vm.Script = class extends Script { constructor(s, o) { super(s, o); if (o && o.cachedData) rejected = this.cachedDataRejected; } };',
    "process.on('exit', () => require('node:fs').writeSync(2, JSON.stringify({ rejected,",
    "  net: process.moduleLoadList.includes('NativeModule net'), stream: process.moduleLoadList.includes('NativeModule stream') }) + '\\n'));",
  ].join('\n'));
  // `env -i`: tap puts its own loader into every child's NODE_OPTIONS, which would load net and streams itself.
  const r = await execa('/usr/bin/env', ['-i', `VMD_SOCKET=${vmd.path}`, process.execPath, '-r', probe, vmctlEntry, 'status'], {
    reject: false, stdin: 'ignore', stripFinalNewline: false,
  });
  t.equal(r.exitCode, 0);
  t.equal(String(r.stdout), readFileSync(join(packageRoot, 'test', 'vmctl', 'golden', 'status.txt'), 'utf8'), 'the table');
  t.same(JSON.parse(String(r.stderr)), { rejected: false, net: false, stream: false });
});

t.test('a socket path too long for an address is refused, never cut short onto another socket', async (t) => {
  const dir = tempDir(t);
  const long = join(dir, 'v'.repeat(150));
  // Node's net would connect to the path cut to 107 bytes: a socket listens there, and must hear nothing.
  const cut = Buffer.from(long).subarray(0, 107).toString();
  const other = await fakeVmd((req) => ({ type: 'vm.status.response', id: req.id, vms: STATUS_FIXTURE, warnings: [] }), cut);
  t.teardown(() => other.close());
  for (const way of ways) {
    await t.rejects(exchangeOnce(long, { type: 'vm.status.request' }, connectTo(long), way.exchange, readResponse), {
      message: `connect: ${long}: File name too long`, code: 'ERR_CONNECT', hint: /at most 106 bytes/,
    }, way.name);
  }
  t.same(other.requests, [], 'the socket at the cut name was never reached');
});
