// vmm's metrics endpoint (vm.conf `metrics`): Prometheus scrapes it over HTTP; vmm adds what it reads itself (vCPU
// time from /proc, disk I/O over QMP) to the parent's snapshot of VMs, links and firewall counters, and renders text.

import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { MetricsListen } from '../../share/config.js';
import type { FirewallInfo, LinkInfo, VmInfo } from '../../share/protocol.js';
import { logInfo, logWarn } from '../log.js';
import { metricsText, type BlockStats, type GuestStats } from '../metrics-text.js';
import { ResidentMemory } from '../status.js';
import type { ParentToVmm } from '../../share/ipc.js';
import type { Guest, MetricsPort, Vmm } from './guests.js';

/** A scrape within this long of the last one is served the same snapshot: a busy scraper costs the parent one nft run a second. */
const SNAPSHOT_MAX_AGE_MS = 1000;
/** Concurrent HTTP connections; a Prometheus server holds one. */
const MAX_CONNECTIONS = 16;
/** Time for the parent's part and each guest's QMP answer; a wedged QEMU leaves its disks out of one scrape. */
const PART_TIMEOUT_MS = 5000;
/** Linux's USER_HZ, which /proc's utime and stime count in on every architecture vmd runs on. */
const CLOCK_TICKS = 100;
const MAX_DEVICE = 128;

/** What the parent contributes to a scrape. */
export interface ParentPart {
  readonly vms: readonly VmInfo[];
  readonly links: readonly LinkInfo[];
  readonly firewall: readonly FirewallInfo[];
}

/** The HTTP server, the last snapshot, and the parent's answers awaited by request number. */
export class MetricsServer implements MetricsPort {
  #server: Server | null = null;
  #listen: MetricsListen | null = null;
  #last: { at: number; text: string } | null = null;
  #inflight: Promise<string> | null = null;
  readonly #resident = new ResidentMemory();
  readonly #asked = new Map<number, (part: ParentPart) => void>();
  #nextReq = 1;

  constructor(private readonly vmm: Vmm) {}

  parentAnswered(msg: Extract<ParentToVmm, { type: 'vmm.metrics.data' }>): void {
    const resolve = this.#asked.get(msg.req);
    this.#asked.delete(msg.req);
    resolve?.({ vms: msg.vms, links: msg.links, firewall: msg.firewall });
  }

  /** The parent's part of a scrape; an unanswered request is forgotten when its scrape gives up on it. */
  #askParent(): Promise<ParentPart> {
    const req = this.#nextReq++;
    const answer = new Promise<ParentPart>((resolve) => this.#asked.set(req, resolve));
    this.vmm.send({ type: 'vmm.metrics.request', req });
    return withTimeout(answer, 'the parent did not answer').finally(() => this.#asked.delete(req));
  }

  /** Listens where vm.conf says (again after a reload that changed it); null closes the endpoint. */
  configure(listen: MetricsListen | null): void {
    if (listen?.address === this.#listen?.address && listen?.port === this.#listen?.port) return;
    this.#server?.close();
    this.#server = null;
    this.#listen = listen;
    if (listen === null) return;
    const server = createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
        return;
      }
      this.#text().then(
        (text) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(text),
        (err: unknown) => res.writeHead(503, { 'content-type': 'text/plain' }).end(`metrics: ${err instanceof Error ? err.message : String(err)}\n`),
      );
    });
    server.maxConnections = MAX_CONNECTIONS;
    server.headersTimeout = PART_TIMEOUT_MS;
    server.requestTimeout = 2 * PART_TIMEOUT_MS;
    server.on('error', (err: NodeJS.ErrnoException) => {
      const hint = err.code === 'EACCES' ? ' (vmm is unprivileged: use a port from 1024)' : '';
      logWarn(`metrics: listen ${listen.address} port ${listen.port}: ${err.code ?? err.message}${hint}`);
    });
    server.listen(listen.port, listen.address, () => logInfo(`metrics: listening on ${listen.address} port ${listen.port}`));
    this.#server = server;
  }

  close(): void {
    this.configure(null);
  }

  /** The exposition text, from a snapshot at most SNAPSHOT_MAX_AGE_MS old; concurrent scrapes share one collection. */
  #text(): Promise<string> {
    if (this.#last !== null && Date.now() - this.#last.at < SNAPSHOT_MAX_AGE_MS) return Promise.resolve(this.#last.text);
    this.#inflight ??= this.#collect().then((text) => {
      this.#last = { at: Date.now(), text };
      return text;
    }).finally(() => { this.#inflight = null; });
    return this.#inflight;
  }

  async #collect(): Promise<string> {
    const guests = [...this.vmm.guests.values()].filter((g) => !g.exited);
    const [parent, stats] = await Promise.all([
      this.#askParent(),
      Promise.all(guests.map((g) => this.#guestStats(g))),
    ]);
    return metricsText({ ...parent, guests: stats });
  }

  async #guestStats(g: Guest): Promise<GuestStats> {
    const qmp = g.qmp;
    const ask = (command: string): Promise<unknown> => (qmp === null ? Promise.resolve(null) : withTimeout(qmp.execute(command), 'qmp').catch(() => null));
    const [blocks, cpus] = await Promise.all([ask('query-blockstats'), ask('query-cpus-fast')]);
    return { vmId: g.vmId, vcpuSeconds: vcpuSeconds(g.handle.pid, vcpuThreadsOf(cpus)), residentBytes: this.#resident.read(g.handle.pid), block: blockStatsOf(blocks) };
  }
}

function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} within ${PART_TIMEOUT_MS / 1000} s`)), PART_TIMEOUT_MS); });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** The vCPU threads' ids from query-cpus-fast (QEMU names threads only with debug-threads, so /proc cannot tell). */
export function vcpuThreadsOf(answer: unknown): number[] {
  if (!Array.isArray(answer)) return [];
  return answer.slice(0, 1024).map((c) => (c as { 'thread-id'?: unknown } | null)?.['thread-id'])
    .filter((id): id is number => typeof id === 'number' && Number.isSafeInteger(id) && id > 0);
}

/** CPU time (utime + stime) of a QEMU's vCPU threads, from /proc; null when none could be read. */
export function vcpuSeconds(pid: number, threads: readonly number[], proc = '/proc'): number | null {
  let ticks = 0;
  let found = false;
  for (const tid of threads) {
    try {
      // Fields after the command name, which may hold spaces and parentheses: utime and stime are the 12th and 13th.
      const stat = readFileSync(`${proc}/${pid}/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]);
      found = true;
    } catch {
      /* not a thread of this QEMU, or it ended */
    }
  }
  return found && Number.isFinite(ticks) ? ticks / CLOCK_TICKS : null;
}

/** query-blockstats' answer, read defensively (QEMU is the guest's process): drives with an id and numeric counters. */
export function blockStatsOf(answer: unknown): BlockStats[] {
  if (!Array.isArray(answer)) return [];
  const out: BlockStats[] = [];
  for (const d of answer.slice(0, 64)) {
    const o = d as { device?: unknown; stats?: Record<string, unknown> } | null;
    const s = o?.stats;
    if (typeof o?.device !== 'string' || o.device === '' || o.device.length > MAX_DEVICE || typeof s !== 'object' || s === null) continue;
    const n = (k: string): number => (typeof s[k] === 'number' && Number.isFinite(s[k]) ? s[k] as number : 0);
    out.push({ device: o.device, readBytes: n('rd_bytes'), writeBytes: n('wr_bytes'), readOps: n('rd_operations'), writeOps: n('wr_operations') });
  }
  return out;
}
