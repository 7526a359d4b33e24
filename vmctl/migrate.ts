// `vmctl migrate id [user@]host`: moves a running guest to another host's vmd while it runs. vmctl conducts: the
// target makes the VM and opens a port, the source's QEMU migrates straight to it, and only the target's word commits.

import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { encodeFrame, FrameDecoder } from '../share/frame.js';
import { MAX_DOWNTIME_MS, readMigrateCounters, readMigrateProgress, type MigrateClientFrame, type MigrateProgress } from '../share/migrate.js';
import type { CarriedCount } from '../share/migrate-counters.js';
import { ProtocolError, type ControlResponse } from '../share/protocol.js';
import { readResponse } from '../share/read-response.js';
import type { StreamConfig } from '../share/stream.js';
import { isObj } from '../share/read.js';
import type { ControlClient } from './client.js';
import { getopt, parseVmid, printJson, reportError, warnx, type CommandSpec, type Context } from './command.js';
import { CliError, UsageError } from './errors.js';
import { migrateTargetConnect, migrateTargetParse, type MigrateTarget } from './migrate-target.js';
import { byteProgress, type Progress } from './progress.js';
import { COMMAND_USAGE } from './usage.js';

/** A frame from vmd on a connection that left the framed protocol: a reply, progress, or the peer gone (null). */
type Incoming = { kind: 'reply'; response: ControlResponse; raw: unknown } | { kind: 'progress'; progress: MigrateProgress }
  | { kind: 'counters'; counters: readonly CarriedCount[] } | null;

/** How long vmctl waits for the source's counters after `completed` (their read overlaps the last pass: ms, usually). */
const COUNTERS_WAIT_MS = 5000;

/** One raw connection's frames, one at a time; a promise taken is never lost to a race. */
export class Frames {
  readonly #decoder = new FrameDecoder({ maxFrameBytes: 1024 * 1024 });
  readonly #queue: Incoming[] = [];
  #waiter: ((f: Incoming) => void) | null = null;
  #closed = false;
  #countersLate = false;

