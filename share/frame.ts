// Framing of the control socket: a 4-byte big-endian length, then that many bytes of UTF-8 JSON.
// Bounded and strict, because the other end is an untrusted client; a connection may then turn into a raw stream.

import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
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
const EMPTY = Buffer.alloc(0);
// The smallest buffer a decoder makes of its own: one small request, so a few bytes more do not mean a copy each.
const MIN_BUFFER_BYTES = 256;

// fatal: invalid UTF-8 is an error, not U+FFFD; ignoreBOM: a BOM stays in the text, and JSON.parse rejects it.
// Made on first need: making and first using it was a twentieth of a `vmctl status` (counted with cachegrind).
let strictUtf8: InstanceType<typeof TextDecoder> | undefined;

/**
 * A frame's body as text, refusing invalid UTF-8 (TypeError). Buffer's own decoding is quicker and turns each invalid
 * sequence into U+FFFD: text without one came from valid UTF-8; text with one (which valid UTF-8 may also hold) is
 * decided by the strict decoder. A BOM stays, as with ignoreBOM.
 */
function utf8Text(body: Buffer): string {
  const text = body.toString('utf8');
  if (!text.includes('\uFFFD')) return text;
  strictUtf8 ??= new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  return strictUtf8.decode(body);
}

/** Streaming decoder: push chunks as they arrive, read whole messages one at a time; never throws on input. */
export class FrameDecoder {
  readonly maxFrameBytes: number;
  /*
   * Bytes received and not yet decoded are #buf[#start, #end). A chunk pushed while nothing is pending is only
   * borrowed (no copy: most chunks hold whole frames); whatever is left of it once read() needs more is copied into
   * a buffer of the decoder's own, grown by doubling as bytes come and never beyond the frame being read. So a peer
   * that declares a 1 MiB frame and sends 10 bytes makes the decoder hold ~10 bytes, not 1 MiB, input byte by byte
   * stays linear, and `held` is the memory really kept, which the control role budgets across connections.
   */
  #buf: Buffer = EMPTY;
  #start = 0;
  #end = 0;
  #borrowed = false;
  #state: FrameDecoderState = 'frames';
  #error: FrameError | undefined;

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
    return this.#end - this.#start;
  }

  /** Bytes of memory the decoder keeps for them (its buffer's size, or the borrowed chunk's until read() copies). */
  get held(): number {
    return this.#buf.length;
  }

  /** Queues bytes; false when the decoder no longer accepts input (after an error or the raw hand-off). */
  push(chunk: Uint8Array): boolean {
    if (this.#state !== 'frames') return false;
    if (chunk.byteLength === 0) return true;
    if (this.buffered === 0 && Buffer.isBuffer(chunk)) {
      // Buffers from a socket are never reused by Node; any other view is copied so the caller may reuse it.
      this.#buf = chunk;
      this.#start = 0;
      this.#end = chunk.length;
      this.#borrowed = true;
    } else {
      this.#append(chunk);
    }
    return true;
  }

  /** The next whole message, if there is one; a violation is reported here, once decoded, and then forever. */
  read(): FrameRead {
    if (this.#state === 'failed') return { kind: 'error', error: this.#error as FrameError };
    if (this.#state === 'raw') return RAW;
    if (this.buffered < FRAME_HEADER_BYTES) return this.#more();
    const length = this.#buf.readUInt32BE(this.#start);
    // Judged on the header alone, so an oversized frame is refused before any of its body is buffered.
    if (length > this.maxFrameBytes) {
      return this.#fail(new FrameError('oversized', `frame of ${length} bytes exceeds the limit of ${this.maxFrameBytes}`));
    }
    if (this.buffered < FRAME_HEADER_BYTES + length) return this.#more();
    const body = this.#buf.subarray(this.#start + FRAME_HEADER_BYTES, this.#start + FRAME_HEADER_BYTES + length);
    this.#start += FRAME_HEADER_BYTES + length;
    let text: string;
    try {
      text = utf8Text(body);
    } catch (err) {
      return this.#fail(new FrameError('encoding', 'frame is not valid UTF-8', err));
    } finally {
      if (this.buffered === 0) this.#clear();
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
    if (this.#state === 'frames' && this.buffered > 0) {
      this.#fail(new FrameError('truncated', `connection closed inside a frame (${this.buffered} bytes pending)`));
      return this.#error;
    }
    return undefined;
  }

  /** Turns the connection into a raw stream (console): returns bytes already received past the last frame. */
  takeRemainder(): Buffer {
    // Bytes after a violation are not trustworthy as anything, so a failed decoder hands back nothing.
    if (this.#state === 'failed') return Buffer.alloc(0);
    const rest = this.buffered === 0 ? Buffer.alloc(0) : this.#buf.subarray(this.#start, this.#end);
    this.#clear();
    this.#state = 'raw';
    return rest;
  }

  /** Drops what is buffered, when nobody will read it (the connection is being closed). */
  discard(): void {
    this.#clear();
  }

  #fail(error: FrameError): FrameRead {
    this.#state = 'failed';
    this.#error = error;
    // Drop what is buffered: nothing after a bad frame will be read, and it should not stay in memory.
    this.#clear();
    return { kind: 'error', error };
  }

  // read() found no whole frame: what is left of a borrowed chunk is copied, so the chunk itself can go.
  #more(): FrameRead {
    if (this.#borrowed && this.buffered > 0) {
      const own = Buffer.allocUnsafeSlow(this.buffered);
      this.#buf.copy(own, 0, this.#start, this.#end);
      this.#buf = own;
      this.#start = 0;
      this.#end = own.length;
      this.#borrowed = false;
    }
    return MORE;
  }

  // Appends a chunk to pending bytes, in the decoder's own buffer, grown by doubling up to the frame being read.
  #append(chunk: Uint8Array): void {
    const live = this.buffered;
    const need = live + chunk.byteLength;
    if (this.#borrowed || need > this.#buf.length) {
      const frame = live >= FRAME_HEADER_BYTES ? FRAME_HEADER_BYTES + this.#buf.readUInt32BE(this.#start) : 0;
      const size = Math.max(need, Math.min(2 * this.#buf.length, frame), MIN_BUFFER_BYTES);
      const grown = Buffer.allocUnsafeSlow(size);
      this.#buf.copy(grown, 0, this.#start, this.#end);
      this.#buf = grown;
      this.#borrowed = false;
    } else if (this.#end + chunk.byteLength > this.#buf.length) {
      this.#buf.copy(this.#buf, 0, this.#start, this.#end);
    } else {
      this.#buf.set(chunk, this.#end);
      this.#end += chunk.byteLength;
      return;
    }
    this.#start = 0;
    this.#buf.set(chunk, live);
    this.#end = need;
  }

  #clear(): void {
    this.#buf = EMPTY;
    this.#start = 0;
    this.#end = 0;
    this.#borrowed = false;
  }
}

/**
 * Events of a FrameReader: each parsed message, the one protocol error after which it stops reading, and after each
 * chunk the bytes of memory its decoder holds for a partial frame (so a server can budget them across connections).
 */
export interface FrameReaderEvents {
  message: [message: unknown];
  'protocol-error': [error: FrameError];
  held: [bytes: number];
}

/** Reads frames off a net.Socket (or any byte stream, as vmctl's ssh transport) and emits them; the control role and vmctl both sit on one of these. */
export class FrameReader extends EventEmitter<FrameReaderEvents> {
  readonly socket: Duplex;
  readonly decoder: FrameDecoder;
  #attached = true;
  readonly #onData = (chunk: Buffer): void => this.#consume(chunk);
  readonly #onEnd = (): void => {
    const error = this.#attached ? this.decoder.end() : undefined;
    if (error !== undefined) this.#violation(error);
  };

  constructor(socket: Duplex, options?: FrameOptions) {
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
    this.decoder.discard();
  }

  /** Whether frames are still being read (not yet detached, switched to raw or failed). */
  get attached(): boolean {
    return this.#attached;
  }

  #consume(chunk: Buffer): void {
    if (!this.#attached) return;
    this.decoder.push(chunk);
    // Re-checked after every emit: a listener may switch to raw or detach in the middle of a chunk.
    while (this.#attached) {
      const next = this.decoder.read();
      if (next.kind === 'message') this.emit('message', next.message);
      else if (next.kind === 'error') this.#violation(next.error);
      else break;
    }
    if (this.#attached) this.emit('held', this.decoder.held);
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
export function readFrames(socket: Duplex, options?: FrameOptions): FrameReader {
  return new FrameReader(socket, options);
}
