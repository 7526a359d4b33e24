// Boot a kernel + initrd directly with qemu-system-x86_64 (no vmd) for tests: serial console and QMP on unix sockets.
// Gives line-buffered console reads, command round trips over the console, QMP commands, and cleanup of QEMU and its temp dir.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** What to boot and with which devices; `args` are appended verbatim (NICs, disks, …). */
export interface DirectBootOptions {
  kernel: string;
  initrd: string;
  append: string;
  machine?: string;
  memory?: number;
  args?: string[];
  qemu?: string;
  /** Milliseconds to wait for QEMU to create its console socket. */
  startTimeout?: number;
  /** Open fds QEMU inherits as fd 3, 4, … in this order (e.g. a tap for `-netdev tap,id=n0,fd=3`). */
  fds?: number[];
}

/** How QEMU ended: exit code or signal. */
export interface QemuExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A port on 127.0.0.1 that was free a moment ago (bind port 0, read it, close). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

async function connectUnix(path: string, deadline: number, alive: () => boolean): Promise<Socket> {
  for (;;) {
    if (!alive()) throw new Error(`qemu exited before ${path} accepted a connection`);
    if (existsSync(path)) {
      try {
        return await new Promise<Socket>((resolve, reject) => {
          const s = connect(path);
          s.once('connect', () => {
            s.off('error', reject);
            resolve(s);
          });
          s.once('error', reject);
        });
      } catch {
        // Socket file present but not listening yet.
      }
    }
    if (Date.now() > deadline) throw new Error(`timed out connecting to ${path}`);
    await sleep(20);
  }
}

/** A running QEMU with its console and QMP connections. */
export class DirectGuest {
  readonly dir: string;
  readonly argv: string[];
  private readonly proc: ChildProcess;
  private readonly consoleSock: Socket;
  private qmpSock: Socket | undefined;
  private consoleText = '';
  private stderrText = '';
  private waiters: Array<() => void> = [];
  private qmpBuf = '';
  private qmpId = 0;
  private qmpPending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private qmpEvents: Array<Record<string, unknown>> = [];
  private exitInfo: QemuExit | undefined;
  private cmdSeq = 0;
  /** Resolves when QEMU exits, however that happens. */
  readonly exited: Promise<QemuExit>;
  /** Date.now() at spawn, for boot-time reports. */
  readonly spawnedAt: number;

  private constructor(dir: string, argv: string[], proc: ChildProcess, consoleSock: Socket, exited: Promise<QemuExit>, spawnedAt: number) {
    this.dir = dir;
    this.argv = argv;
    this.proc = proc;
    this.consoleSock = consoleSock;
    this.exited = exited;
    this.spawnedAt = spawnedAt;
    exited.then((e) => {
      this.exitInfo = e;
      this.wake();
    });
    proc.stderr?.setEncoding('utf8');
    proc.stderr?.on('data', (d: string) => {
      this.stderrText += d;
    });
    consoleSock.setEncoding('utf8');
    consoleSock.on('data', (d: string) => {
      this.consoleText += d;
      this.wake();
    });
    consoleSock.on('error', () => {});
  }

