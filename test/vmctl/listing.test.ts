// The listing fast path (vmctl/listing.ts, bundled apart as vmctl-list.cjs): the installed vmctl runs status and show
// through it, with the same output, errors and exit status as the whole program, and declines every other command line.

import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { packageRoot, vmctlEntry } from '../../share/paths.js';
import { listingRun } from '../../vmctl/listing.js';
import { captureStream, fakeVmd, STATUS_FIXTURE } from './harness.js';

/** The whole program, unbundled (dist/vmctl/vmctl.js runs itself as a program): what the listing must equal. */
const wholeProgram = join(packageRoot, 'dist', 'vmctl', 'vmctl.js');

/** Runs a vmctl file with a probe that reports which bundles it compiled; `env -i` keeps tap's loader out. */
async function run(file: string, args: readonly string[], socket: string, probe: string) {
  const r = await execa('/usr/bin/env', ['-i', `VMD_SOCKET=${socket}`, process.execPath, '-r', probe, file, ...args], {
    reject: false, stdin: 'ignore', stripFinalNewline: false, timeout: 20_000,
  });
  const lines = String(r.stderr).split('\n');
  const scripts = JSON.parse(lines.find((l) => l.startsWith('{"scripts"')) ?? '{"scripts":null}') as { scripts: string[] };
  return { exitCode: r.exitCode, stdout: String(r.stdout), stderr: lines.filter((l) => !l.startsWith('{"scripts"')).join('\n'), scripts: scripts.scripts };
}

t.test('status and show through the listing bundle read exactly as through the whole program', async (t) => {
  const vmd = await fakeVmd((req) => (req.target === 'denied'
    ? { type: 'error', id: req.id, error: { code: 'ERR_PERMISSION', message: 'permission denied', hint: 'ask root' } }
    : { type: 'vm.status.response', id: req.id, vms: STATUS_FIXTURE, warnings: ['a warning from vmd'] }));
  t.teardown(() => vmd.close());
  const dir = t.testdir();
  const probe = join(dir, 'probe.cjs');
  writeFileSync(probe, [
    "const vm = require('node:vm'); const Script = vm.Script; const scripts = [];",
    "vm.Script = class extends Script { constructor(s, o) { super(s, o); scripts.push(require('node:path').basename(o.filename)); } };",
    "process.on('exit', () => require('node:fs').writeSync(2, JSON.stringify({ scripts }) + '\\n'));",
  ].join('\n'));
  const cases = [
    ['status'], ['stat'], ['statu'], ['show'], ['sh'], ['sho'], ['status', '-r'], ['status', 'vm2'], ['status', '3'], ['show', 'none'],
    ['--json', 'status'], ['status', '--json', 'example'], ['status', '-r', '--json'], ['-v', 'status'], ['-vv', 'show', '--', 'tiny'],
    ['status', 'a', 'b'], ['status', '-x'], ['status', '-'], ['status', 'denied'], ['--json', 'status', 'denied'], ['-v', 'status', 'denied'],
  ];
  for (const args of cases) {
    const fast = await run(vmctlEntry, args, vmd.path, probe);
    const whole = await run(wholeProgram, args, vmd.path, probe);
    t.same(fast.scripts, ['vmctl-list.cjs'], `${args.join(' ')}: the listing bundle alone ran`);
    t.same({ ...fast, scripts: null }, { ...whole, scripts: null }, `${args.join(' ')}: output, errors and exit status`);
  }
  // Not under the test's own directory: its path is longer than a socket address holds.
  const short = mkdtempSync(join(tmpdir(), 'vmctl-listing-'));
  t.teardown(() => rmSync(short, { recursive: true, force: true }));
  const missing = join(short, 'none.sock');
  const fast = await run(vmctlEntry, ['status'], missing, probe);
  const whole = await run(wholeProgram, ['status'], missing, probe);
  t.same({ ...fast, scripts: null }, { ...whole, scripts: null }, 'no daemon: the same error');
  t.match(fast.stderr, /^vmctl: connect: .*none\.sock: No such file or directory/);
});

t.test('every other command line is declined before anything is done', async (t) => {
  const out = captureStream();
  const err = captureStream();
  const io = { stdin: process.stdin, stdout: out.stream, stderr: err.stream, env: { VMD_SOCKET: '/nonexistent' }, cwd: '/' };
  const declined = [
    [], ['-v'], ['st'], ['s'], ['start', 'x'], ['stop', 'status'], ['status', '-h'], ['show', '-h'], ['-H', 'h', 'status'], ['-Hh', 'show'],
    ['-x', 'status'], ['help', 'status'], ['--', '--json'], ['relay'],
  ];
  for (const args of declined) t.equal(listingRun(args, io), undefined, args.join(' ') || '(no words)');
  t.equal(listingRun(['status'], { ...io, env: { VMCTL_HOST: 'elsewhere' } }), undefined, 'VMCTL_HOST names another host');
  t.equal(out.text() + err.text(), '', 'nothing written');
});
