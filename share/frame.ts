// Framing of the control socket: a 4-byte big-endian length, then that many bytes of UTF-8 JSON.
// Bounded and strict, because the other end is an untrusted client; a connection may then turn into a raw stream.

import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { VmdError } from './errors.js';

/** Size of the length prefix in front of every frame. */
export const FRAME_HEADER_BYTES = 4;

/** Default bound on one frame's JSON body: far above any real message, far below a memory problem. */
export const DEFAULT_MAX_FRAME_BYTES = 1024 * 1024;

/**
 * Bound on a reply from vmd, which vmctl trusts more than vmd trusts a client: listings grow with the fleet
 * (a status row is 200-250 bytes, so 1 MiB ended at 4,000-5,000 VMs). Requests stay at DEFAULT_MAX_FRAME_BYTES.
 */
export const MAX_RESPONSE_FRAME_BYTES = 64 * 1024 * 1024;

/** The largest body a 32-bit length prefix can describe, so the upper limit of `maxFrameBytes`. */
export const MAX_FRAME_LIMIT = 0xffff_ffff;

/** Why a byte stream was rejected; tests and logs tell the cases apart, the client sees ERR_PROTOCOL. */
export type FrameErrorReason = 'oversized' | 'encoding' | 'json' | 'truncated';

/** A protocol violation by the peer: answer it with `toJSON()` and close the connection. */
export class FrameError extends VmdError {
  readonly reason: FrameErrorReason;

  constructor(reason: FrameErrorReason, message: string, cause?: unknown) {
    super('ERR_PROTOCOL', message, cause === undefined ? undefined : { cause });
    this.name = 'FrameError';
    this.reason = reason;
  }
}

/** Options shared by the encoder and the decoder, so both ends of a connection agree on the bound. */
export interface FrameOptions {
  readonly maxFrameBytes?: number;
}

function maxFrameOf(options: FrameOptions | undefined): number {
  const max = options?.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  if (!Number.isInteger(max) || max < 1 || max > MAX_FRAME_LIMIT) {
    throw new RangeError(`maxFrameBytes must be an integer from 1 to ${MAX_FRAME_LIMIT}`);
  }
  return max;
}

/** One message as bytes on the wire; an oversized message is our bug or a huge listing, so it throws FrameError. */
export function encodeFrame(message: unknown, options?: FrameOptions): Buffer {
  const max = maxFrameOf(options);
  const json = JSON.stringify(message);
  // JSON.stringify returns undefined for undefined, functions and symbols: nothing the peer could decode.
  if (typeof json !== 'string') throw new TypeError('encodeFrame: message is not representable as JSON');
  const length = Buffer.byteLength(json, 'utf8');
  if (length > max) throw new FrameError('oversized', `frame of ${length} bytes exceeds the limit of ${max}`);
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + length);
  frame.writeUInt32BE(length, 0);
  frame.write(json, FRAME_HEADER_BYTES, 'utf8');
  return frame;
}

/** What one `read()` yields: a message, a request for more bytes, or the (sticky) protocol error. */
export type FrameRead =
  | { readonly kind: 'message'; readonly message: unknown }
  | { readonly kind: 'more' }
  | { readonly kind: 'error'; readonly error: FrameError }
  | { readonly kind: 'raw' };

/** Where a decoder is: decoding frames, refused after a violation, or handed over to a raw byte stream. */
export type FrameDecoderState = 'frames' | 'failed' | 'raw';

const MORE: FrameRead = Object.freeze({ kind: 'more' });
const RAW: FrameRead = Object.freeze({ kind: 'raw' });

/** Streaming decoder: push chunks as they arrive, read whole messages one at a time; never throws on input. */
export class FrameDecoder {
  readonly maxFrameBytes: number;
  // Chunks are kept as received and joined only when a whole frame is there, so byte-by-byte input stays linear.
  #chunks: Buffer[] = [];
  #buffered = 0;
  #state: FrameDecoderState = 'frames';
  #error: FrameError | undefined;
  // fatal: invalid UTF-8 is an error, not U+FFFD; ignoreBOM: a BOM stays in the text, and JSON.parse rejects it.
  readonly #utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

  constructor(options?: FrameOptions) {
    this.maxFrameBytes = maxFrameOf(options);
  }

  get state(): FrameDecoderState {
    return this.#state;
  }

  get error(): FrameError | undefined {
    return this.#error;
  }

  /** Bytes received and not yet decoded. */
  get buffered(): number {
    return this.#buffered;
  }

