// End-to-end harness: a real vmd in a network namespace of the test's own, with its own state dir and socket.
// Teardown stops vmd, kills any guest it left, removes the namespace and the directory: nothing outlives a test.

import { spawn } from 'node:child_process';
import { execa, type ResultPromise } from 'execa';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:net';
import { encodeFrame, readFrames } from '../../share/frame.js';
import type { VmInfo } from '../../share/protocol.js';
import { packageRoot, vmctlEntry, vmdEntry } from '../../share/paths.js';

let counter = 0;

export interface VmctlResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly exitCode: number;
}

export interface HarnessOptions {
  /** vm.conf text; written to <dir>/vm.conf. */
  readonly config?: string;
  /** Extra environment for vmd (e.g. VMD_STOP_TIMEOUT). */
  readonly env?: Record<string, string>;
}

/** Guest boot files built by share/guest/build. */
export const guestKernel = join(packageRoot, 'build', 'guest', 'kernel');
export const guestInitrd = join(packageRoot, 'build', 'guest', 'initrd.img');

/** Every pid whose command line mentions `needle` (used to find the guests of one harness). */
export function pidsMatching(needle: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      if (cmd.includes(needle)) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

export class VmdHarness {
  readonly dir: string;
  readonly netns: string;
  readonly socket: string;
  readonly stateDir: string;
  readonly configPath: string;
  private daemon: ResultPromise | null = null;
  daemonLog = '';

  private constructor(private readonly options: HarnessOptions) {
    this.dir = mkdtempSync(join(tmpdir(), 'vmd-e2e-'));
    chmodSync(this.dir, 0o755);
    this.netns = `vmdt-${process.pid}-${counter++}`;
    this.socket = join(this.dir, 'vmd.sock');
    this.stateDir = join(this.dir, 'state');
    this.configPath = join(this.dir, 'vm.conf');
    writeFileSync(this.configPath, options.config ?? '# empty\n');
  }

  /** Create the namespace and start vmd -d in it; resolves once the socket answers. */
  static async start(options: HarnessOptions = {}): Promise<VmdHarness> {
    const h = new VmdHarness(options);
    try {
      await execa('ip', ['netns', 'add', h.netns]);
      await execa('ip', ['-n', h.netns, 'link', 'set', 'lo', 'up']);
      await h.startDaemon();
    } catch (err) {
      // The caller never gets the harness to tear down: do it here, or the namespace outlives the test.
      await h.teardown();
      throw err;
    }
    return h;
  }

  /** A clean environment: tap's NODE_OPTIONS hooks must not follow vmd or vmctl (they write into .tap/ as any user). */
  get env(): Record<string, string> {
    return {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      VMD_SOCKET: this.socket, VMD_STATE_DIR: this.stateDir,
      // Not the host's /etc/vmd/nft.d: an operator's own rules there would load into every test daemon's tables.
      VMD_NFT_DIR: join(this.dir, 'nft.d'),
      ...(this.options.env ?? {}),
    };
  }

  /**
   * `env -i VAR=value…`: tap's process-info hook patches spawn() to put its loader into every child's NODE_OPTIONS
   * (even through ip(8)), and vmd's roles and non-root vmctl runs then try to write into .tap/. env(1) starts the
   * command with exactly the harness's environment.
   */
  private cleanEnv(): string[] {
    return ['-i', ...Object.entries(this.env).map(([k, v]) => `${k}=${v}`)];
  }

  async startDaemon(): Promise<void> {
    this.daemonLog = '';
    // The entry itself, as an operator runs it: its shebang carries vmd's node flags.
    const d = execa('ip', ['netns', 'exec', this.netns, '/usr/bin/env', ...this.cleanEnv(), vmdEntry, '-d', '-f', this.configPath], {
      env: this.env, extendEnv: false, reject: false, all: true, cwd: this.dir,
    });
    d.all?.on('data', (c: Buffer) => { this.daemonLog += c.toString(); });
    this.daemon = d;
    const deadline = Date.now() + 20_000;
    for (;;) {
      const r = await this.vmctl(['status']);
      if (!/connect:/.test(r.stderr)) return;
      if (d.exitCode !== null || Date.now() > deadline) {
        throw new Error(`vmd did not start:\n${this.daemonLog}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Run the real vmctl against this daemon; optionally as another user. */
  async vmctl(args: string[], opts: { uid?: number; gid?: number; input?: string; timeoutMs?: number } = {}): Promise<VmctlResult> {
    const r = await execa('/usr/bin/env', [...this.cleanEnv(), process.execPath, vmctlEntry, ...args], {
      env: this.env, extendEnv: false, reject: false, cwd: this.dir,
      ...(opts.uid === undefined ? {} : { uid: opts.uid, gid: opts.gid ?? opts.uid }),
      ...(opts.input === undefined ? { stdin: 'ignore' as const } : { input: opts.input }),
      timeout: opts.timeoutMs ?? 60_000,
    });
    return { stdout: String(r.stdout), stderr: String(r.stderr), exitCode: r.exitCode ?? 1 };
  }

  /** Poll `vmctl status` until the VM's state column matches, or throw with the last output. */
  async waitState(name: string, state: string, timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      const r = await this.vmctl(['status', name]);
      last = r.stdout + r.stderr;
      const row = r.stdout.split('\n').find((l) => l.trim().endsWith(` ${name}`));
      const cols = row?.trim().split(/\s+/) ?? [];
      // vmctl shows a starting VM as running; "running" here also means QEMU exists (a pid, not "-").
      if (row !== undefined && cols[7] === state && (state !== 'running' || /^\d+$/.test(cols[1] ?? ''))) return row;
      // status exits 1 when no VM is left at all (OpenBSD); the header alone still means the daemon answered.
      if (state === 'gone' && row === undefined && r.stdout.startsWith('   ID ')) return '';
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`vm ${name} did not reach ${state}:\n${last}\n--- vmd log ---\n${this.daemonLog}`);
  }

  /**
   * Until the start of `name` is done: state `running` in vmd's own words (`--json`). vmctl's table shows a starting
   * guest as running (OpenBSD has no starting state), so waitState returns while the start may still be sealing its
   * display socket; tests of what a finished start leaves use this.
   */
  async waitStarted(name: string, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      const r = await this.vmctl(['--json', 'status', name]);
      last = r.stdout + r.stderr;
      try {
        const vms = (JSON.parse(r.stdout) as { vms?: Array<{ state?: string }> }).vms ?? [];
        if (vms[0]?.state === 'running') return;
      } catch {
        /* not an answer yet */
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`vm ${name} did not finish starting:\n${last}\n--- vmd log ---\n${this.daemonLog}`);
  }

  /**
   * Poll the daemon over one open connection until `pred` holds for the VM list; returns the ms it took.
   * Measures the daemon, not vmctl's start-up, for assertions like "noticed within a second".
   */
  async pollStatus(pred: (vms: readonly VmInfo[]) => boolean, timeoutMs: number): Promise<number> {
    const started = Date.now();
    const sock = connect(this.socket);
    const reader = readFrames(sock);
    let id = 0;
    try {
      await new Promise<void>((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
      for (;;) {
        const reply = new Promise<{ vms: VmInfo[] }>((resolve) => reader.once('message', (m) => resolve(m as { vms: VmInfo[] })));
        sock.write(encodeFrame({ v: 1, id: ++id, type: 'vm.status.request' }));
        if (pred((await reply).vms)) return Date.now() - started;
        if (Date.now() - started > timeoutMs) throw new Error(`status condition not met within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      sock.destroy();
    }
  }

  /**
   * vmctl with stdin and stdout on files of ours, timed from spawn to exit: execa's `{ file }` relays the bytes
   * through this process and measured 4x slower than the command itself (send and receive move ~100 MB).
   */
  async vmctlFiles(args: string[], io: { stdin?: string; stdout?: string }, timeoutMs = 120_000): Promise<VmctlResult & { ms: number }> {
    const fds: number[] = [];
    const open = (path: string | undefined, flags: string): number | 'ignore' => {
      if (path === undefined) return 'ignore';
      const fd = openSync(path, flags);
      fds.push(fd);
      return fd;
    };
    try {
      const t0 = performance.now();
      const child = spawn('/usr/bin/env', [...this.cleanEnv(), process.execPath, vmctlEntry, ...args], {
        env: this.env, cwd: this.dir, stdio: [open(io.stdin, 'r'), open(io.stdout, 'w'), 'pipe'],
      });
      let stderr = '';
      child.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const exitCode = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? 1)));
      clearTimeout(timer);
      return { stdout: '', stderr: stderr.replace(/\n$/, ''), exitCode, ms: performance.now() - t0 };
    } finally {
      for (const fd of fds) closeSync(fd);
    }
  }

  /** Read the console in pipe mode: send input, collect output until it matches or time runs out. */
  async console(name: string, input: string, expect: RegExp, timeoutSec = 20): Promise<string> {
    const deadline = Date.now() + timeoutSec * 1000;
    let out = '';
    while (Date.now() < deadline) {
      const r = await this.vmctl(['console', '-t', '3', name], { input, timeoutMs: timeoutSec * 1000 + 5000 });
      out += r.stdout;
      if (expect.test(out)) return out;
      if (r.exitCode !== 0) throw new Error(`console failed: ${r.stderr}`);
    }
    throw new Error(`console output did not match ${expect}:\n${out}`);
  }

  daemonPids(): number[] {
    return pidsMatching(vmdEntry).filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/environ`, 'utf8').includes(`VMD_STATE_DIR=${this.stateDir}`);
      } catch {
        return false;
      }
    });
  }

  /** The pid of one child role of this harness's vmd (`--role control`), or null when none runs. */
  rolePid(role: 'control' | 'vmm'): number | null {
    for (const pid of this.daemonPids()) {
      try {
        const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        const i = argv.indexOf('--role');
        if (i >= 0 && argv[i + 1] === role) return pid;
      } catch {
        /* gone */
      }
    }
    return null;
  }

  /** Waits until a role runs with a pid other than `old` (after a kill or a refusal), and returns it. */
  async roleRespawned(role: 'control' | 'vmm', old: number): Promise<number> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const now = this.rolePid(role);
      if (now !== null && now !== old) return now;
      if (Date.now() > deadline) throw new Error(`no new ${role} process:\n${this.daemonLog}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Waits for vmd's parent to exit by itself; its exit code. */
  async daemonExit(timeoutMs: number): Promise<number | null> {
    const d = this.daemon;
    if (d === null) return null;
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([d, new Promise<null>((resolve) => { timer = setTimeout(() => resolve(null), timeoutMs); })]);
    clearTimeout(timer);
    if (r === null) throw new Error(`vmd did not exit within ${timeoutMs} ms:\n${this.daemonLog}`);
    this.daemon = null;
    return r.exitCode ?? null;
  }

  guestPids(): number[] {
    return pidsMatching(join(this.stateDir, 'run')).filter((p) => !this.daemonPids().includes(p));
  }

  /** kill -9 every vmd process of this harness (parent and roles), leaving guests alone. */
  async killDaemon(): Promise<void> {
    for (const pid of this.daemonPids()) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    await this.daemon?.catch(() => undefined);
    this.daemon = null;
    const deadline = Date.now() + 5000;
    while (this.daemonPids().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  }

  async stopDaemon(): Promise<void> {
    if (this.daemon === null) return;
    this.daemon.kill('SIGTERM');
    const timer = setTimeout(() => this.daemon?.kill('SIGKILL'), 10_000);
    await this.daemon.catch(() => undefined);
    clearTimeout(timer);
    this.daemon = null;
  }

  async teardown(): Promise<void> {
    await this.stopDaemon().catch(() => undefined);
    await this.killDaemon().catch(() => undefined);
    for (const pid of this.guestPids()) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    await execa('ip', ['netns', 'del', this.netns], { reject: false });
    // rdomain namespaces this daemon made carry its state directory's suffix (vmd/network.ts rdomainNetnsFor).
    const { rdomainNetnsFor } = await import('../../vmd/network.js');
    const suffix = rdomainNetnsFor(0, this.stateDir).replace(/^vmd-rdomain0/, '');
    for (const ns of existsSync('/run/netns') ? readdirSync('/run/netns') : []) {
      if (suffix !== '' && ns.endsWith(suffix)) {
        await execa('ip', ['netns', 'del', ns], { reject: false });
        rmSync(join('/run/netns', ns), { force: true });
      }
    }
    if (existsSync(this.dir)) rmSync(this.dir, { recursive: true, force: true });
  }
}
