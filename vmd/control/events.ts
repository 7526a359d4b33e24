// Control's `vmctl events` subscribers: each event the parent reports is written to every connection that follows it.
// Nothing is queued per subscriber beyond the socket's own buffer, and a subscriber that lets that grow is dropped.

import type { Socket } from 'node:net';
import { eventMatches } from '../../share/events.js';
import { encodeFrame } from '../../share/frame.js';
import type { VmEvent } from '../../share/protocol.js';

/**
 * Unread event bytes a subscriber may leave in its socket's buffer before it is dropped: an event line is ~150
 * bytes, so this is over a thousand events, more than a busy host makes in the seconds a live reader can fall behind.
 */
export const MAX_EVENT_BACKLOG_BYTES = 256 * 1024;

interface Subscriber {
  readonly socket: Socket;
  /** The subscribing request's id, which every event frame carries. */
  readonly reqId: number;
  readonly target: string | undefined;
}

/** The subscribers by peer id; `drop` closes a connection with a last error frame (the control server owns them). */
export class EventHub {
  readonly #subscribers = new Map<number, Subscriber>();

  constructor(private readonly drop: (peer: number, reqId: number, message: string) => void) {}

  get size(): number {
    return this.#subscribers.size;
  }

  subscribe(peer: number, socket: Socket, reqId: number, target: string | undefined): void {
    this.#subscribers.set(peer, { socket, reqId, target });
  }

  /** The connection closed: nothing of it is kept. */
  unsubscribe(peer: number): void {
    this.#subscribers.delete(peer);
  }

  /** Writes an event to every subscriber it is for; a subscriber too far behind is dropped instead. */
  publish(event: VmEvent): void {
    for (const [peer, s] of this.#subscribers) {
      if (!eventMatches(event, s.target)) continue;
      if (s.socket.destroyed || s.socket.writableEnded) {
        this.#subscribers.delete(peer);
        continue;
      }
      if (s.socket.writableLength > MAX_EVENT_BACKLOG_BYTES) {
        this.#subscribers.delete(peer);
        this.drop(peer, s.reqId, `events: subscriber too slow: more than ${MAX_EVENT_BACKLOG_BYTES / 1024} KiB of events unread; dropped`);
        continue;
      }
      s.socket.write(encodeFrame({ type: 'vm.event', id: s.reqId, event }));
    }
  }
}
