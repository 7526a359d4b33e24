// vmctl's stdout and stderr: plain write(2) on the descriptor until something needs Node's stream, which is made then.
// Making process.stdout loads Node's stream modules, a tenth of `vmctl status`'s start-up (counted with cachegrind).

import { writeSync } from 'node:fs';

/** A stream that only becomes Node's stream on first use of anything but write(); `made` says whether it has. */
export interface LazyStream {
  readonly stream: NodeJS.WriteStream;
  readonly made: () => boolean;
}

/** What write(2) needs from the host, so tests can give their own descriptor and stream. */
export interface LazyStreamHost {
  readonly fd: number;
  /** Node's stream for the descriptor (process.stdout), made on first need. */
  make(): NodeJS.WriteStream;
  /** A reader that went away (EPIPE): vmctl exits as it would on the stream's EPIPE. */
  onBrokenPipe(): void;
}

function bytesOf(chunk: unknown, encoding: unknown): Uint8Array {
  if (typeof chunk === 'string') return Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
  if (chunk instanceof Uint8Array) return chunk;
  throw new TypeError('write: chunk must be a string or a Uint8Array');
}

/**
 * A stand-in for process.stdout/stderr whose write() is write(2), as Node's own stream is for files and pipes on
 * Linux (synchronous). A non-blocking descriptor that is full (EAGAIN), or any property other than write, makes
 * the real stream, and every write goes to it from then on, so output keeps its order.
 */
export function lazyWriteStream(host: LazyStreamHost): LazyStream {
  let made: NodeJS.WriteStream | undefined;
  const real = (): NodeJS.WriteStream => (made ??= host.make());
  const write = (chunk: unknown, encoding?: unknown, cb?: unknown): boolean => {
    const done = typeof encoding === 'function' ? encoding : cb;
    if (made !== undefined) return made.write(chunk as string, encoding as BufferEncoding, done as () => void);
    const bytes = bytesOf(chunk, encoding);
    let off = 0;
    try {
      while (off < bytes.length) off += writeSync(host.fd, bytes, off);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EPIPE') {
        host.onBrokenPipe();
        return false;
      }
      // EAGAIN (a non-blocking descriptor) and anything else: the stream waits, or reports, as Node does.
      return real().write(bytes.subarray(off), done as () => void);
    }
    if (typeof done === 'function') queueMicrotask(() => (done as () => void)());
    return true;
  };
  const stream = new Proxy({} as NodeJS.WriteStream, {
    get(_, key) {
      if (key === 'write') return write;
      const s = real();
      const v = (s as unknown as Record<PropertyKey, unknown>)[key];
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(s) : v;
    },
    has(_, key) {
      return key in real();
    },
    set(_, key, value) {
      (real() as unknown as Record<PropertyKey, unknown>)[key] = value;
      return true;
    },
  });
  return { stream, made: () => made !== undefined };
}

/** Exits 1 when the reader went away (`vmctl status | head -1`): not an error worth a stack trace. */
function exitOnBrokenPipe(stream: NodeJS.WriteStream): NodeJS.WriteStream {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(1);
  });
  return stream;
}

/** vmctl's own stdout and stderr, as the installed program uses them. */
export function processStdio(): { stdout: LazyStream; stderr: LazyStream } {
  const onBrokenPipe = (): void => process.exit(1);
  return {
    stdout: lazyWriteStream({ fd: 1, make: () => exitOnBrokenPipe(process.stdout), onBrokenPipe }),
    stderr: lazyWriteStream({ fd: 2, make: () => process.stderr, onBrokenPipe }),
  };
}

/** Exits with the status `run` resolves to once both streams have taken everything: process.exit() alone can cut a piped stdout short. */
export function exitWhenWritten(run: Promise<number>, stdout: NodeJS.WritableStream, stderr: NodeJS.WritableStream): void {
  void run.then((code) => {
    stdout.write('', () => stderr.write('', () => process.exit(code)));
  });
}
