// Shared helpers of the daemon benchmarks (start.bench.ts, fleet.bench.ts): statistics, /proc scans,
// control-socket requests and console waits against a VmdHarness, all bounded by timeouts.

import { readdirSync, readFileSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import { ControlClient } from '../../vmctl/client.js';
import type { RequestBody } from '../../vmctl/client.js';
import type { ControlResponse } from '../../share/protocol.js';

export const READY = 'vmd-guest: ready';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Milliseconds on the monotonic clock. */
export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** The q-quantile (0..1) of a sample by nearest rank; median is quantile(xs, 0.5). */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) throw new Error('quantile of an empty sample');
  const sorted = [...xs].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank]!;
}

export function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Pids in /proc right now (numeric entries). */
export function procPids(): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) if (d.charCodeAt(0) >= 48 && d.charCodeAt(0) <= 57) out.push(Number(d));
  return out;
}

/** A process's argv from /proc, or null when it is gone. */
export function procArgv(pid: number): string[] | null {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return raw.length === 0 ? [] : raw.replace(/\0$/, '').split('\0');
  } catch {
    return null;
  }
}

/** VmRSS of a process in bytes, 0 when it is gone. */
export function rssBytes(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? 0 : Number(m[1]) * 1024;
  } catch {
    return 0;
  }
}

/** Resident, proportional and private memory of one process, in bytes, from /proc/PID/smaps_rollup. */
export interface Mem { rss: number; pss: number; priv: number }

export function memOf(pid: number): Mem {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(text)?.[1] ?? NaN) * 1024;
  return { rss: kb('Rss'), pss: kb('Pss'), priv: kb('Private_Clean') + kb('Private_Dirty') };
}

/**
 * Poll /proc, as fast as the event loop lets I/O through, for a process that was not in `before` and whose
 * argv (after exec) satisfies `match`; resolves with its pid and the monotonic time it was first seen.
 */
export async function waitNewProcess(before: ReadonlySet<number>, match: (argv: string[]) => boolean, timeoutMs: number): Promise<{ pid: number; at: number }> {
  const deadline = nowMs() + timeoutMs;
  const rejected = new Set<number>();
  for (;;) {
    for (const pid of procPids()) {
      if (before.has(pid) || rejected.has(pid)) continue;
      const argv = procArgv(pid);
      // Between fork and exec the child still shows its parent's argv: look again next round.
      if (argv !== null && match(argv)) return { pid, at: nowMs() };
    }
    if (nowMs() > deadline) throw new Error(`no matching process within ${timeoutMs} ms`);
    await new Promise<void>((r) => setImmediate(r));
  }
}

/** One request on an open client, with a time bound; an error reply becomes an exception. */
export async function request(client: ControlClient, body: RequestBody, timeoutMs = 60_000): Promise<ControlResponse> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${body.type}: no reply within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    const { response } = await Promise.race([client.request(body), late]);
    if (response.type === 'error') throw new Error(`${body.type}: ${response.error.code}: ${response.error.message}`);
    return response;
  } finally {
    clearTimeout(timer);
  }
}

/** Connect, do one request, close. */
export async function requestOnce(socket: string, body: RequestBody, timeoutMs = 60_000): Promise<ControlResponse> {
  const client = await ControlClient.connect(socket);
  try {
    return await request(client, body, timeoutMs);
  } finally {
    client.close();
  }
}

/** Resolve with the monotonic time `text` first appears in what a socket delivers; the socket is destroyed after. */
export function waitForText(socket: Duplex, text: string, timeoutMs: number, initial: Buffer = Buffer.alloc(0)): Promise<number> {
  return new Promise((resolve, reject) => {
    let seen = initial.toString('latin1');
    const done = (err: Error | null, at?: number): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.destroy();
      if (err !== null) reject(err);
      else resolve(at!);
    };
    const onData = (chunk: Buffer): void => {
      const at = nowMs();
      seen = (seen + chunk.toString('latin1')).slice(-4096);
      if (seen.includes(text)) done(null, at);
    };
    const timer = setTimeout(() => done(new Error(`"${text}" not seen within ${timeoutMs} ms; last output:\n${seen.slice(-500)}`)), timeoutMs);
    socket.on('error', () => undefined);
    socket.on('close', () => done(new Error(`connection closed before "${text}"; last output:\n${seen.slice(-500)}`)));
    if (seen.includes(text)) {
      done(null, nowMs());
      return;
    }
    socket.on('data', onData);
    socket.resume();
  });
}

/**
 * Attach to a guest's console through vmd (vm.console.request) and resolve with the time `text` is seen.
 * vmm refuses while it has not yet connected to QEMU's console socket: retried until the deadline.
 */
export async function daemonConsoleWait(socket: string, target: string, text: string, timeoutMs: number): Promise<number> {
  const deadline = nowMs() + timeoutMs;
  for (;;) {
    const client = await ControlClient.connect(socket);
    const reply = await client.console(target);
    if ('socket' in reply) return waitForText(reply.socket, text, Math.max(1, deadline - nowMs()), reply.remainder);
    client.close();
    const r = reply.response;
    const retry = r.type === 'error' && r.error.code === 'ERR_CONSOLE';
    if (!retry || nowMs() > deadline) throw new Error(`console ${target}: ${JSON.stringify(r)}`);
    await sleep(5);
  }
}

/** Whether a target is missed, as a word for the report. */
export function verdict(value: number, max: number): string {
  return value <= max ? 'ok' : 'MISS';
}
