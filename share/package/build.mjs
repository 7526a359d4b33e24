// `npm run package`: a Debian package of the built tree (dist/, production node_modules) made with dpkg-deb.
// Plain JavaScript like share/build.mjs; whatever is in dist/ and share/man at the time goes in, nothing is listed by hand.
import { execFileSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const here = join(root, 'share', 'package');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const out = process.argv[2] ?? join(root, 'deb');
const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], ...opts });

for (const need of ['dist/vmd/vmd.js', 'dist/vmctl/vmctl.cjs', 'vmd/native/build/Release/vmd_native.node']) {
  if (!existsSync(join(root, need))) {
    console.error(`package: ${need}: missing; run npm run build first`);
    process.exit(1);
  }
}

const stage = mkdtempSync(join(tmpdir(), 'vmd-package-'));
try {
  // The package's root directory is `/` when unpacked: mkdtemp's 0700 would end up in the archive.
  chmodSync(stage, 0o755);
  const lib = join(stage, 'usr', 'lib', 'vmd');
  const copy = (from, to = from) => cpSync(join(root, from), join(lib, to), { recursive: true, dereference: true });
  mkdirSync(lib, { recursive: true });
  // The same layout as a checkout, which share/paths.ts's packageRoot expects: dist/, vmd/migrations, the addon.
  copy('dist');
  rmSync(join(lib, 'dist', 'test'), { recursive: true, force: true });
  rmSync(join(lib, 'dist', '.tsbuildinfo'), { force: true });
  // Source maps point at TypeScript sources the package does not carry.
  run('find', [join(lib, 'dist'), '-name', '*.map', '-delete']);
  copy('vmd/migrations');
  copy('vmd/native/build/Release/vmd_native.node');
  copy('package.json');
  copy('package-lock.json');
  // Production dependencies only, as npm lists them, copied from the built tree: better-sqlite3's native module is
  // the one built for this Node, and no network is needed.
  const prod = run('npm', ['ls', '--omit=dev', '--parseable', '--all']).toString().split('\n')
    .filter((l) => l.startsWith(join(root, 'node_modules') + '/'));
  for (const dir of prod) cpSync(dir, join(lib, dir.slice(root.length + 1)), { recursive: true, verbatimSymlinks: true });
  // better-sqlite3 at run time needs its lib/ and the built module, not SQLite's sources or the objects (~20 MB).
  const sqlite = join(lib, 'node_modules', 'better-sqlite3');
  for (const d of ['deps', 'src', 'build/deps', 'build/Release/obj', 'build/Release/obj.target', 'build/Release/.deps', 'build/Release/test_extension.node']) {
    rmSync(join(sqlite, d), { recursive: true, force: true });
  }
  if (!existsSync(join(sqlite, 'build', 'Release', 'better_sqlite3.node'))) {
    throw new Error('package: better-sqlite3 native module missing from node_modules');
  }
  // Commands on PATH, as symlinks into the library (the executables find their modules relative to themselves).
  mkdirSync(join(stage, 'usr', 'sbin'), { recursive: true });
  mkdirSync(join(stage, 'usr', 'bin'), { recursive: true });
  symlinkSync('../lib/vmd/dist/vmd/vmd.js', join(stage, 'usr', 'sbin', 'vmd'));
  symlinkSync('../lib/vmd/dist/vmctl/vmctl.cjs', join(stage, 'usr', 'bin', 'vmctl'));
  // Every page in share/man, compressed as Debian policy wants.
  for (const section of readdirSync(join(root, 'share', 'man'))) {
    const dir = join(stage, 'usr', 'share', 'man', section);
    mkdirSync(dir, { recursive: true });
    for (const page of readdirSync(join(root, 'share', 'man', section))) {
      writeFileSync(join(dir, `${page}.gz`), gzipSync(readFileSync(join(root, 'share', 'man', section, page)), { level: 9 }));
    }
  }
  const place = (from, to, mode = 0o644) => {
    mkdirSync(dirname(join(stage, to)), { recursive: true });
    cpSync(join(here, from), join(stage, to));
    chmodSync(join(stage, to), mode);
  };
  place('vmctl.bash', 'usr/share/bash-completion/completions/vmctl');
  place('vmd.service', 'usr/lib/systemd/system/vmd.service');
  place('vmd.tmpfiles', 'usr/lib/tmpfiles.d/vmd.conf');
  place('vmd.logrotate', 'etc/logrotate.d/vmd');
  place('vm.conf.example', 'etc/vm.conf.example');
  mkdirSync(join(stage, 'usr', 'share', 'doc', 'vmd'), { recursive: true });
  cpSync(join(root, 'README.md'), join(stage, 'usr', 'share', 'doc', 'vmd', 'README.md'));

  const debian = join(stage, 'DEBIAN');
  mkdirSync(debian);
  for (const script of ['postinst', 'prerm', 'postrm']) place(script, `DEBIAN/${script}`, 0o755);
  writeFileSync(join(debian, 'conffiles'), '/etc/logrotate.d/vmd\n/etc/vm.conf.example\n');
  const arch = run('dpkg', ['--print-architecture']).toString().trim();
  const sizeKb = run('du', ['-sk', '--exclude=DEBIAN', stage]).toString().split(/\s/)[0];
  const control = readFileSync(join(here, 'control'), 'utf8')
    .replace('@VERSION@', pkg.version).replace('@ARCH@', arch).replace('@SIZE@', sizeKb);
  writeFileSync(join(debian, 'control'), control);

  mkdirSync(out, { recursive: true });
  const deb = join(out, `vmd_${pkg.version}_${arch}.deb`);
  run('dpkg-deb', ['--root-owner-group', '-Zxz', '-z6', '--build', stage, deb]);
  console.log(deb);
} finally {
  rmSync(stage, { recursive: true, force: true });
}
