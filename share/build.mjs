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

// The installed vmctl: its compiled modules bundled into one CommonJS file. `vmctl status` is mostly Node's start-up,
// and resolving, reading and linking a dozen ES modules was measured at a sixth of it (test/bench/fleet.bench.ts);
// one CommonJS file also skips the ES module loader. Packages stay outside (execa and commander load on first use).
// No top-level await and no import.meta in CommonJS: vmctl.ts avoids the first, the banner provides the second.
// dist/vmctl/vmctl.cjs is share/vmctl-entry.cjs, which runs the bundle from the V8 code cache made here: parsing
// the bundle was a sixth of `vmctl status` (counted with cachegrind), reading the cache a fraction of that.
run(bin('esbuild'), [
  'dist/vmctl/vmctl.js', '--bundle', '--platform=node', '--target=node20', '--format=cjs', '--packages=external',
  '--define:import.meta.url=importMetaUrl',
  '--banner:js="use strict";\nconst importMetaUrl = require("node:url").pathToFileURL(__filename).href;',
  '--log-level=warning', '--outfile=dist/vmctl/vmctl-main.cjs',
]);
cpSync(join(root, 'share/vmctl-entry.cjs'), join(root, 'dist/vmctl/vmctl.cjs'));
// The packages vmctl imports (execa is an ES module) through the entry's importModule: node:vm scripts cannot import().
const bundlePath = join(root, 'dist/vmctl/vmctl-main.cjs');
if (existsSync(bundlePath)) {
  const bundled = readFileSync(bundlePath, 'utf8').replace(/\bimport\(("[^"]+")\)/g, 'importModule($1)');
  if (/\bimport\(/.test(bundled)) {
    console.error('build: dist/vmctl/vmctl-main.cjs has an import() the entry cannot serve (only import("literal") is rewritten)');
    failed += 1;
  }
  writeFileSync(bundlePath, bundled);
}
// The cache holds what a run compiled: the start-up, argument parsing and a status that finds no daemon.
run(process.execPath, ['-e', [
  'const { bundleLoad } = require("./dist/vmctl/vmctl.cjs");',
  'const { script, exports } = bundleLoad(require("node:path").resolve("dist/vmctl"));',
  'const sink = { write: (_c, _e, cb) => { (typeof _e === "function" ? _e : cb)?.(); return true; } };',
  'const io = { stdin: process.stdin, stdout: sink, stderr: sink, env: { VMD_SOCKET: "/nonexistent/vmd.sock" }, cwd: "/" };',
  'exports.main(["status"], io).then(() => require("node:fs").writeFileSync("dist/vmctl/vmctl-main.cjs.cache", script.createCachedData()));',
].join('\n')]);

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

for (const entry of ['dist/vmd/vmd.js', 'dist/vmctl/vmctl.js', 'dist/vmctl/vmctl.cjs']) {
  if (existsSync(join(root, entry))) chmodSync(join(root, entry), 0o755);
}
if (failed > 0) {
  console.error(`build: ${failed} step(s) failed`);
  process.exit(1);
}
