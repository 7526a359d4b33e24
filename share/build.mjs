// The build: generate the vm.conf parser with peggy, compile TypeScript, bundle vmctl, copy runtime data into dist/.
// Plain JavaScript so it runs before anything is compiled; no shell, every step through execFileSync.
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, chmodSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = (name) => join(root, 'node_modules', '.bin', name);
// Every step runs even when an earlier one failed (tsc still emits on type errors), so one broken
// file does not hide the state of the rest; the exit status reports any failure.
let failed = 0;
const run = (cmd, args) => {
  try {
    execFileSync(cmd, args, { cwd: root, stdio: 'inherit' });
  } catch {
    failed += 1;
  }
};

run(bin('peggy'), [
  '--format', 'es', '--dts',
  '--allowed-start-rules', '*',
  '-o', 'grammar/vm.conf.parser.js',
  'grammar/vm.conf.peggy',
]);
run(bin('tsc'), ['-p', 'tsconfig.json']);

// The installed vmctl: its compiled modules bundled into CommonJS files. `vmctl status` is mostly Node's start-up,
// and resolving, reading and linking a dozen ES modules was measured at a sixth of it (test/bench/fleet.bench.ts);
// one CommonJS file also skips the ES module loader. Packages stay outside (execa and commander load on first use).
// No top-level await and no import.meta in CommonJS: vmctl.ts avoids the first, the banner provides the second.
// Two bundles: vmctl-main.cjs, the whole program, and vmctl-list.cjs, the listing alone (vmctl/listing.ts): a third
// of vmctl-main's size, so a listing reads, checks and links a third of the code. Whitespace and comments go (a
// comment's one `…` made the whole text two-byte, for V8 to decode and scan), and each must be ASCII, which
// share/vmctl-entry.cjs reads as latin1. It runs them from the V8 code caches share/vmctl-cache.cjs makes.
const bundles = [['dist/vmctl/vmctl.js', 'dist/vmctl/vmctl-main.cjs'], ['dist/vmctl/listing.js', 'dist/vmctl/vmctl-list.cjs']];
for (const [entry, out] of bundles) {
  run(bin('esbuild'), [
    entry, '--bundle', '--platform=node', '--target=node20', '--format=cjs', '--packages=external', '--minify-whitespace',
    '--define:import.meta.url=importMetaUrl',
    // A path of plain characters is its file: URL with "file://" before it; only another path needs node:url's encoder.
    '--banner:js="use strict";\nconst importMetaUrl = /^[\\w/.+-]+$/.test(__filename) ? "file://" + __filename : require("node:url").pathToFileURL(__filename).href;',
    '--log-level=warning', `--outfile=${out}`,
  ]);
  // The packages vmctl imports (execa is an ES module) through the entry's importModule: node:vm scripts cannot import().
  const bundlePath = join(root, out);
  if (!existsSync(bundlePath)) continue;
  // In CommonJS a module's own file and require() are at hand: the bundle asks node:url for the one (a tenth of a
  // listing's start-up went to converting __filename to a URL and back) and node:module for the other.
  let bundled = readFileSync(bundlePath, 'utf8').replace(/\bimport\(("[^"]+")\)/g, 'importModule($1)')
    .replace(/\(0,import_node_url\d*\.fileURLToPath\)\(importMetaUrl\)/g, '__filename')
    .replace(/\(0,import_node_module\d*\.createRequire\)\(importMetaUrl\)/g, 'require');
  const moduleImport = /(?:var )?import_node_module\d*=require\("node:module"\);/g;
  if (/\bimport_node_module\d*\./.test(bundled.replace(moduleImport, ''))) {
    console.error(`build: ${out} uses node:module for more than createRequire(import.meta.url)`);
    failed += 1;
  } else {
    bundled = bundled.replace(moduleImport, '');
  }
  if (/(createRequire|fileURLToPath)\)\(importMetaUrl\)/.test(bundled)) {
    console.error(`build: ${out} still converts import.meta.url where __filename or require would do`);
    failed += 1;
  }
  if (/\bimport\(/.test(bundled)) {
    console.error(`build: ${out} has an import() the entry cannot serve (only import("literal") is rewritten)`);
    failed += 1;
  }
  if (/[^\x00-\x7f]/.test(bundled)) {
    console.error(`build: ${out} is not ASCII, which share/vmctl-entry.cjs reads it as`);
    failed += 1;
  }
  writeFileSync(bundlePath, bundled);
}
cpSync(join(root, 'share/vmctl-entry.cjs'), join(root, 'dist/vmctl/vmctl.cjs'));

mkdirSync(join(root, 'dist/grammar'), { recursive: true });
if (existsSync(join(root, 'grammar/vm.conf.parser.js'))) cpSync(join(root, 'grammar/vm.conf.parser.js'), join(root, 'dist/grammar/vm.conf.parser.js'));

// Native addon (SO_PEERCRED, TUNSETIFF): rebuilt when its C source is newer than the built module.
const addon = join(root, 'vmd/native');
if (existsSync(join(addon, 'binding.gyp'))) {
  const built = join(addon, 'build/Release/vmd_native.node');
  const newest = Math.max(...readdirSync(addon).filter((f) => /\.(c|h|gyp)$/.test(f)).map((f) => statSync(join(addon, f)).mtimeMs));
  if (!existsSync(built) || statSync(built).mtimeMs < newest) {
    // Debian's nodejs ships its headers in /usr/include/node: use them instead of downloading any.
    const nodedir = process.env.npm_config_nodedir ?? (existsSync('/usr/include/node/node_api.h') ? '/usr' : undefined);
    run(bin('node-gyp'), ['rebuild', '--directory', addon, ...(nodedir ? [`--nodedir=${nodedir}`] : [])]);
  }
}

// The code caches last: the listing's run goes through the addon, which a fresh checkout has only now.
run(process.execPath, [join(root, 'share/vmctl-cache.cjs'), join(root, 'dist/vmctl')]);

for (const entry of ['dist/vmd/vmd.js', 'dist/vmctl/vmctl.js', 'dist/vmctl/vmctl.cjs']) {
  if (existsSync(join(root, entry))) chmodSync(join(root, entry), 0o755);
}
if (failed > 0) {
  console.error(`build: ${failed} step(s) failed`);
  process.exit(1);
}
