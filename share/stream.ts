// The `vmctl send` stream: a small versioned header with the guest's configuration, then QEMU's migration bytes.
// Written by vmd, read by vmctl and vmd; every reader here is strict, since a stream is a file anyone can hand us.
//
// Layout (integers big-endian):
//   magic "VMDSTATE" (8 bytes) | version u32 | config length u32 | config JSON (UTF-8)
//   then chunks: length u32 (1..MAX_CHUNK) + that many bytes of QEMU's migration stream
//   then the end marker: length 0.
// QEMU's bytes are chunked rather than sent bare so that a truncated stream is told from a complete one by the
// stream itself (a missing end marker), not by whatever QEMU makes of a short read. A sender that fails after the
// header writes ERROR_MARK, a u32 length and a JSON error instead of the end marker.

import type { VmdErrorData } from './errors.js';
import { readStreamConfig, type StreamConfig } from './stream-config.js';
import { StreamError } from './stream-error.js';

export { readStreamConfig, type StreamConfig, type StreamNic, type StreamRule } from './stream-config.js';
export { StreamError, type StreamErrorReason } from './stream-error.js';

export const STREAM_MAGIC = Buffer.from('VMDSTATE', 'latin1');
/** Bumped on any change an older reader could not follow; readers refuse newer versions by name. */
export const STREAM_VERSION = 1;
export const STREAM_HEADER_BYTES = STREAM_MAGIC.length + 8;
/** Bound on the configuration JSON: far above any real VM, far below a memory problem. */
export const MAX_CONFIG_BYTES = 1024 * 1024;
/** Bound on one chunk of guest state (QEMU's socket reads are 64 KiB). */
export const MAX_CHUNK = 16 * 1024 * 1024;
/** In place of the end marker: the sender failed; an error follows. */
export const ERROR_MARK = 0xffff_ffff;

/** The header bytes for a configuration. */
export function encodeStreamHeader(config: StreamConfig): Buffer {
  const json = Buffer.from(JSON.stringify(config), 'utf8');
  if (json.length > MAX_CONFIG_BYTES) throw new StreamError('config', `configuration of ${json.length} bytes is too large`, undefined, 'send stream');
  const head = Buffer.alloc(STREAM_HEADER_BYTES);
  STREAM_MAGIC.copy(head, 0);
  head.writeUInt32BE(STREAM_VERSION, STREAM_MAGIC.length);
  head.writeUInt32BE(json.length, STREAM_MAGIC.length + 4);
  return Buffer.concat([head, json]);
}

/** The length prefix of one chunk of guest state (the bytes follow it). */
export function chunkPrefix(length: number): Buffer {
  if (!Number.isInteger(length) || length < 1 || length > MAX_CHUNK) throw new RangeError(`chunk length ${length}`);
  const b = Buffer.alloc(4);
  b.writeUInt32BE(length);
  return b;
}

/** The end marker: the guest state is complete. */
export const STREAM_END: Buffer = Buffer.alloc(4);

/** The failure trailer a sender writes in place of the end marker. */
export function encodeStreamError(error: VmdErrorData): Buffer {
  const json = Buffer.from(JSON.stringify(error), 'utf8').subarray(0, 64 * 1024);
  const b = Buffer.alloc(8);
  b.writeUInt32BE(ERROR_MARK, 0);
  b.writeUInt32BE(json.length, 4);
  return Buffer.concat([b, json]);
}

/** What one push of bytes into a StreamDecoder produced, in stream order. */
export type StreamEvent =
  | { readonly kind: 'header'; readonly config: StreamConfig; readonly bytes: number }
  | { readonly kind: 'data'; readonly data: Buffer }
  | { readonly kind: 'end' }
  | { readonly kind: 'error'; readonly error: VmdErrorData };

type Phase = 'header' | 'config' | 'chunk-length' | 'chunk' | 'error-length' | 'error' | 'done' | 'failed';

/**
 * Incremental reader of a send stream, from the header or (`body: true`) from the first chunk on. Throws
 * StreamError on bad bytes; `finish()` at EOF says whether the stream ended where it may.
 */
export class StreamDecoder {
  #phase: Phase;
  #buf: Buffer = Buffer.alloc(0);
  #need = 0;
  /** Guest-state bytes seen so far (chunk payloads). */
  bodyBytes = 0;
  /** Every byte pushed so far. */
  totalBytes = 0;

  constructor(options: { body?: boolean } = {}) {
    this.#phase = options.body ? 'chunk-length' : 'header';
    this.#need = options.body ? 4 : STREAM_HEADER_BYTES;
  }

  get done(): boolean {
    return this.#phase === 'done';
  }

  /** Whether the header has been read (or was never expected). */
  get inBody(): boolean {
    return this.#phase !== 'header' && this.#phase !== 'config';
  }

