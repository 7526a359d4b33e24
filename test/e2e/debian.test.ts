// End to end with a real operating system: the Debian 12 disk share/guest/debian builds, booted by a real vmd.
// cloud-init on a DHCP switch, then a boot entry kept across a stop and start. Few boots: TCG is slow.
// Both boot through UEFI: the disk's extlinux does not get past its boot sector under SeaBIOS yet (see the
// builder), so the SeaBIOS boot of the Debian disk is not shown here.

import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { packageRoot, vmctlEntry } from '../../share/paths.js';
import { VmdHarness } from '../lib/vmd-harness.js';

// Opt-in: each UEFI boot of the disk takes minutes under TCG, and the builder needs Debian's mirror. Not yet
// shown passing end to end; run with VMD_TEST_DEBIAN=1 (share/setup then builds the disk too).
const skip = process.env.VMD_TEST_DEBIAN === '1' ? false : 'the Debian disk tests run with VMD_TEST_DEBIAN=1';

/** The cached disk; the builder prints its path, building it first when the cache has none (a few minutes). */
let baseDiskPath: string | null = null;
function baseDisk(): string {
  baseDiskPath ??= execFileSync(join(packageRoot, 'share', 'guest', 'debian'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  return baseDiskPath;
}

/** A throwaway overlay on the shared base, so the cached disk is never written. */
async function overlay(h: VmdHarness, name: string): Promise<string> {
  const path = join(h.dir, `${name}.qcow2`);
  await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', baseDisk(), '-F', 'qcow2', path]);
  return path;
}

/** Replaces the daemon's vm.conf and reloads it: VMs appear (and start) or are removed with their files. */
async function reconfigure(h: VmdHarness, text: string): Promise<void> {
  writeFileSync(h.configPath, text);
  const r = await h.vmctl(['reload']);
  if (r.exitCode !== 0) throw new Error(`reload failed: ${r.stderr}`);
}

/** Types `text` on the console once (a short attach in pipe mode). */
async function typeOnce(h: VmdHarness, name: string, text: string): Promise<void> {
  const r = await h.vmctl(['console', '-t', '1', name], { input: text });
  if (r.exitCode !== 0) throw new Error(`console failed: ${r.stderr}`);
}

/** Logs in as root on the serial console (the image's test password) and leaves a shell prompt. */
async function consoleLogin(h: VmdHarness, name: string, timeoutSec: number): Promise<void> {
  // One boot's ring buffer shows each of these once: every wait is for something the previous input caused.
  // h.console sends its input at every attach, so the name and the password are typed once, then waited on.
  await h.console(name, '\n', /login:/, timeoutSec);
  await typeOnce(h, name, 'root\n');
  await h.console(name, '', /Password:/, 60);
  await typeOnce(h, name, 'vmd\n');
  await h.console(name, '', /root@[\w-]+:~# /, 120);
}

let runs = 0;

/**
 * Runs a shell command on the console and returns what it printed between two markers. The markers are new for
 * every run and only the shell's arithmetic writes them, so neither the echoed command nor an earlier run matches.
 */
async function consoleRun(h: VmdHarness, name: string, cmd: string, timeoutSec = 60): Promise<string> {
  const n = 1000 + runs++;
  await typeOnce(h, name, `echo BEGIN-$((${n}+0)); ${cmd}; echo END-$((${n}+0))\n`);
  const out = await h.console(name, '', new RegExp(`BEGIN-${n}[\\s\\S]*END-${n}`), timeoutSec);
  const m = new RegExp(`BEGIN-${n}\\r?\\n([\\s\\S]*?)END-${n}`).exec(out);
  return m === null ? '' : m[1]!;
}

/** Collects console output in the background until the VM's console goes away (its QEMU exits). */
function consoleTap(h: VmdHarness, name: string): { readonly done: Promise<string> } {
  const p = execa(process.execPath, [vmctlEntry, 'console', '-t', '120', name], {
    env: h.env, extendEnv: false, reject: false, stdin: 'pipe', timeout: 150_000,
  });
  return { done: p.then((r) => String(r.stdout)) };
}

// Each boot of this disk takes 30 s to 2 min on an idle 2-core machine and up to 10 min on a loaded one (measured
// Dec 2026: cloud-init finished at 535 s of guest uptime with the load at 15): the file needs more than tap's default.
t.setTimeout(60 * 60_000);

t.before(() => {
  if (skip === false && !existsSync(baseDisk())) throw new Error(`debian test disk missing: ${baseDisk()}`);
});

t.test('cloud-init: login prompt, a lease from a vmd switch, hostname and key over ssh, clean systemd stop', { skip }, async (t) => {
  const h = await VmdHarness.start();
  t.teardown(() => h.teardown());
  // nat needs a way out: a veth pair with a default route inside the test namespace stands for the host's uplink.
  for (const args of [['link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up1'], ['addr', 'add', '10.203.0.1/24', 'dev', 'up0'],
    ['addr', 'add', '10.203.0.2/24', 'dev', 'up1'], ['link', 'set', 'up0', 'up'], ['link', 'set', 'up1', 'up'],
    ['route', 'add', 'default', 'via', '10.203.0.2', 'dev', 'up0']]) await execa('ip', ['-n', h.netns, ...args]);
  const key = join(h.dir, 'id_ed25519');
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'vmd-test', '-f', key]);
  const pub = readFileSync(`${key}.pub`, 'utf8').trim();
  const disk = await overlay(h, 'bios');
  await reconfigure(h, `switch "lan" {\n  interface vmdtdeb0\n  address 10.81.0.1/24\n  dhcp\n  nat\n}\n` +
    `vm "deb" {\n  memory 512M\n  firmware uefi\n  disk "${disk}"\n  interface {\n    switch "lan"\n    forward tcp 2222 to 22\n  }\n` +
    `  cloud-init {\n    hostname "web-1"\n    user "alice"\n    ssh-key "${pub}"\n  }\n}\n`);
  await h.waitState('deb', 'running', 60_000);
  const id = Number((await h.waitState('deb', 'running', 1000)).trim().split(/\s+/)[0]);

  const boot = await h.console('deb', '\n', /web-1 login:/, 900);
  t.match(boot, /Welcome to GRUB/, 'booted from the disk');
  t.match(boot, /web-1 login:/, 'a getty on the serial console, under the hostname cloud-init set');

  const fixed = `10.81.0.${2 + 4 * (id - 1)}`;
  const links = await h.vmctl(['links']);
  t.match(links.stdout, new RegExp(`\\bdeb\\s+0\\s+vmd${id}i0\\s+\\S+\\s+lan\\s+${fixed.replace(/\./g, '\\.')}/24`), 'the guest holds the switch\'s lease');

  // sshd may come up a little after the getty: bounded retries.
  let ssh = { stdout: '', stderr: '', exitCode: 1 as number | undefined };
  for (let i = 0; i < 30 && ssh.exitCode !== 0; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 3000));
    const r = await execa('ip', ['netns', 'exec', h.netns, 'ssh', '-i', key, '-p', '2222', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no',
      '-o', 'UserKnownHostsFile=/dev/null', '-o', 'ConnectTimeout=5', 'alice@127.0.0.1', 'hostname'], { reject: false, timeout: 30_000 });
    ssh = { stdout: String(r.stdout), stderr: String(r.stderr), exitCode: r.exitCode };
  }
  t.equal(ssh.exitCode, 0, `ssh as the cloud-init user with the vm.conf key: ${ssh.stderr}`);
  t.equal(ssh.stdout.trim(), 'web-1', 'the hostname from vm.conf');
  t.ok(existsSync(join(h.stateDir, 'cloud-init', `${id}.iso`)), 'the seed is kept in the state directory');

  const tap = consoleTap(h, 'deb');
  await new Promise((r) => setTimeout(r, 1000));
  const stopped = await h.vmctl(['stop', '-w', 'deb'], { timeoutMs: 120_000 });
  t.equal(stopped.exitCode, 0, stopped.stderr);
  const shutdown = await tap.done;
  t.match(shutdown, /Reached target .*Power[- ]Off/i, 'systemd stops its units and reaches power-off');
  t.match(shutdown, /reboot: Power down/, 'and powers off by itself');
  t.match(h.daemonLog, /vm "deb" \(vm \d+\) terminated: guest-shutdown/, 'the guest shut down (ACPI), not killed');

  await reconfigure(h, '# empty\n');
  t.notOk(existsSync(join(h.stateDir, 'cloud-init', `${id}.iso`)), 'the seed goes with the VM');
});

