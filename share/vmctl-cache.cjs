// Makes the V8 code caches the installed vmctl runs its bundles from (share/vmctl-entry.cjs), by running each bundle
// once the way users run it: a cache holds what a run compiled, so what a run compiles later must be parsed again.
'use strict';

const { spawn } = require('node:child_process');
const { writeFileSync } = require('node:fs');
const { join, resolve } = require('node:path');
const { bundleLoad } = require('./vmctl-entry.cjs');

/** A vmd stand-in in a child process (the addon's exchange blocks this one): a status reply with a row of each state. */
function fakeVmd(path) {
  const rows = ['running', 'stopped', 'paused', 'starting', 'waiting', 'stopping'].map((state, i) => ({
    id: i + 1, name: `vm${i}`, pid: state === 'stopped' ? null : 1000 + i, vcpus: 1, maxmem: 512 << 20, curmem: state === 'running' ? 90 << 20 : null,
    tty: state === 'running' ? '/dev/pts/1' : null, owner: i % 2 ? 'joe:wheel' : 'root', uid: i % 2 ? 1000 : 0, gid: i % 2 ? 0 : null, state,
    started: state === 'running' ? '2026-12-01T10:00:00Z' : null, origin: 'config',
  }));
  const script = [
    "const [path, rows] = process.argv.slice(1);",
    "require('node:net').createServer((s) => s.once('data', (d) => {",
    '  const id = JSON.parse(d.subarray(4).toString()).id;',
    "  const body = Buffer.from(JSON.stringify({ type: 'vm.status.response', id, vms: JSON.parse(rows), warnings: [] }));",
    '  const head = Buffer.alloc(4); head.writeUInt32BE(body.length); s.end(Buffer.concat([head, body]));',
    "})).listen(path, () => process.stdout.write('ready'));",
  ].join('\n');
  const child = spawn(process.execPath, ['-e', script, path, JSON.stringify(rows)], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((ok, fail) => {
    child.stdout.once('data', () => ok(child));
    child.once('exit', (code) => fail(new Error(`vmctl-cache: the stand-in vmd exited ${code}`)));
  });
}

/** Output that goes nowhere, with the callbacks vmctl waits for. */
const sink = { write: (_c, e, cb) => { (typeof e === 'function' ? e : cb)?.(); return true; } };

async function makeCaches(dir) {
  const io = (socket) => ({ stdin: process.stdin, stdout: sink, stderr: sink, env: { VMD_SOCKET: socket }, cwd: '/' });
  // The whole program: start-up, argument parsing, and a status that finds no daemon.
  const main = bundleLoad(dir, 'vmctl-main.cjs');
  await main.exports.main(['status'], io('/nonexistent/vmd.sock'));
  writeFileSync(join(dir, 'vmctl-main.cjs.cache'), main.script.createCachedData());
  // The listing: a whole table from a daemon.
  const socket = join(dir, `.cache-vmd-${process.pid}.sock`);
  const vmd = await fakeVmd(socket);
  try {
    const list = bundleLoad(dir, 'vmctl-list.cjs');
    const run = list.exports.listingRun(['status'], io(socket));
    // Declined only where vmd's addon does not load: then no listing runs through this bundle, cached or not.
    if (run === undefined) {
      process.stderr.write('vmctl-cache: vmd\'s addon does not load: no cache for the listing bundle, which vmctl will not use\n');
      return;
    }
    const code = await run;
    if (code !== 0) throw new Error(`vmctl-cache: the listing run exited ${code}`);
    writeFileSync(join(dir, 'vmctl-list.cjs.cache'), list.script.createCachedData());
  } finally {
    vmd.kill();
    require('node:fs').rmSync(socket, { force: true });
  }
}

makeCaches(resolve(process.argv[2] ?? 'dist/vmctl')).catch((err) => {
  process.stderr.write(`${err.stack ?? err}\n`);
  process.exitCode = 1;
});
