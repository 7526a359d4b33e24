// OpenBSD's vmd config regression fixtures through the real `vmd -n -f FILE`, byte for byte after OpenBSD's sed.
// The historical/ cases carry expectations re-derived from today's rules (see their README.md).

import t from 'tap';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot, vmdEntry } from '../../share/paths.js';

const fixtures = join(packageRoot, 'test', 'grammar', 'fixtures', 'openbsd-regress');

function vmdTest(cwd: string, file: string, macros: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [vmdEntry, ...macros, '-n', '-f', file], { cwd }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, output: stdout + stderr });
    });
  });
}

const dir = mkdtempSync(join(tmpdir(), 'vmd-regress-'));
for (const img of ['foo.img', 'disk0.img', 'disk1.img', 'disk2.img', 'disk3.img', 'disk4.img']) writeFileSync(join(dir, img), '');
// vmd-pass-boot-keyword boots $ramdisk, "/bsd.rd" in the fixture: a -D macro (which wins over the file's own
// definition, as in OpenBSD) points it at an empty file in the scratch directory, so nothing is made on the host.
const bsdRd = join(dir, 'bsd.rd');
writeFileSync(bsdRd, '');
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const cases: { name: string; src: string }[] = [];
for (const sub of ['', 'historical']) {
  for (const f of readdirSync(join(fixtures, sub)).filter((n) => n.endsWith('.conf')).sort()) {
    cases.push({ name: join(sub, f.slice(0, -5)), src: join(fixtures, sub, f) });
  }
}

t.equal(cases.filter((c) => !c.name.startsWith('historical')).length, 13, 'all 13 OpenBSD cases present');
t.equal(cases.filter((c) => c.name.startsWith('historical')).length, 4, 'all 4 historical cases present');

for (const c of cases) {
  t.test(c.name, async (t) => {
    const base = c.name.replace(/^.*\//, '');
    copyFileSync(c.src, join(dir, `${base}.conf`));
    const expected = readFileSync(c.src.replace(/\.conf$/, '.ok'), 'utf8');
    const pass = base.startsWith('vmd-pass-');
    // Pass cases run with the file name as given; fail cases with $DIR/… and OpenBSD's sed.
    const file = pass ? `${base}.conf` : join(dir, `${base}.conf`);
    const macros = base === 'vmd-pass-boot-keyword' ? ['-D', `ramdisk=${bsdRd}`] : [];
    const { code, output } = await vmdTest(dir, file, macros);
    const shown = pass
      ? output
      : output.split('\n').map((l) => l.replace(/^vmd: /, '').split(`${file}:`).join('')).join('\n');
    t.equal(shown, expected, 'output');
    t.equal(code, pass ? 0 : 1, 'exit status');
  });
}

function vmd(cwd: string, args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [vmdEntry, ...args], { cwd }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, output: stdout + stderr });
    });
  });
}

t.test('vmd -n command line', async (t) => {
  t.same(await vmd(dir, ['-n', '-f', 'missing.conf']), { code: 1, output: 'vmd: failed to open missing.conf: No such file or directory\n' });
  writeFileSync(join(dir, 'v.conf'), 'sw = "s"\nswitch $sw { interface bridge0 }\nswitch "off" {\n interface veb0\n disable\n}\nvm "a" {\n memory 1048575K\n disable\n}\nvm "b" { disk foo.img }\n');
  t.same(await vmd(dir, ['-n', '-f', 'v.conf']), { code: 0, output: 'configuration OK\n' });
  t.same(await vmd(dir, ['-nv', '-f', 'v.conf']), { code: 0, output: 'configuration OK\n' }, '-v alone shows no debug lines');
  t.same(await vmd(dir, ['-n', '-vv', '-f', 'v.conf']), {
    code: 0,
    output: 'vmd: v.conf:2: switch "s" registered\nvmd: v.conf:6: switch "off" skipped (disabled)\nvmd: memory size rounded to 1023M\n'
      + 'vmd: v.conf:10: vm "a" registered (disabled)\nvmd: v.conf:11: vm "b" registered (enabled)\nconfiguration OK\n',
  });
  t.same(await vmd(dir, ['-n', '-D', 'sw=t', '-D', 'extra=1', '-f', 'v.conf']), { code: 0, output: "warning: macro 'extra' not used\nconfiguration OK\n" });
  writeFileSync(join(dir, 'bad.conf'), 'vm "x" { memory 1X }\nvm "x" { bogus }\n');
  t.same(await vmd(dir, ['-n', '-f', 'bad.conf']), {
    code: 1,
    output: 'vmd: invalid memory size: 1X: Invalid argument\nvmd: bad.conf:1: failed to parse size: 1X\nvmd: bad.conf:2: syntax error\n',
  });
});
