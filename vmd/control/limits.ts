// What the control role lets each socket client hold: connections, memory for unfinished requests, time to send one.
// Pure bookkeeping with the clock passed in, so that control.ts only acts on its answers and tests need no sockets.

import { readFileSync } from 'node:fs';

/** The bounds control enforces; privileged peers (root, the socket owner) are exempt from the per-uid ones. */
export interface ControlLimitSettings {
  /** Connections of all peers together. */
  readonly maxConnections: number;
  /** Connections of one unprivileged uid. */
  readonly maxConnectionsPerUid: number;
  /** Memory held for unfinished requests of all unprivileged peers together. */
  readonly maxHeldBytes: number;
  /** Memory held for unfinished requests of one unprivileged uid. */
  readonly maxHeldBytesPerUid: number;
  /** Time a new connection, or one that has begun a request, has to send a complete one. */
  readonly requestTimeoutMs: number;
  /** Time a connection may stay idle between an answer and its next request (a client that keeps its connection). */
  readonly idleTimeoutMs: number;
}

/*
 * 1,024 connections, as before (a flood of them once locked everyone out, root included). 64 per user: every
 * command but console, capture, send and receive (which leave control at once) holds one connection, and a user's
 * scripts rarely wait on more VMs at a time. A request is at most 1 MiB and a real one under 10 KiB, so 4 MiB per
 * user is four maximal requests at once and 32 MiB for everyone keeps control near its ~60 MB floor under a flood.
 * vmctl sends its request as soon as it connects, so 10 s is generous even on a loaded host. A client that keeps
 * its connection between requests (a library, the benchmark) may idle 30 times as long: 5 minutes.
 */
export const DEFAULT_CONTROL_LIMITS: ControlLimitSettings = {
  maxConnections: 1024,
  maxConnectionsPerUid: 64,
  maxHeldBytes: 32 * 1024 * 1024,
  maxHeldBytesPerUid: 4 * 1024 * 1024,
  requestTimeoutMs: 10_000,
  idleTimeoutMs: 300_000,
};

/** Descriptors control keeps for itself (IPC channel, stdio, libuv) on top of one per connection. */
const RESERVED_FDS = 64;

/** Why a connection is closed by the limits: answered to the peer in words, before the close. */
export type LimitVerdict = 'connections' | 'memory' | 'timeout' | 'evicted';

/** The words for each verdict, as the peer and the log see them. */
export function limitMessage(verdict: LimitVerdict, s: ControlLimitSettings): string {
  const mib = (n: number): string => `${n / (1024 * 1024)} MiB`;
  switch (verdict) {
    case 'connections':
      return `too many connections (at most ${s.maxConnectionsPerUid} per user, ${s.maxConnections} in all)`;
    case 'memory':
      return `too much unfinished request data (at most ${mib(s.maxHeldBytesPerUid)} per user, ${mib(s.maxHeldBytes)} in all)`;
    case 'timeout':
      return `no complete request within ${s.requestTimeoutMs / 1000} s (${s.idleTimeoutMs / 1000} s idle between requests)`;
    case 'evicted':
      return 'connection closed to make room for root or the socket owner';
  }
}

interface PeerState {
  readonly id: number;
  readonly uid: number;
  readonly privileged: boolean;
  held: number;
  inFlight: number;
  /** When the connection last became idle (accepted or answered): the request deadline counts from here. */
  idleSince: number;
  /** Whether a request of it has been answered: from then on it may idle between requests. */
  answered: boolean;
  /** When its unfinished request began (bytes held), or null: an unfinished request has the short deadline. */
  partialSince: number | null;
}

/** The result of admitting a connection: whether it is served, and which others to close to make room. */
export interface Admission {
  readonly admitted: boolean;
  readonly evict: readonly number[];
}

/** Tracks every connection's uid, memory and deadline, and says whom to refuse, evict, shed or time out. */
export class ControlLimits {
  readonly settings: ControlLimitSettings;
  readonly #privileged: Set<number>;
  readonly #peers = new Map<number, PeerState>();
  readonly #uidConnections = new Map<number, number>();
  readonly #uidHeld = new Map<number, number>();
  #held = 0;

  constructor(settings: ControlLimitSettings, privilegedUids: Iterable<number>) {
    this.settings = settings;
    this.#privileged = new Set([0, ...privilegedUids]);
  }

  /** Serves a uid like root from its next connection on (the socket owner, once the configuration names it). */
  privilege(uid: number): void {
    this.#privileged.add(uid);
  }

  /** Root and the socket owner: always served while others flood, never shed. */
  isPrivileged(uid: number): boolean {
    return this.#privileged.has(uid);
  }

  get connections(): number {
    return this.#peers.size;
  }

  /** Memory held for unfinished requests of unprivileged peers. */
  get heldBytes(): number {
    return this.#held;
  }