  constructor(readonly socket: Duplex, remainder: Buffer) {
    socket.on('data', (chunk: Buffer) => this.#feed(chunk));
    socket.on('close', () => this.#put(null));
    socket.on('error', () => this.#put(null));
    if (remainder.length > 0) this.#feed(remainder);
    socket.resume();
  }

  next(): Promise<Incoming> {
    if (this.#queue.length > 0) return Promise.resolve(this.#queue.shift() as Incoming);
    return new Promise((resolve) => { this.#waiter = resolve; });
  }

  /**
   * The counters frame a source sends after `completed`, waited for at most `ms`: a vmd from before counters moved
   * sends none, and a migration must not hang on it. One that comes later is dropped; any other frame stays queued.
   */
  counters(ms: number): Promise<readonly CarriedCount[] | undefined> {
    const head = this.#queue[0];
    if (head !== undefined && head?.kind !== 'counters') return Promise.resolve(undefined);
    if (head !== undefined) return Promise.resolve((this.#queue.shift() as { counters: readonly CarriedCount[] }).counters);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiter = null;
        this.#countersLate = true;
        resolve(undefined);
      }, ms);
      this.#waiter = (f) => {
        clearTimeout(timer);
        if (f?.kind === 'counters') resolve(f.counters);
        else {
          this.#queue.unshift(f);
          resolve(undefined);
        }
      };
    });
  }

  #feed(chunk: Buffer): void {
    this.#decoder.push(chunk);
    for (let r = this.#decoder.read(); r.kind === 'message'; r = this.#decoder.read()) {
      try {
        const m = r.message;
        if (isObj(m) && m.type === 'vm.migrate.progress') this.#put({ kind: 'progress', progress: readMigrateProgress(m) });
        else if (isObj(m) && m.type === 'vm.migrate.counters') this.#put({ kind: 'counters', counters: readMigrateCounters(m).counters });
        else this.#put({ kind: 'reply', response: readResponse(m), raw: m });
      } catch (err) {
        this.socket.destroy(err instanceof ProtocolError ? err : undefined);
        this.#put(null);
      }
    }
  }

  #put(f: Incoming): void {
    if (this.#closed || (f?.kind === 'counters' && this.#countersLate)) return;
    if (f === null) this.#closed = true;
    const w = this.#waiter;
    this.#waiter = null;
    if (w !== null) w(f);
    else this.#queue.push(f);
  }
}

/** Whether the target says the guest runs there. */
function receiveDone(f: Incoming): f is { kind: 'reply'; response: Extract<ControlResponse, { type: 'vm.receive.response' }>; raw: unknown } {
  return f !== null && f.kind === 'reply' && f.response.type === 'vm.receive.response' && f.response.phase === 'done';
}

/** The target, ready: its QEMU's migration port, its NBD server's with --copy-storage, and its connection. */
interface Prepared { readonly port: number; readonly nbdPort: number | undefined; readonly frames: Frames }

/** Writes one of our frames to the source or the target. */
function tell(peer: Duplex, frame: MigrateClientFrame): void {
  if (!peer.destroyed) peer.write(encodeFrame(frame));
}

/** A failed step's report: vmd's error reply in migrate's words, or what went missing. */
function failed(ctx: Context, where: string, f: Incoming): number {
  if (f !== null && f.kind === 'reply' && f.response.type === 'error') {
    reportError(ctx, 'migrate', { ...f.response.error, message: `migrate: ${where}: ${f.response.error.message}` }, f.raw);
  } else {
    warnx(ctx, `migrate: ${where}: ${f === null ? 'vmd closed the connection' : `unexpected response received from vmd${ctx.verbose > 0 ? `: ${JSON.stringify(f)}` : ''}`}`);
  }
  return 1;
}

/** The migration proper, once both ends said ready: progress until completed, then the target's word decides. */
async function migrateRun(ctx: Context, name: string, to: MigrateTarget, src: Frames, target: Prepared): Promise<number> {
  const dst = target.frames;
  tell(src.socket, { type: 'vm.migrate.go', host: to.host, port: target.port, ...(target.nbdPort === undefined ? {} : { nbdPort: target.nbdPort }) });
  // Made at the first report, which knows the guest's RAM: a bar rather than a bare count.
  let progress: Progress | null = null;
  // Before our commit the target only speaks to fail.
  const dstNext = dst.next();
  let done: MigrateProgress | null = null;
  while (done === null) {
    const srcNext = src.next();
    const first = await Promise.race([srcNext.then((f) => ({ from: 'src' as const, f })), dstNext.then((f) => ({ from: 'dst' as const, f }))]);
    if (first.from === 'dst') {
      // The target gave up or went away mid-way: the source cancels and its guest runs on.
      tell(src.socket, { type: 'vm.migrate.abort' });
      progress?.finish();
      let srcEnd = await srcNext;
      while (srcEnd?.kind === 'progress') srcEnd = await src.next();
      failed(ctx, `target ${to.host}`, first.f);
      if (srcEnd?.kind === 'reply' && srcEnd.response.type === 'error') reportError(ctx, 'migrate', srcEnd.response.error, srcEnd.raw);
      return 1;
    }
    const f = first.f;
    if (f === null || f.kind !== 'progress') {
      progress?.finish();
      return failed(ctx, 'source', f);
    }
    progress ??= byteProgress(ctx, `migrate ${name}:`, f.progress.total);
    progress.update(f.progress.transferred);
    if (f.progress.status === 'completed') done = f.progress;
  }
  progress?.finish();
  // The source completed, so the state the target loaded is the guest's: only now may it run there.
  const completed = performance.now();
  // The source's firewall counters, read once its guest stopped, follow `completed`; they go on at the target.
  const counted = await src.counters(COUNTERS_WAIT_MS);
  if (counted === undefined) warnx(ctx, `migrate: source: no firewall counters within ${COUNTERS_WAIT_MS / 1000} s: those of vm ${name} start again at the target`);
  const counters = counted ?? [];
  tell(dst.socket, { type: 'vm.migrate.commit', ...(counters.length === 0 ? {} : { counters }) });
  const verdict = await dstNext;
  const resumeMs = Math.round(performance.now() - completed);
  if (!receiveDone(verdict)) {
    tell(src.socket, { type: 'vm.migrate.abort' });
    await src.next();
    return failed(ctx, `target ${to.host}`, verdict);
  }
  tell(src.socket, { type: 'vm.migrate.commit' });
  const end = await src.next();
  if (end === null || end.kind !== 'reply' || end.response.type !== 'vm.migrate.response' || end.response.phase !== 'done') {
    // The target runs the guest: the source's trouble quitting its copy is worth saying, not a failed migration.
    warnx(ctx, `migrate: source: the guest did not confirm it left (check it with vmctl status ${name})`);
  }
  if (ctx.json) printJson(ctx, { ...done, resumeMs, vm: verdict.response.vm });
  else {
    warnx(ctx, `migrated vm ${name} to ${to.host} as vm ${verdict.response.vm.id}: downtime ${done.downtimeMs ?? '-'} ms `
      + `(and ${resumeMs} ms until the target resumed it), total ${done.totalMs ?? '-'} ms`);
  }
  return 0;
}

/** Asks the target to make the VM from the source's configuration and listen; returns its port or reports why not. */
async function targetPrepare(ctx: Context, target: ControlClient, config: StreamConfig, sizes: readonly number[] | undefined, tlsKey: string): Promise<Prepared | number> {
  const r = await target.stream({ type: 'vm.receive.request', target: config.name, config, live: true, ...(sizes === undefined ? {} : { copyStorage: sizes }), tlsKey }, 'vm.receive.response');
  if (!('socket' in r)) return failed(ctx, 'target', { kind: 'reply', response: r.response, raw: r.raw });
  const port = r.response.type === 'vm.receive.response' ? r.response.port : undefined;
  const nbdPort = r.response.type === 'vm.receive.response' ? r.response.nbdPort : undefined;
  if (port === undefined || (sizes !== undefined && nbdPort === undefined)) throw new CliError('unexpected response received from vmd');
  return { port, nbdPort, frames: new Frames(r.socket, r.remainder) };
}

async function runMigrate(args: readonly string[], ctx: Context): Promise<number> {
  const { events, operands } = getopt(args, ['-D <ms>', '-s <socket>', '--copy-storage']);
  if (operands.length !== 2) throw new UsageError();
  let downtimeMs: number | undefined;
  let socket: string | null = null;
  let copyStorage = false;
  for (const e of events) {
    if (e.name === 'copy-storage') {
      copyStorage = true;
    } else if (e.name === 'D') {
      downtimeMs = Number(e.value);
      if (!/^\d+$/.test(e.value ?? '') || downtimeMs < 1 || downtimeMs > MAX_DOWNTIME_MS) throw new CliError(`migrate: invalid downtime: ${e.value ?? ''} (1 to ${MAX_DOWNTIME_MS} ms)`);
    } else {
      socket = e.value ?? null;
    }
  }
  const ref = parseVmid(operands[0] as string, (m) => warnx(ctx, m));
  if (ref === undefined) throw new CliError(`invalid id: ${operands[0] as string}`);
  const to = migrateTargetParse(operands[1] as string, socket);
  // The target first: a host vmctl cannot reach is said before the source is asked for anything.
  const target = await migrateTargetConnect(to, ctx);
  let source: ControlClient;
  try {
    source = await ctx.connect();
  } catch (err) {
    target.close();
    throw err;
  }
  // One key per migration, to both vmds over the connections already held (ssh's, or a root-only socket): the
  // guest's memory and disks cross the network encrypted, and only the source that holds it can feed the target.
  const tlsKey = randomBytes(32).toString('hex');
  try {
    const r = await source.stream({
      type: 'vm.migrate.request', target: ref.target, ...(downtimeMs === undefined ? {} : { downtimeMs }), ...(copyStorage ? { copyStorage } : {}), tlsKey,
    }, 'vm.migrate.response');
    if (!('socket' in r)) return failed(ctx, 'source', { kind: 'reply', response: r.response, raw: r.raw });
    const config = r.response.type === 'vm.migrate.response' ? r.response.config : undefined;
    const sizes = r.response.type === 'vm.migrate.response' ? r.response.diskSizes : undefined;
    if (config === undefined || (copyStorage && sizes === undefined)) throw new CliError('unexpected response received from vmd');
    const src = new Frames(r.socket, r.remainder);
    const prepared = await targetPrepare(ctx, target, config, sizes, tlsKey);
    if (typeof prepared === 'number') {
      tell(r.socket, { type: 'vm.migrate.abort' });
      return prepared;
    }
    return await migrateRun(ctx, config.name, to, src, prepared);
  } finally {
    target.close();
    source.close();
  }
}

/** `vmctl migrate id [user@]host`. */
export const migrateCommand: CommandSpec = { name: 'migrate', usage: COMMAND_USAGE.migrate, run: runMigrate };
