// libvirt as a measured peer of the bench (never a dependency of vmd): when virsh, libvirtd and virtlogd are
// installed, a libvirtd of the bench's own in a network and mount namespace, its state on tmpfs, its socket in a temp dir.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { nowMs, procArgv, procPids, sleep } from './daemon-lib.js';

const PROGRAMS = ['virsh', 'libvirtd', 'virtlogd'];

/** Why libvirt cannot be the peer here, or undefined when it can. */
export function libvirtMissing(): string | undefined {
  const missing = PROGRAMS.filter((p) => spawnSync('sh', ['-c', `command -v ${p}`]).status !== 0);
  return missing.length === 0 ? undefined : `libvirt not installed (${missing.join(', ')} not on PATH)`;
}

/** A domain as close to a vmd guest of the same config as libvirt allows: direct kernel boot, serial to a file. */
export function domainXml(name: string, kernel: string, initrd: string, consoleFile: string): string {
  const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;');
  return `<domain type="qemu">
  <name>${esc(name)}</name>
  <memory unit="MiB">128</memory>
  <vcpu>1</vcpu>
  <os><type arch="x86_64" machine="q35">hvm</type><kernel>${esc(kernel)}</kernel><initrd>${esc(initrd)}</initrd><cmdline>console=ttyS0</cmdline></os>
  <features><acpi/><apic/></features>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices><serial type="file"><source path="${esc(consoleFile)}"/><target port="0"/></serial></devices>
</domain>
`;
}

/** libvirtd and virtlogd of one bench run. */
export class LibvirtPeer {
  readonly uri: string;

  private constructor(readonly dir: string, readonly netns: string, private readonly daemon: ChildProcess) {
    this.uri = `qemu:///system?socket=${join(dir, 'sock', 'libvirt-sock')}`;
  }

  /** Starts the daemons; resolves once virsh gets an answer. */
  static async start(): Promise<LibvirtPeer> {
    const dir = mkdtempSync(join(tmpdir(), 'vmd-bench-libvirt-'));
    const netns = `vmdb-lv-${process.pid}`;
    spawnSync('mkdir', ['-p', join(dir, 'etc'), join(dir, 'sock')]);
    // QEMU as root without relabelling: libvirt would otherwise chown the test guest's kernel and initrd.
    writeFileSync(join(dir, 'etc', 'qemu.conf'), 'user = "root"\ngroup = "root"\ndynamic_ownership = 0\nremember_owner = 0\nsecurity_driver = "none"\n');
    writeFileSync(join(dir, 'etc', 'libvirtd.conf'), `unix_sock_dir = "${join(dir, 'sock')}"\nauth_unix_rw = "none"\nauth_unix_ro = "none"\n`);
    // Debian's libvirt wants its qemu user to exist even when qemu.conf says root.
    if (spawnSync('getent', ['passwd', 'libvirt-qemu']).status !== 0) {
      spawnSync('groupadd', ['--system', 'libvirt-qemu']);
      spawnSync('useradd', ['--system', '--no-create-home', '-g', 'libvirt-qemu', '-s', '/usr/sbin/nologin', 'libvirt-qemu']);
    }
    spawnSync('ip', ['netns', 'add', netns]);
    spawnSync('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
    const script = [
      'for d in /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt; do mkdir -p $d && mount -t tmpfs tmpfs $d || exit 1; done',
      `mount --bind ${join(dir, 'etc')} /etc/libvirt || exit 1`,
      'mkdir -p /var/log/libvirt/qemu /var/lib/libvirt/qemu',
      'virtlogd -d || exit 1',
      'exec libvirtd',
    ].join('\n');
    const daemon = spawn('ip', ['netns', 'exec', netns, 'unshare', '-m', '--propagation', 'private', 'sh', '-c', script], {
      stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' },
    });
    let log = '';
    daemon.stderr?.on('data', (c: Buffer) => { log = (log + c.toString()).slice(-4000); });
    const peer = new LibvirtPeer(dir, netns, daemon);
    const deadline = nowMs() + 20_000;
    while ((await peer.virsh(['version'])).exitCode !== 0) {
      if (daemon.exitCode !== null || nowMs() > deadline) {
        await peer.stop();
        throw new Error(`libvirtd did not start: ${log.trim().split('\n').slice(-3).join(' | ')}`);
      }
      await sleep(100);
    }
    return peer;
  }

  /** virsh against this daemon, in a clean environment; never rejects. */
  async virsh(args: readonly string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
    const r = await execa('/usr/bin/env', ['-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, 'virsh', '-c', this.uri, ...args], { reject: false, timeout: 60_000 });
    return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  }

  /** Defines a domain; throws with virsh's words on failure. */
  async define(xml: string, name: string): Promise<void> {
    const file = join(this.dir, `${name}.xml`);
    writeFileSync(file, xml);
    const r = await this.virsh(['define', file]);
    if (r.exitCode !== 0) throw new Error(`virsh define ${name}: ${r.stderr.trim()}`);
  }

  /** libvirtd's and virtlogd's pids (the processes of this peer's namespace, QEMU aside). */
  daemonPids(): number[] {
    const inNs = spawnSync('ip', ['netns', 'pids', this.netns], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l !== '').map(Number);
    return inNs.filter((pid) => {
      const argv0 = procArgv(pid)?.[0] ?? '';
      return argv0.endsWith('libvirtd') || argv0.endsWith('virtlogd');
    });
  }

  /** Destroys every running domain, stops the daemons and removes the namespace and files. */
  async stop(): Promise<void> {
    const running = await this.virsh(['list', '--name']);
    for (const name of running.stdout.split('\n').map((l) => l.trim()).filter((l) => l !== '')) await this.virsh(['destroy', name]);
    const pids = spawnSync('ip', ['netns', 'pids', this.netns], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l !== '').map(Number);
    for (const pid of pids) {
      try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ }
    }
    const deadline = nowMs() + 10_000;
    while (procPids().some((p) => pids.includes(p) && procArgv(p) !== null) && nowMs() < deadline) await sleep(50);
    for (const pid of pids) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    this.daemon.kill('SIGKILL');
    spawnSync('ip', ['netns', 'del', this.netns]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Milliseconds until `text` appears in a file a guest's serial port writes to, polled every few ms. */
export async function fileWait(file: string, text: string, timeoutMs: number): Promise<number> {
  const deadline = nowMs() + timeoutMs;
  for (;;) {
    if (existsSync(file) && readFileSync(file, 'latin1').includes(text)) return nowMs();
    if (nowMs() > deadline) throw new Error(`"${text}" not in ${file} within ${timeoutMs} ms`);
    await sleep(2);
  }
}
