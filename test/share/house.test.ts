// The house rules hold for the real tree: no hand-written source under vmd/, vmctl/, grammar/, share/ over 500
// lines, and no two source files importing each other in a circle. The checks are tested on made-up trees first.

import t, { type Test } from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { packageRoot } from '../../share/paths.js';
import { houseSources, importCycles, importGraph, importSpecifiers, lineCount, oversizedFiles, resolveImport } from '../lib/house.js';

const SOURCE_DIRS = ['vmd', 'vmctl', 'grammar', 'share'];
/** The hard limit; the target is about 400 (STYLE.md). */
const LINE_LIMIT = 500;

/** A temporary tree made of `files` (path to content), removed when the test ends. */
function tree(t: Test, files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'vmd-house-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

t.test('sources are the hand-written files: generated parser, build output and packages are left out', async (t) => {
  const root = tree(t, {
    'grammar/parse.ts': '',
    'grammar/vm.conf.peggy': '',
    'grammar/vm.conf.parser.js': '',
    'grammar/vm.conf.parser.d.ts': '',
    'vmd/native/vmd_native.c': '',
    'vmd/native/build/Release/obj.js': '',
    'vmd/node_modules/x/index.js': '',
    'vmd/migrations/001.sql': '',
    'share/build.mjs': '',
    'share/setup': '',
    'other/skipped.ts': '',
  });
  t.same(houseSources(root, SOURCE_DIRS), [
    'grammar/parse.ts', 'grammar/vm.conf.peggy', 'share/build.mjs', 'vmd/native/vmd_native.c',
  ]);
});

t.test('a file over the limit is reported with its length, longest first', async (t) => {
  const lines = (n: number): string => 'x\n'.repeat(n);
  const root = tree(t, { 'vmd/a.ts': lines(500), 'vmd/b.ts': lines(501), 'vmd/c.c': lines(900), 'vmd/d.ts': lines(499) + 'x' });
  t.same(oversizedFiles(root, houseSources(root, ['vmd']), 500), [
    { file: 'vmd/c.c', lines: 900 },
    { file: 'vmd/b.ts', lines: 501 },
  ]);
  t.equal(lineCount(''), 0);
  t.equal(lineCount('a'), 1);
  t.equal(lineCount('a\n'), 1, 'a final newline starts no line');
  t.equal(lineCount('a\n\n'), 2);
});

t.test('import and export statements are read, type-only and multi-line ones too', async (t) => {
  const text = [
    "import t from 'tap';",
    "import { a, b } from './a.js';",
    "import type { C } from '../share/c.js';",
    'import {',
    '  d,',
    '  type E,',
    "} from './d.js';",
    "export { f } from './f.js';",
    "export * from './g.js';",
    "export type { H } from './h.js';",
    "import './side-effect.js';",
    "// import { no } from './comment-mid-line.js' is not at a line start: `  // import` is not a statement",
    "const s = 'from ./not-an-import.js';",
    "export function take(from: string): string { return from; }",
    "export const x = await import('./dynamic.js');",
  ].join('\n');
  t.same(importSpecifiers(text), ['./a.js', '../share/c.js', './d.js', './f.js', './g.js', './h.js', './side-effect.js']);
});

t.test('a .js specifier names the .ts source; one outside the set names nothing', async (t) => {
  const known = new Set(['vmd/a.ts', 'share/b.ts', 'share/build.mjs', 'grammar/vm.conf.peggy']);
  t.equal(resolveImport('vmd/x.ts', './a.js', known), 'vmd/a.ts');
  t.equal(resolveImport('vmd/x.ts', '../share/b.js', known), 'share/b.ts');
  t.equal(resolveImport('share/x.mjs', './build.mjs', known), 'share/build.mjs');
  t.equal(resolveImport('grammar/parse.ts', './vm.conf.parser.js', known), null, 'the generated parser is not a source');
  t.equal(resolveImport('vmd/x.ts', './missing.js', known), null);
});

t.test('an import circle is reported as a path; a diamond is not a circle', async (t) => {
  const root = tree(t, {
    'grammar/parse.ts': "import { act } from './actions.js';\nexport type Diagnostic = string;\n",
    'grammar/actions.ts': "import type { Diagnostic } from './parse.js';\nimport { check } from './check.js';\n",
    'grammar/check.ts': "import type { Diagnostic } from './parse.js';\n",
    'vmd/self.ts': "export { x } from './self.js';\n",
    'vmd/top.ts': "import './left.js';\nimport './right.js';\n",
    'vmd/left.ts': "import './bottom.js';\n",
    'vmd/right.ts': "import './bottom.js';\n",
    'vmd/bottom.ts': "import { x } from '../share/leaf.js';\n",
    'share/leaf.ts': 'export const x = 1;\n',
  });
  const graph = importGraph(root, houseSources(root, SOURCE_DIRS));
  t.same(graph.get('grammar/actions.ts'), ['grammar/check.ts', 'grammar/parse.ts']);
  t.same(importCycles(graph), [
    {
      files: ['grammar/actions.ts', 'grammar/check.ts', 'grammar/parse.ts'],
      path: ['grammar/actions.ts', 'grammar/parse.ts', 'grammar/actions.ts'],
    },
    { files: ['vmd/self.ts'], path: ['vmd/self.ts', 'vmd/self.ts'] },
  ]);
  const clean = tree(t, { 'vmd/top.ts': "import './left.js';\n", 'vmd/left.ts': "import type { X } from '../share/leaf.js';\n", 'share/leaf.ts': '' });
  t.same(importCycles(importGraph(clean, houseSources(clean, SOURCE_DIRS))), [], 'no circle, nothing reported');
});

t.test(`no hand-written source file is over ${LINE_LIMIT} lines`, async (t) => {
  const sources = houseSources(packageRoot, SOURCE_DIRS);
  t.ok(sources.includes('vmd/vmd.ts'), 'the tree is found');
  const over = oversizedFiles(packageRoot, sources, LINE_LIMIT);
  t.same(over.map((f) => `${f.file}: ${f.lines} lines`), [], 'split these files');
});

t.test('no source files import each other in a circle', async (t) => {
  const cycles = importCycles(importGraph(packageRoot, houseSources(packageRoot, SOURCE_DIRS)));
  const report = cycles.map((c) => `${c.path.join(' -> ')} (files in the circle: ${c.files.join(', ')})`);
  t.same(report, [], 'break these circles');
});