  /**
   * A new connection: an unprivileged one is refused at its uid's cap or the global one; a privileged one at the
   * global cap takes the place of the unprivileged connection idle the longest (one with no request in flight first).
   */
  admit(id: number, uid: number, now: number): Admission {
    const privileged = this.isPrivileged(uid);
    const evict: number[] = [];
    if (!privileged && (this.#uidConnections.get(uid) ?? 0) >= this.settings.maxConnectionsPerUid) return { admitted: false, evict };
    if (this.#peers.size >= this.settings.maxConnections) {
      const victim = privileged ? this.#evictionVictim() : undefined;
      if (victim === undefined) return { admitted: false, evict };
      evict.push(victim);
      this.remove(victim);
    }
    this.#peers.set(id, { id, uid, privileged, held: 0, inFlight: 0, idleSince: now, answered: false, partialSince: null });
    this.#uidConnections.set(uid, (this.#uidConnections.get(uid) ?? 0) + 1);
    return { admitted: true, evict };
  }

  /** The connection is gone; forgetting an unknown one is a no-op. */
  remove(id: number): void {
    const p = this.#peers.get(id);
    if (p === undefined) return;
    this.#setHeld(p, 0);
    this.#peers.delete(id);
    const n = (this.#uidConnections.get(p.uid) ?? 1) - 1;
    if (n === 0) this.#uidConnections.delete(p.uid);
    else this.#uidConnections.set(p.uid, n);
  }

  /**
   * The memory a connection now holds for its unfinished request; returns the connections to close so that its uid
   * and all unprivileged peers together stay within budget: the biggest partial requests first, the oldest on a tie.
   */
  hold(id: number, bytes: number, now = Date.now()): number[] {
    const p = this.#peers.get(id);
    if (p === undefined) return [];
    if (bytes === 0) p.partialSince = null;
    else if (p.partialSince === null) p.partialSince = now;
    this.#setHeld(p, bytes);
    if (p.privileged) return [];
    const shed: number[] = [];
    while ((this.#uidHeld.get(p.uid) ?? 0) > this.settings.maxHeldBytesPerUid) shed.push(this.#shedBiggest((q) => q.uid === p.uid));
    while (this.#held > this.settings.maxHeldBytes) shed.push(this.#shedBiggest(() => true));
    return shed;
  }

  /** A complete request was forwarded: the connection waits for its answer, however long (`vmctl wait`, `stop -w`). */
  requestStarted(id: number): void {
    const p = this.#peers.get(id);
    if (p !== undefined) p.inFlight++;
  }

  /** A request was answered: with none left in flight, the next one must come within the deadline. */
  requestAnswered(id: number, now: number): void {
    const p = this.#peers.get(id);
    if (p === undefined) return;
    p.inFlight = Math.max(0, p.inFlight - 1);
    p.answered = true;
    if (p.inFlight === 0) p.idleSince = now;
  }

  /**
   * Connections with no request in flight that are past their deadline: a new connection, or one in the middle of a
   * request, within requestTimeoutMs; one idle after an answer, within idleTimeoutMs.
   */
  expired(now: number): number[] {
    const out: number[] = [];
    const { requestTimeoutMs, idleTimeoutMs } = this.settings;
    for (const p of this.#peers.values()) {
      if (p.inFlight > 0) continue;
      const late = p.partialSince !== null
        ? now - p.partialSince >= requestTimeoutMs
        : now - p.idleSince >= (p.answered ? idleTimeoutMs : requestTimeoutMs);
      if (late) out.push(p.id);
    }
    return out;
  }

  #setHeld(p: PeerState, bytes: number): void {
    if (!p.privileged) {
      const delta = bytes - p.held;
      this.#held += delta;
      const u = (this.#uidHeld.get(p.uid) ?? 0) + delta;
      if (u === 0) this.#uidHeld.delete(p.uid);
      else this.#uidHeld.set(p.uid, u);
    }
    p.held = bytes;
  }

  // Forgets and returns the unprivileged connection matching `which` that holds the most (always one while over budget).
  #shedBiggest(which: (p: PeerState) => boolean): number {
    let victim: PeerState | undefined;
    for (const p of this.#peers.values()) {
      // Map order is admission order, so on a tie the first seen is the oldest.
      if (!p.privileged && p.held > 0 && which(p) && (victim === undefined || p.held > victim.held)) victim = p;
    }
    const v = victim as PeerState;
    this.remove(v.id);
    return v.id;
  }

  #evictionVictim(): number | undefined {
    let idle: PeerState | undefined;
    let busy: PeerState | undefined;
    for (const p of this.#peers.values()) {
      if (p.privileged) continue;
      if (p.inFlight === 0) {
        if (idle === undefined || p.idleSince < idle.idleSince) idle = p;
      } else if (busy === undefined) {
        busy = p;
      }
    }
    return (idle ?? busy)?.id;
  }
}

/** The limits for this process: the defaults, VMD_REQUEST_TIMEOUT (seconds), and no more connections than descriptors. */
export function controlLimitsFrom(env: NodeJS.ProcessEnv, openFiles: number | null): ControlLimitSettings {
  const d = DEFAULT_CONTROL_LIMITS;
  const timeout = Number(env.VMD_REQUEST_TIMEOUT);
  const requestTimeoutMs = env.VMD_REQUEST_TIMEOUT !== undefined && Number.isFinite(timeout) && timeout > 0
    ? Math.round(timeout * 1000) : d.requestTimeoutMs;
  // Past its descriptor limit control could not even receive the next connection from the parent.
  const maxConnections = openFiles === null ? d.maxConnections : Math.max(1, Math.min(d.maxConnections, openFiles - RESERVED_FDS));
  return { ...d, maxConnections, requestTimeoutMs, idleTimeoutMs: requestTimeoutMs * (d.idleTimeoutMs / d.requestTimeoutMs) };
}

/** This process's soft limit on open files (Node raises it to the hard limit at start), or null if unknown. */
export function openFilesLimit(limitsText?: string): number | null {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return null;
    }
  }
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(text);
  if (m === null) return null;
  return m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1]);
}
