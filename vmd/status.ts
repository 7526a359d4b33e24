// The status listing as control serves it: the parent pushes a snapshot of every VM whenever something `vmctl status`
// shows changes, and control answers status requests from it without a round trip to the parent. Only CURMEM is read
// at answer time, from /proc, at most once a second per QEMU, so a listing stays cheap however often it is asked for.

import { readFileSync } from 'node:fs';
import { FRAME_HEADER_BYTES, FrameError, MAX_RESPONSE_FRAME_BYTES } from '../share/frame.js';
import type { StatusRequest, VmInfo } from '../share/protocol.js';

/** How long a CURMEM reading (and the encoded full listing holding it) is served before /proc is read again. */
export const CURMEM_MAX_AGE_MS = 1000;

/**
 * A process's resident memory (VmRSS) in bytes, re-read at most once per `maxAgeMs`; null when it is gone. Readings
 * older than that are dropped once per period: keyed by pid, the cache otherwise kept one entry for every guest ever
 * started: +1 object per start/stop cycle in the parent and in control (heap snapshots, test/bench/churn.bench.ts).
 */
export class ResidentMemory {
  private readonly cache = new Map<number, { at: number; bytes: number | null }>();
  private swept = 0;

  constructor(private readonly maxAgeMs = CURMEM_MAX_AGE_MS, private readonly now: () => number = Date.now) {}

  read(pid: number): number | null {
    const now = this.now();
    const hit = this.cache.get(pid);
    if (hit !== undefined && now - hit.at < this.maxAgeMs) return hit.bytes;
    let bytes: number | null = null;
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      bytes = m ? Number(m[1]) * 1024 : null;
    } catch {
      bytes = null;
    }
    this.sweep(now);
    this.cache.set(pid, { at: now, bytes });
    return bytes;
  }

  /** Readings held, for tests: at most those of the pids read within the last two periods. */
  get size(): number {
    return this.cache.size;
  }

  /** Drops expired readings, at most once per period so a listing of N guests stays O(N). */
  private sweep(now: number): void {
    if (now - this.swept < this.maxAgeMs) return;
    this.swept = now;
    for (const [pid, r] of this.cache) if (now - r.at >= this.maxAgeMs) this.cache.delete(pid);
  }
}

/** Whether a VM matches a status request's target (an id or a name, as OpenBSD's vmctl takes either) and `-r`. */
export function statusMatches(vm: VmInfo, req: Pick<StatusRequest, 'target' | 'running'>): boolean {
  if (req.target !== undefined && String(vm.id) !== req.target && vm.name !== req.target) return false;
  return req.running !== true || vm.pid !== null;
}

/** A frame as the buffers to write, from the parts of its JSON body (not copied); oversized bodies fail as encodeFrame's do. */
function frameOf(parts: readonly Buffer[], max: number): Buffer[] {
  const length = parts.reduce((n, p) => n + p.length, 0);
  if (length > max) throw new FrameError('oversized', `frame of ${length} bytes exceeds the limit of ${max}`);
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  header.writeUInt32BE(length, 0);
  return [header, ...parts];
}

/**
 * Control's copy of the listing. `answer` returns the whole reply frame; the unfiltered listing (what `vmctl status`
 * asks for) is encoded once per snapshot and CURMEM period and then only gets its request id spliced in.
 */
export class StatusSnapshot {
  private vms: readonly VmInfo[] | null = null;
  private warnings: readonly string[] = [];
  /** `"vms":[...],"warnings":[...]}` of the unfiltered listing, and when its CURMEM was read. */
  private full: { at: number; tail: Buffer } | null = null;

  constructor(
    private readonly memory: ResidentMemory = new ResidentMemory(),
    private readonly now: () => number = Date.now,
    private readonly maxFrameBytes = MAX_RESPONSE_FRAME_BYTES,
  ) {}

  /** Whether the parent has pushed a snapshot yet (until then, status requests go to the parent). */
  get ready(): boolean {
    return this.vms !== null;
  }

  /** Whether a VM of that id or name is in the listing (`vmctl events NAME` of an unknown VM is refused). */
  has(target: string): boolean {
    return this.vms?.some((v) => statusMatches(v, { target })) ?? false;
  }

  /** A new snapshot from the parent: VMs in id order, CURMEM left for control to read. */
  update(vms: readonly VmInfo[], warnings: readonly string[]): void {
    this.vms = vms;
    this.warnings = warnings;
    this.full = null;
  }

  /** The reply frame to a status request, in pieces; throws FrameError when the listing exceeds the frame bound. */
  answer(req: StatusRequest): Buffer[] {
    if (this.vms === null) throw new Error('status snapshot: none received yet');
    const head = Buffer.from(`{"type":"vm.status.response","id":${JSON.stringify(req.id)},`);
    if (req.target === undefined && req.running !== true) {
      const now = this.now();
      if (this.full === null || now - this.full.at >= CURMEM_MAX_AGE_MS) {
        this.full = { at: now, tail: this.tail(this.vms.map((v) => this.withCurmem(v))) };
      }
      return frameOf([head, this.full.tail], this.maxFrameBytes);
    }
    const vms = this.vms.filter((v) => statusMatches(v, req)).map((v) => this.withCurmem(v));
    return frameOf([head, this.tail(vms)], this.maxFrameBytes);
  }

  private tail(vms: readonly VmInfo[]): Buffer {
    return Buffer.from(`"vms":${JSON.stringify(vms)},"warnings":${JSON.stringify(this.warnings)}}`);
  }

  private withCurmem(vm: VmInfo): VmInfo {
    return vm.pid === null ? vm : { ...vm, curmem: this.memory.read(vm.pid) };
  }
}