t.test('UEFI: a boot entry written by efibootmgr in the guest survives a stop and start; the store goes with the VM', { skip }, async (t) => {
  const h = await VmdHarness.start();
  t.teardown(() => h.teardown());
  const disk = await overlay(h, 'uefi');
  await reconfigure(h, `vm "efi" {\n  memory 512M\n  firmware uefi\n  disk "${disk}"\n}\n`);
  await h.waitState('efi', 'running', 60_000);
  const id = Number((await h.waitState('efi', 'running', 1000)).trim().split(/\s+/)[0]);
  const store = join(h.stateDir, 'nvram', `${id}.fd`);

  await consoleLogin(h, 'efi', 900);
  const made = await consoleRun(h, 'efi', "efibootmgr -q -c -d /dev/vda -p 1 -L vmd-test-entry -l '\\EFI\\BOOT\\BOOTX64.EFI' && efibootmgr");
  t.match(made, /vmd-test-entry/, 'efibootmgr wrote the entry');
  t.ok(existsSync(store), 'the VM has its own variable store');

  const stopped = await h.vmctl(['stop', '-w', 'efi'], { timeoutMs: 120_000 });
  t.equal(stopped.exitCode, 0, stopped.stderr);
  const started = await h.vmctl(['start', 'efi']);
  t.equal(started.exitCode, 0, started.stderr);
  await consoleLogin(h, 'efi', 900);
  const listed = await consoleRun(h, 'efi', 'efibootmgr');
  t.match(listed, /vmd-test-entry/, 'the entry is still there after a stop and start');
  await h.vmctl(['stop', '-f', '-w', 'efi']);

  await reconfigure(h, '# empty\n');
  t.notOk(existsSync(store), 'the variable store goes with the VM');
});
