// DHCP (and DNS forwarding) for switches with `dhcp` and for local interfaces: one dnsmasq process per link or
// bridge, bound to that one interface only, started, reloaded and stopped by the parent, found again after a crash.

import { mkdirSync, openSync, readFileSync, readSync, closeSync, statSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { VmdError } from '../../share/errors.js';
import { dnsmasqArgs, type DnsmasqSpec } from './dnsmasq-args.js';
import { pidAlive } from '../pid.js';

/** How start() runs dnsmasq: in a network namespace (through `ip netns exec`), how long to wait for it to bind. */
export interface DnsmasqStartOptions {
  readonly netns?: string | null;
  /** Milliseconds to wait for the "bound" log line (default 5000). */
  readonly timeoutMs?: number;
  /** The dnsmasq binary (default `dnsmasq` from PATH). */
  readonly binary?: string;
  /**
   * true: dnsmasq is killed when this Node process exits, even by a signal (tests). Default false: it runs in its
   * own session and outlives vmd like QEMU does; the parent keeps pidFile and calls killStale() after a restart.
   */
  readonly cleanup?: boolean;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

function readFrom(path: string, offset: number): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return '';
  }
  try {
    const size = statSync(path).size;
    if (size <= offset) return '';
    const buf = Buffer.alloc(Math.min(size - offset, 1 << 20));
    const n = readSync(fd, buf, 0, buf.length, offset);
    return buf.subarray(0, n).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

// argv of a live process, or null (gone, a zombie, or unreadable).
function cmdline(pid: number): string[] | null {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (raw.length === 0) return null;
    return raw.replace(/\0$/, '').split('\0');
  } catch {
    return null;
  }
}

/** A running dnsmasq that vmd started; the parent records its pidFile so a restarted vmd can killStale() it. */
export class DnsmasqInstance {
  readonly spec: DnsmasqSpec;
  readonly args: readonly string[];
  readonly netns: string | null;
  /** Resolves when dnsmasq has exited, however that happened. */
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  private readonly child: ResultPromise;
  private exitInfo: { code: number | null; signal: string | null } | undefined;

  private constructor(spec: DnsmasqSpec, args: string[], netns: string | null, child: ResultPromise) {
    this.spec = spec;
    this.args = args;
    this.netns = netns;
    this.child = child;
    this.exited = child.then(
      (r) => ({ code: r.exitCode ?? null, signal: r.signal ?? null }),
      () => ({ code: null, signal: null }),
    );
    void this.exited.then((e) => {
      this.exitInfo = e;
    });
  }

  /** dnsmasq's pid (the same process as `ip netns exec`, which execs it). */
  get pid(): number {
    return this.child.pid ?? -1;
  }

  get leaseFile(): string {
    return this.spec.leaseFile;
  }

  get pidFile(): string {
    return this.spec.pidFile;
  }

  get logFile(): string {
    return this.spec.logFile;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** Start dnsmasq for `spec` and resolve once its DHCP socket is bound to the interface alone; else a clear error. */
  static async start(spec: DnsmasqSpec, options: DnsmasqStartOptions = {}): Promise<DnsmasqInstance> {
    const args = dnsmasqArgs(spec);
    const netns = options.netns ?? null;
    for (const f of [spec.leaseFile, spec.pidFile, spec.logFile]) mkdirSync(dirname(f), { recursive: true, mode: 0o700 });
    // A dnsmasq left by a crashed vmd holds the interface's port 67: without this the new one could not bind.
    await DnsmasqInstance.killStale(spec.pidFile, spec.leaseFile);
    const logOffset = fileSize(spec.logFile);
    const binary = options.binary ?? 'dnsmasq';
    const [file, argv] = netns === null ? [binary, args] : ['ip', ['netns', 'exec', netns, binary, ...args]];
    // Default detached: its own session, so a terminal's ^C to vmd does not reach it, and no exit hook: the parent
    // owns its lifetime (stop(), killStale() after a crash), as it does for QEMU's.
    const cleanup = options.cleanup ?? false;
    const child = execa(file, argv, {
      stdin: 'ignore', stdout: 'ignore', stderr: 'pipe', reject: false, detached: !cleanup, cleanup,
      encoding: 'utf8', stripFinalNewline: true,
    });
    const inst = new DnsmasqInstance(spec, args, netns, child);
    const what = `dhcp ${spec.name} on ${spec.interface}${netns === null ? '' : ` in ${netns}`}`;
    const bound = `DHCP, sockets bound exclusively to interface ${spec.interface}`;
    const deadline = Date.now() + (options.timeoutMs ?? 5_000);
    for (;;) {
      const log = readFrom(spec.logFile, logOffset);
      if (log.includes(bound)) return inst;
      const failed = /FAILED to start up|warning: interface \S+ does not currently exist/.exec(log);
      if (failed !== null || !inst.running) {
        await inst.stop();
        const r = await child;
        const own = String(r.stderr ?? '').trim().split('\n').filter((l) => l.length > 0).pop();
        const why = own ?? failed?.[0]?.replace(/^warning: /, '') ?? `exited with ${r.signal ?? `status ${r.exitCode}`}`;
        throw new VmdError('ERR_INTERNAL', `${what}: ${why.replace(/^dnsmasq: /, '')}`);
      }
      if (Date.now() > deadline) {
        await inst.stop();
        throw new VmdError('ERR_INTERNAL', `${what}: dnsmasq did not bind within ${options.timeoutMs ?? 5_000} ms`, {
          hint: `see ${spec.logFile}`,
        });
      }
      await sleep(20);
    }
  }

  /** SIGHUP: dnsmasq forgets its fixed leases and re-reads their directory; a stopped instance is left alone. */
  reload(): void {
    if (this.running) this.child.kill('SIGHUP');
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone and its pid file removed. Safe to call twice. */
  async stop(graceMs = 3_000): Promise<void> {
    if (this.running) {
      this.child.kill('SIGTERM');
      const late = await Promise.race([this.exited.then(() => false), sleep(graceMs).then(() => true)]);
      if (late) {
        this.child.kill('SIGKILL');
        await this.exited;
      }
    }
    try {
      unlinkSync(this.spec.pidFile);
    } catch {
      // Already gone.
    }
  }

  /**
   * Kill a dnsmasq a previous vmd left behind: only if `pidFile` names a live dnsmasq whose command line has this very
   * pid file (and `leaseFile`, when given). Returns whether it killed one; the pid file is removed either way.
   */
  static async killStale(pidFile: string, leaseFile?: string): Promise<boolean> {
    let pid: number;
    try {
      pid = Number(readFileSync(pidFile, 'utf8').trim());
    } catch {
      return false;
    }
    let killed = false;
    const argv = Number.isInteger(pid) && pid > 1 ? cmdline(pid) : null;
    const isDnsmasq = argv !== null && /(^|\/)dnsmasq$/.test(argv[0]!);
    const ours = isDnsmasq
      && argv.includes(`--pid-file=${pidFile}`)
      && (leaseFile === undefined || argv.includes(`--dhcp-leasefile=${leaseFile}`));
    if (ours) {
      try {
        process.kill(pid, 'SIGTERM');
        for (let i = 0; i < 150 && pidAlive(pid) && cmdline(pid) !== null; i++) await sleep(20);
        if (pidAlive(pid) && cmdline(pid) !== null) process.kill(pid, 'SIGKILL');
        for (let i = 0; i < 100 && pidAlive(pid) && cmdline(pid) !== null; i++) await sleep(20);
        killed = true;
      } catch {
        // It went away by itself.
      }
    }
    // A pid file naming a dnsmasq we may not kill (another lease file) is someone's live record: leave it.
    if (ours || !isDnsmasq) {
      try {
        unlinkSync(pidFile);
      } catch {
        // Gone already, or not ours to remove (permissions): the next start overwrites it.
      }
    }
    return killed;
  }
}