  /** Queues bytes; false when the decoder no longer accepts input (after an error or the raw hand-off). */
  push(chunk: Uint8Array): boolean {
    if (this.#state !== 'frames') return false;
    if (chunk.byteLength === 0) return true;
    // Buffers from a socket are never reused by Node; any other view is copied so the caller may reuse it.
    this.#chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
    this.#buffered += chunk.byteLength;
    return true;
  }

  /** The next whole message, if there is one; a violation is reported here, once decoded, and then forever. */
  read(): FrameRead {
    if (this.#state === 'failed') return { kind: 'error', error: this.#error as FrameError };
    if (this.#state === 'raw') return RAW;
    if (this.#buffered < FRAME_HEADER_BYTES) return MORE;
    const length = this.#peek(FRAME_HEADER_BYTES).readUInt32BE(0);
    // Judged on the header alone, so an oversized frame is refused before any of its body is buffered.
    if (length > this.maxFrameBytes) {
      return this.#fail(new FrameError('oversized', `frame of ${length} bytes exceeds the limit of ${this.maxFrameBytes}`));
    }
    if (this.#buffered < FRAME_HEADER_BYTES + length) return MORE;
    const frame = this.#take(FRAME_HEADER_BYTES + length);
    let text: string;
    try {
      text = this.#utf8.decode(frame.subarray(FRAME_HEADER_BYTES));
    } catch (err) {
      return this.#fail(new FrameError('encoding', 'frame is not valid UTF-8', err));
    }
    try {
      return { kind: 'message', message: JSON.parse(text) as unknown };
    } catch (err) {
      return this.#fail(new FrameError('json', 'frame is not valid JSON', err));
    }
  }

  /** Pushes a chunk and reads every whole message in it: the simple path when no raw hand-off can follow. */
  decode(chunk: Uint8Array): { messages: unknown[]; error: FrameError | undefined } {
    this.push(chunk);
    const messages: unknown[] = [];
    for (;;) {
      const next = this.read();
      if (next.kind === 'message') messages.push(next.message);
      else return { messages, error: next.kind === 'error' ? next.error : undefined };
    }
  }

  /** The peer closed: a partial frame left over is a violation (a truncated reply must not pass as "no reply"). */
  end(): FrameError | undefined {
    if (this.#state === 'failed') return this.#error;
    if (this.#state === 'frames' && this.#buffered > 0) {
      this.#fail(new FrameError('truncated', `connection closed inside a frame (${this.#buffered} bytes pending)`));
      return this.#error;
    }
    return undefined;
  }

  /** Turns the connection into a raw stream (console): returns bytes already received past the last frame. */
  takeRemainder(): Buffer {
    // Bytes after a violation are not trustworthy as anything, so a failed decoder hands back nothing.
    if (this.#state === 'failed') return Buffer.alloc(0);
    const rest = this.#buffered === 0 ? Buffer.alloc(0) : this.#take(this.#buffered);
    this.#state = 'raw';
    return rest;
  }

  #fail(error: FrameError): FrameRead {
    this.#state = 'failed';
    this.#error = error;
    // Drop what is buffered: nothing after a bad frame will be read, and it should not stay in memory.
    this.#chunks = [];
    this.#buffered = 0;
    return { kind: 'error', error };
  }

  // The first n bytes without consuming them; joins leading chunks only when the header straddles them.
  #peek(n: number): Buffer {
    const first = this.#chunks[0] as Buffer;
    if (first.length >= n) return first;
    const joined = Buffer.concat(this.#chunks);
    this.#chunks = [joined];
    return joined;
  }

  // Consumes exactly n bytes (n <= buffered).
  #take(n: number): Buffer {
    const parts: Buffer[] = [];
    let need = n;
    while (need > 0) {
      const head = this.#chunks[0] as Buffer;
      if (head.length <= need) {
        parts.push(head);
        this.#chunks.shift();
        need -= head.length;
      } else {
        parts.push(head.subarray(0, need));
        this.#chunks[0] = head.subarray(need);
        need = 0;
      }
    }
    this.#buffered -= n;
    return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, n);
  }
}

/** Events of a FrameReader: each parsed message, and the one protocol error after which it stops reading. */
export interface FrameReaderEvents {
  message: [message: unknown];
  'protocol-error': [error: FrameError];
}

/** Reads frames off a net.Socket and emits them; the control role and vmctl both sit on one of these. */
export class FrameReader extends EventEmitter<FrameReaderEvents> {
  readonly socket: Socket;
  readonly decoder: FrameDecoder;
  #attached = true;
  readonly #onData = (chunk: Buffer): void => this.#consume(chunk);
  readonly #onEnd = (): void => {
    const error = this.#attached ? this.decoder.end() : undefined;
    if (error !== undefined) this.#violation(error);
  };

  constructor(socket: Socket, options?: FrameOptions) {
    super();
    this.socket = socket;
    this.decoder = new FrameDecoder(options);
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
  }

  /**
   * Stops decoding and hands the connection over as a raw byte stream; call it from a 'message' listener to
   * switch right after that message. Returns the bytes already received past it. The socket is left paused:
   * deliver the returned bytes first, then pipe() or resume() it, so no byte is lost or reordered.
   */
  switchToRaw(): Buffer {
    this.#detach();
    return this.decoder.takeRemainder();
  }

  /** Stops emitting without touching the socket, e.g. when the connection is being closed anyway. */
  detach(): void {
    this.#detach();
  }

  #consume(chunk: Buffer): void {
    if (!this.#attached) return;
    this.decoder.push(chunk);
    // Re-checked after every emit: a listener may switch to raw or detach in the middle of a chunk.
    while (this.#attached) {
      const next = this.decoder.read();
      if (next.kind === 'message') this.emit('message', next.message);
      else if (next.kind === 'error') this.#violation(next.error);
      else return;
    }
  }

  #violation(error: FrameError): void {
    this.#detach();
    // With nobody to answer the peer, close the connection rather than leave it open and unread.
    if (this.listenerCount('protocol-error') === 0) this.socket.destroy();
    else this.emit('protocol-error', error);
  }

  #detach(): void {
    if (!this.#attached) return;
    this.#attached = false;
    // Paused before the listener goes: a flowing socket without a 'data' listener would drop bytes.
    this.socket.pause();
    this.socket.off('data', this.#onData);
    this.socket.off('end', this.#onEnd);
  }
}

/** Attaches a FrameReader to a socket: the usual way to start reading a control connection. */
export function readFrames(socket: Socket, options?: FrameOptions): FrameReader {
  return new FrameReader(socket, options);
}