  /** Feeds bytes; returns what they completed. Bytes after the end marker are an error. */
  push(chunk: Buffer): StreamEvent[] {
    if (this.#phase === 'failed') throw new StreamError('corrupt', 'read after an error');
    this.totalBytes += chunk.length;
    const events: StreamEvent[] = [];
    let off = 0;
    try {
      while (off < chunk.length) {
        if (this.#phase === 'done') {
          throw new StreamError('corrupt', `${chunk.length - off} unexpected bytes after the end of the guest state`);
        }
        if (this.#phase === 'chunk') {
          // Payload bytes pass through without copying.
          const take = Math.min(this.#need, chunk.length - off);
          events.push({ kind: 'data', data: chunk.subarray(off, off + take) });
          this.bodyBytes += take;
          off += take;
          this.#need -= take;
          if (this.#need === 0) this.#next('chunk-length', 4);
          continue;
        }
        const take = Math.min(this.#need - this.#buf.length, chunk.length - off);
        this.#buf = this.#buf.length === 0 ? Buffer.from(chunk.subarray(off, off + take)) : Buffer.concat([this.#buf, chunk.subarray(off, off + take)]);
        off += take;
        // A file that is not a stream at all is told as soon as its first bytes are in, not at EOF.
        if (this.#phase === 'header' && !magicPrefixOk(this.#buf)) {
          throw new StreamError('magic', 'not a vmd send stream (bad magic)', 'give it a file made by: vmctl send VM > FILE');
        }
        if (this.#buf.length < this.#need) break;
        this.#complete(this.#buf, events);
      }
    } catch (err) {
      this.#phase = 'failed';
      throw err;
    }
    return events;
  }

  /** At EOF: throws the truncation error that fits where the stream stopped. */
  finish(): void {
    switch (this.#phase) {
      case 'done':
        return;
      case 'header':
        if (this.totalBytes === 0) throw new StreamError('truncated-header', 'empty input', 'give it a file made by: vmctl send VM > FILE');
        if (magicPrefixOk(this.#buf)) {
          throw new StreamError('truncated-header', `truncated in the header (${this.totalBytes} of ${STREAM_HEADER_BYTES} bytes)`);
        }
        throw new StreamError('magic', 'not a vmd send stream (bad magic)', 'give it a file made by: vmctl send VM > FILE');
      case 'config':
        throw new StreamError('truncated-header', `truncated in the configuration (${this.#buf.length} of ${this.#need} bytes)`);
      case 'error-length':
      case 'error':
        throw new StreamError('truncated-body', 'truncated in the sender\'s error report');
      default:
        throw new StreamError('truncated-body', `truncated after ${this.bodyBytes} bytes of guest state`,
          'the sender stopped early or the file is incomplete; send the guest again');
    }
  }

  #next(phase: Phase, need: number): void {
    this.#phase = phase;
    this.#need = need;
    this.#buf = Buffer.alloc(0);
  }

  #complete(buf: Buffer, events: StreamEvent[]): void {
    switch (this.#phase) {
      case 'header': {
        if (!buf.subarray(0, STREAM_MAGIC.length).equals(STREAM_MAGIC)) {
          throw new StreamError('magic', 'not a vmd send stream (bad magic)', 'give it a file made by: vmctl send VM > FILE');
        }
        const version = buf.readUInt32BE(STREAM_MAGIC.length);
        if (version > STREAM_VERSION) {
          throw new StreamError('version', `version ${version} is newer than this vmd understands (${STREAM_VERSION})`, 'receive it with the vmd that sent it, or a newer one');
        }
        if (version === 0) throw new StreamError('corrupt', 'invalid version 0');
        const length = buf.readUInt32BE(STREAM_MAGIC.length + 4);
        if (length === 0 || length > MAX_CONFIG_BYTES) throw new StreamError('config', `invalid configuration length ${length}`);
        this.#next('config', length);
        return;
      }
      case 'config': {
        let parsed: unknown;
        try {
          parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(buf));
        } catch {
          throw new StreamError('config', 'the configuration is not valid JSON');
        }
        const config = readStreamConfig(parsed);
        events.push({ kind: 'header', config, bytes: STREAM_HEADER_BYTES + buf.length });
        this.#next('chunk-length', 4);
        return;
      }
      case 'chunk-length': {
        const length = buf.readUInt32BE(0);
        if (length === 0) {
          this.#next('done', 0);
          events.push({ kind: 'end' });
        } else if (length === ERROR_MARK) {
          this.#next('error-length', 4);
        } else if (length > MAX_CHUNK) {
          throw new StreamError('corrupt', `invalid chunk length ${length} after ${this.bodyBytes} bytes of guest state`);
        } else {
          this.#next('chunk', length);
        }
        return;
      }
      case 'error-length': {
        const length = buf.readUInt32BE(0);
        if (length === 0 || length > 64 * 1024) throw new StreamError('corrupt', 'invalid error report');
        this.#next('error', length);
        return;
      }
      case 'error': {
        let e: unknown;
        try {
          e = JSON.parse(buf.toString('utf8'));
        } catch {
          throw new StreamError('corrupt', 'invalid error report');
        }
        const o = e as { code?: unknown; message?: unknown; hint?: unknown };
        if (typeof e !== 'object' || e === null || typeof o.message !== 'string') throw new StreamError('corrupt', 'invalid error report');
        this.#next('done', 0);
        events.push({ kind: 'error', error: { code: 'ERR_STREAM', message: o.message.slice(0, 4096), ...(typeof o.hint === 'string' ? { hint: o.hint.slice(0, 4096) } : {}) } });
        return;
      }
      default:
        throw new StreamError('corrupt', 'internal state');
    }
  }
}

function magicPrefixOk(buf: Buffer): boolean {
  const n = Math.min(buf.length, STREAM_MAGIC.length);
  return buf.subarray(0, n).equals(STREAM_MAGIC.subarray(0, n));
}

/** Buffered bytes a stream relay lets build up before it pauses its source. */
export const RELAY_BUFFER_BYTES = 8 * 1024 * 1024;

/**
 * Pauses `source` while `sink` holds more than RELAY_BUFFER_BYTES, resuming it once drained. Pausing at the
 * sink's own high-water mark (16 KiB) instead would stop and start the source on every chunk: measured, that
 * made a 96 MB send take 1.4 s rather than 0.1 s for QEMU's part.
 */
export function throttle(sink: NodeJS.WritableStream & { writableLength: number }, source: NodeJS.ReadableStream): void {
  if (sink.writableLength <= RELAY_BUFFER_BYTES || source.isPaused()) return;
  source.pause();
  sink.once('drain', () => source.resume());
}
