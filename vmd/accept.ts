// The parent's queue of accepted control-socket connections on their way to the control process, one at a time.
// Root and the socket owner go first and each user may have only a few waiting, so a flood never queues ahead of root.

import type { Socket } from 'node:net';
import { openFilesLimit } from './control/limits.js';
import { logWarn } from './log.js';
import { peerCred } from './native.js';

/** Hands one connection to control; `done` once it is written to the channel (or failed, and the socket is ours). */
export type DeliverConnection = (socket: Socket, done: (err?: Error | null) => void, cred: PeerIds) => void;

/** The client's uid and gid, as the kernel gave them at accept (SO_PEERCRED). */
export interface PeerIds {
  readonly uid: number;
  readonly gid: number;
}

export interface AcceptQueueOptions {
  /** Root and the socket owner: served first, never refused here. */
  readonly isPrivileged: (uid: number) => boolean;
  /** Connections of one unprivileged uid waiting for control; more are closed at once. */
  readonly maxWaitingPerUid?: number;
  /** Connections waiting in all (root's and the socket owner's may be 64 more): each is a descriptor of the parent's. */
  readonly maxWaiting?: number;
  /** The peer's uid and gid; the kernel's (SO_PEERCRED) unless a test says otherwise. Read once, at accept. */
  readonly credOf?: (socket: Socket) => PeerIds;
}

/*
 * Node passes a descriptor to a child only after the child acknowledged the previous one, in the order send() was
 * called: 1,700 connections of a flood queued that way kept root's waiting 5 s. So the parent keeps its own queue,
 * privileged connections first, and gives Node one connection at a time. 16 waiting per user is far more than
 * vmctl ever opens at once; a user's next connections are closed, as control would refuse them anyway.
 */
const DEFAULT_MAX_WAITING_PER_UID = 16;
const PRIVILEGED_RESERVE = 64;

/**
 * How many connections may wait in all: 1,024, but never more than a quarter of the parent's descriptors, which it
 * needs for images, taps and QEMU's start. Node raises the soft limit to the hard one at start, so this only binds
 * where the hard limit itself is low.
 */
export function maxWaitingFor(openFiles: number | null): number {
  return openFiles === null ? 1024 : Math.max(16, Math.min(1024, Math.floor(openFiles / 4)));
}

/** A connection waiting for control, with the credentials read when it was accepted. */
interface Waiting {
  readonly socket: Socket;
  readonly cred: PeerIds;
}

/** Connections accepted by the parent and not yet handed to control; see the comment above for the order. */
export class AcceptQueue {
  readonly #options: AcceptQueueOptions;
  readonly #maxPerUid: number;
  readonly #max: number;
  readonly #privileged: Waiting[] = [];
  readonly #others: Waiting[] = [];
  readonly #waitingByUid = new Map<number, number>();
  #deliver: DeliverConnection | null = null;
  #inFlight = false;
  #closed = false;

  constructor(options: AcceptQueueOptions) {
    this.#options = options;
    this.#maxPerUid = options.maxWaitingPerUid ?? DEFAULT_MAX_WAITING_PER_UID;
    this.#max = options.maxWaiting ?? maxWaitingFor(openFilesLimit());
  }

  /** Connections waiting for control. */
  get waiting(): number {
    return this.#privileged.length + this.#others.length;
  }

  /** A connection the listening socket accepted (paused, unread): queued, or closed if its user has enough waiting. */
  push(socket: Socket): void {
    let cred: PeerIds;
    try {
      const ids = (this.#options.credOf ?? peerCred)(socket);
      cred = { uid: ids.uid, gid: ids.gid };
    } catch (err) {
      logWarn(`control socket: peer credentials: ${err instanceof Error ? err.message : String(err)}`);
      socket.destroy();
      return;
    }
    const uid = cred.uid;
    const privileged = this.#options.isPrivileged(uid);
    // Root and the socket owner have descriptors of their own beyond the bound, so a flood of many users cannot
    // fill the queue against them.
    if (this.#closed || this.waiting >= this.#max + (privileged ? PRIVILEGED_RESERVE : 0)) {
      socket.destroy();
      return;
    }
    if (privileged) {
      this.#privileged.push({ socket, cred });
    } else {
      const n = this.#waitingByUid.get(uid) ?? 0;
      if (n >= this.#maxPerUid) {
        socket.destroy();
        return;
      }
      this.#waitingByUid.set(uid, n + 1);
      this.#others.push({ socket, cred });
    }
    this.#pump();
  }

  /** A control process is ready: connections flow to it from now on. */
  attach(deliver: DeliverConnection): void {
    this.#deliver = deliver;
    this.#inFlight = false;
    this.#pump();
  }

  /** The control process is gone: connections wait (bounded) for the next one. */
  detach(): void {
    this.#deliver = null;
    this.#inFlight = false;
  }

  /** Shutting down: every waiting connection is closed and new ones are refused. */
  close(): void {
    this.#closed = true;
    this.detach();
    for (const { socket } of this.#privileged.splice(0)) socket.destroy();
    for (const { socket } of this.#others.splice(0)) socket.destroy();
    this.#waitingByUid.clear();
  }

  #next(): Waiting | undefined {
    const privileged = this.#privileged.shift();
    if (privileged !== undefined) return privileged;
    const other = this.#others.shift();
    if (other === undefined) return undefined;
    const n = (this.#waitingByUid.get(other.cred.uid) ?? 1) - 1;
    if (n === 0) this.#waitingByUid.delete(other.cred.uid);
    else this.#waitingByUid.set(other.cred.uid, n);
    return other;
  }

  #pump(): void {
    while (this.#deliver !== null && !this.#inFlight) {
      const next = this.#next();
      if (next === undefined) return;
      const { socket, cred } = next;
      // A client that gave up while waiting is not worth a trip to control.
      if (socket.destroyed) continue;
      const deliver = this.#deliver;
      this.#inFlight = true;
      let settled = false;
      deliver(socket, (err) => {
        if (settled) return;
        settled = true;
        if (err != null) socket.destroy();
        // A detach (control died) in between already reset the window; a late callback must not open another.
        if (this.#deliver !== deliver) return;
        this.#inFlight = false;
        queueMicrotask(() => this.#pump());
      }, cred);
    }
  }
}
