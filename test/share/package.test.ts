// The Debian package: `npm run package`'s .deb lists what an operator needs, installs into a fresh Debian root
// (debootstrap, chroot), where vmd checks a configuration and man finds the pages; removal keeps state, purge does not.
import t from 'tap';
import {
  closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { packageRoot } from '../../share/paths.js';
import { debianRoot, type DebianRoot } from '../lib/debian-root.js';

const out = mkdtempSync(join(tmpdir(), 'vmd-deb-'));
t.teardown(() => rmSync(out, { recursive: true, force: true }));

/** The .deb, built once for the file's tests from the tree `npm run build` left. */
async function buildDeb(): Promise<string> {
  const r = await execa(process.execPath, [join(packageRoot, 'share', 'package', 'build.mjs'), out], { cwd: packageRoot });
  return r.stdout.trim().split('\n').at(-1)!;
}

const debP = buildDeb();

t.test('the package lists the commands, man pages, unit, completion and both native modules', async (t) => {
  const deb = await debP;
  t.match(deb, /vmd_[0-9.]+_[a-z0-9]+\.deb$/);
  const list = (await execa('dpkg-deb', ['-c', deb])).stdout;
  for (const path of [
    './usr/sbin/vmd -> ../lib/vmd/dist/vmd/vmd.js', './usr/bin/vmctl -> ../lib/vmd/dist/vmctl/vmctl.cjs',
    './usr/share/man/man8/vmd.8.gz', './usr/share/man/man8/vmctl.8.gz', './usr/share/man/man5/vm.conf.5.gz',
    './usr/lib/systemd/system/vmd.service', './usr/share/bash-completion/completions/vmctl',
    './usr/lib/tmpfiles.d/vmd.conf', './etc/logrotate.d/vmd', './etc/vm.conf.example',
    './usr/lib/vmd/node_modules/better-sqlite3/build/Release/better_sqlite3.node',
    './usr/lib/vmd/vmd/native/build/Release/vmd_native.node', './usr/lib/vmd/vmd/migrations/0001-initial.sql',
  ]) t.ok(list.includes(path), path);
  t.notOk(list.includes('node_modules/tap/'), 'no development dependencies');
  t.notOk(list.includes('/dist/test/'), 'no tests');
  const control = (await execa('dpkg-deb', ['-f', deb, 'Depends'])).stdout;
  t.match(control, /nodejs \(>= 20\)/);
});

t.test('the unit keeps guests across stop and restart, waits for the network and reloads with SIGHUP', async (t) => {
  const unit = readFileSync(join(packageRoot, 'share', 'package', 'vmd.service'), 'utf8');
  t.match(unit, /^KillMode=process$/m);
  // Notify, not forking: systemd must know which of vmd's processes stop and reload signal.
  t.match(unit, /^Type=notify$/m);
  t.match(unit, /^ExecStart=\/usr\/sbin\/vmd -d$/m);
  t.match(unit, /^After=network-online\.target/m);
  t.match(unit, /^Wants=network-online\.target$/m);
  t.match(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
});

t.test('the package\'s logrotate snippet rotates vmd\'s log and each QEMU log, copying and truncating in place', async (t) => {
  const deb = await debP;
  const dir = mkdtempSync(join(tmpdir(), 'vmd-logrotate-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // The snippet as the .deb installs it, pointed at a state directory of the test's.
  const snippet = (await execa('sh', ['-c', 'dpkg-deb --fsys-tarfile "$1" | tar -xO ./etc/logrotate.d/vmd', 'sh', deb])).stdout;
  const state = join(dir, 'state');
  mkdirSync(join(state, 'log', '3'), { recursive: true });
  const conf = join(dir, 'vmd.logrotate');
  writeFileSync(conf, `${snippet.replaceAll('/var/lib/vmd/', `${state}/`)}\n`, { mode: 0o644 });
  t.match(readFileSync(conf, 'utf8'), new RegExp(`^${state}/log/\\*/qemu\\.log ${state}/vmd\\.log \\{$`, 'm'), 'both logs, under the state directory');
  const qemuLog = join(state, 'log', '3', 'qemu.log');
  const vmdLog = join(state, 'vmd.log');
  writeFileSync(qemuLog, 'x'.repeat(2 * 1024 * 1024));
  writeFileSync(vmdLog, 'vmd: started\n');
  // Held open with O_APPEND, as QEMU and a detached vmd hold them: copytruncate must keep that descriptor useful.
  const held = openSync(qemuLog, 'a');
  t.teardown(() => closeSync(held));

  const debug = await execa('logrotate', ['-d', '-s', join(dir, 'status'), conf], { reject: false });
  t.equal(debug.exitCode, 0, `logrotate -d: ${debug.stderr}`);
  t.notMatch(debug.stderr, /error:/, 'no error in the dry run');
  t.notMatch(debug.stderr, /overrides previously specified/, 'no directive cancels another (size would cancel weekly)');
  t.match(debug.stderr, /considering log .*\/log\/3\/qemu\.log/, 'the per-VM QEMU log is found');

  const run = await execa('logrotate', ['-s', join(dir, 'status'), conf], { reject: false });
  t.equal(run.exitCode, 0, `logrotate: ${run.stderr}`);
  t.equal(statSync(qemuLog).size, 0, 'the 2 MB QEMU log was truncated in place (maxsize 1M)');
  t.equal(statSync(`${qemuLog}.1`).size, 2 * 1024 * 1024, 'its copy kept, not yet compressed (delaycompress)');
  t.equal(statSync(vmdLog).size, 13, 'vmd.log, small and rotated less than a week ago, left alone');
  writeSync(held, 'after rotation\n');
  t.equal(readFileSync(qemuLog, 'utf8'), 'after rotation\n', 'the open descriptor writes at the start of the emptied file');

  const forced = await execa('logrotate', ['-f', '-s', join(dir, 'status'), conf], { reject: false });
  t.equal(forced.exitCode, 0, `logrotate -f: ${forced.stderr}`);
  t.ok(existsSync(`${qemuLog}.2.gz`), 'the older copy compressed on the next rotation');
  t.ok(existsSync(`${vmdLog}.1`), 'vmd.log rotated when forced');
});

t.test('installed into a fresh Debian root', async (t) => {
  const deb = await debP;
  let root: DebianRoot | null = null;
  t.teardown(async () => { await root?.unmount(); });
  root = await debianRoot();
  const dir = root.dir;
  // env -i: tap's hooks put their loader into every child's NODE_OPTIONS, which the root's node cannot find.
  const inRoot = (...argv: string[]) => execa('/usr/bin/env', ['-i', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'LANG=C', 'chroot', dir, ...argv], { reject: false });
  copyFileSync(deb, join(dir, 'tmp', 'vmd.deb'));
  const install = await inRoot('dpkg', '-i', '/tmp/vmd.deb');
  t.equal(install.exitCode, 0, `dpkg -i: ${install.stdout}\n${install.stderr}`);
  t.match((await inRoot('getent', 'passwd', '_vmd')).stdout, /^_vmd:/, 'postinst made the _vmd user');

  const check = await inRoot('vmd', '-n', '-f', '/etc/vm.conf.example');
  t.equal(check.exitCode, 0, `vmd -n: ${check.stderr}`);
  t.match(check.stderr + check.stdout, /configuration OK/);
  t.equal((await inRoot('man', '-w', 'vmctl')).stdout, '/usr/share/man/man8/vmctl.8.gz');
  t.equal((await inRoot('man', '-w', '5', 'vm.conf')).stdout, '/usr/share/man/man5/vm.conf.5.gz');
  const help = await inRoot('vmctl', 'help');
  t.match(help.stdout, /\n\tstatus\t/, 'vmctl runs and lists its commands');

  const verify = await inRoot('systemd-analyze', 'verify', '/usr/lib/systemd/system/vmd.service');
  t.equal(verify.exitCode, 0, `systemd-analyze verify: ${verify.stderr}`);
  t.notMatch(verify.stderr, /vmd\.service:/, 'no complaint about the unit');

  // Removal keeps the state (and guests: nothing stops them), purge removes it and the user.
  writeFileSync(join(dir, 'var', 'lib', 'vmd', 'vmd.db'), 'state');
  t.equal((await inRoot('dpkg', '-r', 'vmd')).exitCode, 0, 'dpkg -r');
  t.ok(existsSync(join(dir, 'var', 'lib', 'vmd', 'vmd.db')), 'remove keeps /var/lib/vmd');
  t.notOk(existsSync(join(dir, 'usr', 'sbin', 'vmd')), 'remove takes the command');
  t.equal((await inRoot('dpkg', '-P', 'vmd')).exitCode, 0, 'dpkg -P');
  t.notOk(existsSync(join(dir, 'var', 'lib', 'vmd')), 'purge removes /var/lib/vmd');
  t.equal((await inRoot('getent', 'passwd', '_vmd')).exitCode, 2, 'purge removes _vmd');
});
