// Tests for vmctl as installed: dist/vmctl/vmctl.cjs running the one-file bundle share/build.mjs makes. It runs directly and
// through a symlink (share/setup's /usr/local/bin/vmctl), and the packages it leaves outside still load on first use.

import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { vmctlEntry } from '../../share/paths.js';

const dir = mkdtempSync(join(tmpdir(), 'vmctl-bundle-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const link = join(dir, 'vmctl');
symlinkSync(vmctlEntry, link);
const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', VMD_SOCKET: join(dir, 'no.sock') };
const ways: Array<{ name: string; argv: string[] }> = [
  { name: 'node vmctl.cjs', argv: [process.execPath, vmctlEntry] },
  { name: 'a symlink to it, run by its shebang', argv: [link] },
];

const run = (argv: string[], args: string[]) =>
  execa(argv[0]!, [...argv.slice(1), ...args], { env, extendEnv: false, reject: false, stdin: 'ignore', cwd: dir });

t.test('the bundle is one file of the project\'s own code, with no ES module syntax left', async (t) => {
  const text = readFileSync(vmctlEntry, 'utf8');
  t.match(text.split('\n')[0], /^#!\/usr\/bin\/env node$/);
  t.notMatch(text, /^import |^export /m, 'CommonJS throughout');
  t.notMatch(text, /node_modules\/commander/, 'commander is loaded from node_modules, on first use');
});

t.test('usage and a missing daemon, as vmctl.js says them', async (t) => {
  for (const way of ways) {
    const usage = await run(way.argv, []);
    t.equal(usage.exitCode, 1, `${way.name}: exit status`);
    t.equal(usage.stderr, 'usage:\tvmctl [-v] command [arg ...]', `${way.name}: usage`);
    const status = await run(way.argv, ['status', '-r']);
    t.equal(status.exitCode, 1, `${way.name}: status exit status`);
    t.equal(status.stderr, `vmctl: connect: ${join(dir, 'no.sock')}: No such file or directory`, `${way.name}: status -r (commander loaded)`);
  }
});

t.test('create runs qemu-img through execa, imported on first use', async (t) => {
  for (const [i, way] of ways.entries()) {
    const r = await run(way.argv, ['create', '-s', '1M', `disk${i}.qcow2`]);
    t.equal(r.stderr, 'vmctl: qcow2 imagefile created', `${way.name}: ${r.stderr}`);
    t.equal(r.exitCode, 0);
    t.ok(existsSync(join(dir, `disk${i}.qcow2`)));
  }
});