  /** Spawn QEMU and connect to its serial console before the guest runs (the console socket waits for us). */
  static async boot(opts: DirectBootOptions): Promise<DirectGuest> {
    const dir = mkdtempSync(join(tmpdir(), 'vmd-qemu-direct-'));
    const consolePath = join(dir, 'console.sock');
    const qmpPath = join(dir, 'qmp.sock');
    const argv = [
      '-accel', 'tcg',
      '-M', opts.machine ?? 'q35',
      '-m', String(opts.memory ?? 256),
      '-nodefaults', '-display', 'none', '-no-reboot',
      '-kernel', opts.kernel,
      '-initrd', opts.initrd,
      '-append', opts.append,
      '-qmp', `unix:${qmpPath},server=on,wait=off`,
      // wait=on: QEMU does not start the guest until the test is connected, so no console byte is lost.
      '-chardev', `socket,id=ser0,path=${consolePath},server=on,wait=on`,
      '-serial', 'chardev:ser0',
      ...(opts.args ?? []),
    ];
    const spawnedAt = Date.now();
    const proc = spawn(opts.qemu ?? 'qemu-system-x86_64', argv, { stdio: ['ignore', 'ignore', 'pipe', ...(opts.fds ?? [])] });
    let alive = true;
    const exited = new Promise<QemuExit>((resolve) => {
      proc.once('error', () => {
        alive = false;
        resolve({ code: null, signal: null });
      });
      proc.once('exit', (code, signal) => {
        alive = false;
        resolve({ code, signal });
      });
    });
    let consoleSock: Socket;
    try {
      consoleSock = await connectUnix(consolePath, Date.now() + (opts.startTimeout ?? 10_000), () => alive);
    } catch (err) {
      if (alive) proc.kill('SIGKILL');
      await exited;
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    const g = new DirectGuest(dir, argv, proc, consoleSock, exited, spawnedAt);
    try {
      await g.qmpConnect(qmpPath);
    } catch (err) {
      await g.destroy();
      throw err;
    }
    return g;
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Everything the console printed so far. */
  get console(): string {
    return this.consoleText;
  }

  /** QEMU's stderr so far, for failure messages. */
  get stderr(): string {
    return this.stderrText;
  }

  /** QMP events received so far (POWERDOWN, SHUTDOWN, …). */
  get events(): ReadonlyArray<Record<string, unknown>> {
    return this.qmpEvents;
  }

  /** Whether QEMU is still running. */
  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** Wait until the console output from offset `from` on matches; returns the match. */
  async waitFor(pattern: string | RegExp, timeoutMs: number, from = 0): Promise<RegExpExecArray> {
    const re = typeof pattern === 'string' ? new RegExp(pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : pattern;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.consoleText.slice(from));
      if (m) return m;
      if (!this.running) throw new Error(`qemu exited (${JSON.stringify(this.exitInfo)}) before console showed ${re}; console:\n${this.tail()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${re}; console:\n${this.tail()}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  private tail(): string {
    return this.consoleText.slice(-2000) + (this.stderrText ? `\nqemu stderr:\n${this.stderrText.slice(-1000)}` : '');
  }

  /** Write raw bytes to the serial console. */
  write(text: string): void {
    this.consoleSock.write(text);
  }

  /**
   * Run a shell command on the console and return what it printed (echoed input included). The end
   * marker is typed as `$((N))` arithmetic, so only the command's output, never the echoed line, matches it.
   */
  async run(command: string, timeoutMs = 10_000): Promise<string> {
    const n = ++this.cmdSeq + 1000;
    const from = this.consoleText.length;
    this.write(`${command}; echo "<vmd-end-$((${n}))>"\n`);
    const end = `<vmd-end-${n}>`;
    await this.waitFor(end, timeoutMs, from);
    const out = this.consoleText.slice(from);
    return out.slice(0, out.indexOf(end));
  }

  private async qmpConnect(path: string): Promise<void> {
    const sock = await connectUnix(path, Date.now() + 10_000, () => this.running);
    this.qmpSock = sock;
    sock.setEncoding('utf8');
    // QEMU resets the socket on quit: without a listener Node would throw.
    sock.on('error', () => {});
    sock.on('close', () => {
      for (const p of this.qmpPending.values()) p.reject(new Error('qmp connection closed'));
      this.qmpPending.clear();
    });
    const greeting = new Promise<void>((resolve) => {
      sock.on('data', (d: string) => {
        this.qmpBuf += d;
        let nl: number;
        while ((nl = this.qmpBuf.indexOf('\n')) >= 0) {
          const line = this.qmpBuf.slice(0, nl).trim();
          this.qmpBuf = this.qmpBuf.slice(nl + 1);
          if (!line) continue;
          const msg = JSON.parse(line) as Record<string, unknown>;
          if ('QMP' in msg) resolve();
          else if ('event' in msg) this.qmpEvents.push(msg);
          else if (typeof msg.id === 'number' && this.qmpPending.has(msg.id)) {
            const p = this.qmpPending.get(msg.id)!;
            this.qmpPending.delete(msg.id);
            if ('error' in msg) p.reject(new Error(`qmp error: ${JSON.stringify(msg.error)}`));
            else p.resolve(msg.return);
          }
        }
      });
    });
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('no QMP greeting within 10 s')), 10_000);
    });
    try {
      await Promise.race([greeting, late]);
    } finally {
      clearTimeout(timer);
    }
    await this.qmp('qmp_capabilities');
  }

  /** Execute one QMP command and return its `return` value. */
  qmp(execute: string, args?: Record<string, unknown>): Promise<unknown> {
    const sock = this.qmpSock;
    if (!sock || sock.destroyed) return Promise.reject(new Error('qmp not connected'));
    const id = ++this.qmpId;
    return new Promise((resolve, reject) => {
      this.qmpPending.set(id, { resolve, reject });
      sock.write(JSON.stringify(args ? { execute, arguments: args, id } : { execute, id }) + '\n');
    });
  }

  /** Resolve with QEMU's exit, or undefined if it is still running after `timeoutMs`. */
  async waitExit(timeoutMs: number): Promise<QemuExit | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((r) => {
      timer = setTimeout(() => r(undefined), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Kill QEMU (SIGKILL if still running), close the sockets and remove the temp dir; safe to call twice. */
  async destroy(): Promise<void> {
    if (this.running) {
      this.proc.kill('SIGKILL');
      await this.waitExit(5_000);
    }
    this.consoleSock.destroy();
    this.qmpSock?.destroy();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
