// A QMP (QEMU Machine Protocol) client over a unix socket: commands with id correlation, asynchronous events.
// The vmm role holds one per running guest; QEMU is untrusted input, so lines are bounded and parsed defensively.

import { EventEmitter } from 'node:events';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { VmdError } from '../share/errors.js';

/** An asynchronous QMP event (SHUTDOWN, STOP, RESUME, POWERDOWN, RESET, …) as QEMU sent it. */
export interface QmpEvent {
  readonly event: string;
  readonly data: Record<string, unknown>;
  readonly timestamp: { readonly seconds: number; readonly microseconds: number } | null;
}

/** The greeting's version block, kept so callers can log or check what they are talking to. */
export interface QmpGreeting {
  readonly version: { readonly qemu: { readonly major: number; readonly minor: number; readonly micro: number }; readonly package: string };
  readonly capabilities: readonly string[];
}

/** Tunables; every wait is bounded. */
export interface QmpOptions {
  /** Bound for connecting (retrying while QEMU creates its socket), the greeting and qmp_capabilities. Default 5000. */
  readonly timeoutMs?: number;
  /** Default per-command reply timeout. Default 10000. */
  readonly commandTimeoutMs?: number;
  /** Longest accepted line; larger means a broken or hostile peer. Default 8 MiB (query-qmp-schema is ~200 KB). */
  readonly maxLineBytes?: number;
  /** Whether QEMU still runs: a QEMU that exited will never make its socket, so connecting stops waiting for it. */
  readonly alive?: () => boolean;
}

/** A QMP `error` reply: QEMU's class and desc, as a VmdError so it can cross to vmctl. */
export class QmpError extends VmdError {
  readonly qmpClass: string;
  constructor(command: string, qmpClass: string, desc: string) {
    super('ERR_QEMU', `qmp ${command}: ${desc}`);
    this.name = 'QmpError';
    this.qmpClass = qmpClass;
  }
}

interface Pending {
  readonly command: string;
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: Error) => void;
  readonly timer: NodeJS.Timeout;
}

const RETRY_CODES = new Set(['ENOENT', 'ECONNREFUSED', 'EAGAIN']);
const RETRY_DELAY_MS = 20;

/**
 * One QMP session. Events: 'event' (name, data, QmpEvent) for every event; the same event under its own
 * name ('SHUTDOWN', 'STOP', …) with the QmpEvent; 'close' (reason: Error | null) once, when the connection
 * ends for any reason (null: an orderly end, or the reset that follows `quit`).
 * It never emits 'error', so a QEMU that dies (ECONNRESET on `quit`) cannot crash the process.
 */
export class QmpClient extends EventEmitter {
  readonly greeting: QmpGreeting;
  private readonly socket: Socket;
  private readonly commandTimeoutMs: number;
  private readonly maxLineBytes: number;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private chunks: Buffer[] = [];
  private chunkBytes = 0;
  private ended = false;
  private quitting = false;

  private constructor(socket: Socket, greeting: QmpGreeting, rest: Buffer, options: QmpOptions) {
    super();
    this.socket = socket;
    this.greeting = greeting;
    this.commandTimeoutMs = options.commandTimeoutMs ?? 10_000;
    this.maxLineBytes = options.maxLineBytes ?? 8 * 1024 * 1024;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.finish(err));
    socket.on('close', () => this.finish(null));
    // QEMU sends nothing before qmp_capabilities, so bytes after the greeting are at most a stray line.
    if (rest.length > 0) this.onData(rest);
    socket.resume();
  }

  /** Connect (retrying while the socket does not exist yet), read the greeting and leave capabilities negotiation. */
  static async connect(path: string, options: QmpOptions = {}): Promise<QmpClient> {
    const timeoutMs = options.timeoutMs ?? 5000;
    const maxLineBytes = options.maxLineBytes ?? 8 * 1024 * 1024;
    const deadline = Date.now() + timeoutMs;
    const socket = await connectRetry(path, deadline, 'qmp', options.alive);
    let greeting: QmpGreeting;
    let rest: Buffer;
    try {
      ({ greeting, rest } = await readGreeting(socket, deadline, maxLineBytes));
    } catch (err) {
      socket.destroy();
      throw err;
    }
    const client = new QmpClient(socket, greeting, rest, options);
    try {
      await client.execute('qmp_capabilities', undefined, { timeoutMs: Math.max(1, deadline - Date.now()) });
    } catch (err) {
      client.destroy();
      throw err;
    }
    return client;
  }

  /** True once the connection has ended; execute() then rejects at once. */
  get closed(): boolean {
    return this.ended;
  }

  /**
   * Run a command and resolve with its `return` value. Rejects with QmpError on an `error` reply, with ERR_QEMU
   * on timeout or when the connection ends first; `quit` resolves when the connection ends, since QEMU may
   * reset the socket before its reply arrives.
   */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, options: { timeoutMs?: number } = {}): Promise<T> {
    if (this.ended) return Promise.reject(new VmdError('ERR_QEMU', `qmp ${command}: connection closed`));
    const id = this.nextId++;
    const timeoutMs = options.timeoutMs ?? this.commandTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        // A late reply for this id is dropped by onMessage.
        this.pending.delete(id);
        reject(new VmdError('ERR_QEMU', `qmp ${command}: no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { command, resolve: resolve as (value: unknown) => void, reject, timer });
      if (command === 'quit') this.quitting = true;
      const message = args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
      this.socket.write(`${JSON.stringify(message)}\n`);
    });
  }

  /** End the session politely (QEMU keeps running) and wait until the socket is closed. */
  async close(): Promise<void> {
    if (this.ended) return;
    const closed = new Promise<void>((resolve) => this.once('close', () => resolve()));
    this.socket.end();
    // A peer that never closes its side must not hold us: bounded, then forced.
    const timer = setTimeout(() => this.socket.destroy(), 1000);
    await closed;
    clearTimeout(timer);
  }

  /** Drop the connection at once. */
  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    let start = 0;
    for (let nl = chunk.indexOf(0x0a, start); nl !== -1; nl = chunk.indexOf(0x0a, start)) {
      const piece = chunk.subarray(start, nl);
      start = nl + 1;
      let line: Buffer;
      if (this.chunks.length > 0) {
        line = Buffer.concat([...this.chunks, piece]);
        this.chunks = [];
        this.chunkBytes = 0;
      } else {
        line = piece;
      }
      if (line.length > this.maxLineBytes) return this.protocolError(`line longer than ${this.maxLineBytes} bytes`);
      if (!this.onLine(line)) return;
      if (this.ended) return;
    }
    if (start < chunk.length) {
      const tail = chunk.subarray(start);
      this.chunkBytes += tail.length;
      if (this.chunkBytes > this.maxLineBytes) return this.protocolError(`line longer than ${this.maxLineBytes} bytes`);
      this.chunks.push(Buffer.from(tail));
    }
  }

  /** Returns false when the connection was torn down because of the line. */
  private onLine(line: Buffer): boolean {
    const text = line.toString('utf8').trim();
    if (text === '') return true;
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      this.protocolError('malformed json');
      return false;
    }
    if (!isObject(msg)) {
      this.protocolError('message is not an object');
      return false;
    }
    if (typeof msg.event === 'string') {
      const ts = msg.timestamp;
      const event: QmpEvent = {
        event: msg.event,
        data: isObject(msg.data) ? msg.data : {},
        timestamp: isObject(ts) && typeof ts.seconds === 'number' && typeof ts.microseconds === 'number'
          ? { seconds: ts.seconds, microseconds: ts.microseconds }
          : null,
      };
      this.emit('event', event.event, event.data, event);
      this.emit(event.event, event);
      return true;
    }
    // Replies without a known id (ours timed out, or QEMU reports a parse error with no id) are dropped.
    const pending = typeof msg.id === 'number' ? this.pending.get(msg.id) : undefined;
    if (pending === undefined) return true;
    this.pending.delete(msg.id as number);
    clearTimeout(pending.timer);
    if ('return' in msg) {
      pending.resolve(msg.return);
    } else if (isObject(msg.error)) {
      pending.reject(new QmpError(pending.command, String(msg.error.class ?? 'GenericError'), String(msg.error.desc ?? 'unknown error')));
    } else {
      pending.reject(new VmdError('ERR_PROTOCOL', `qmp ${pending.command}: reply has neither return nor error`));
    }
    return true;
  }

  private protocolError(why: string): void {
    this.finish(new VmdError('ERR_PROTOCOL', `qmp: ${why}`));
    this.socket.destroy();
  }

  private finish(reason: Error | null): void {
    if (this.ended) return;
    this.ended = true;
    // After `quit`, QEMU closing (often by reset) is the expected outcome, not an error.
    const expected = this.quitting && (reason === null || (reason as NodeJS.ErrnoException).code === 'ECONNRESET');
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      if (p.command === 'quit' && expected) p.resolve({});
      else p.reject(new VmdError('ERR_QEMU', `qmp ${p.command}: connection closed`, reason ? { cause: reason } : undefined));
    }
    this.emit('close', expected ? null : reason);
  }
}

/** Connect to a unix socket QEMU makes (QMP, migration), retrying while it does not exist or nobody listens yet. */
export async function connectRetry(path: string, deadline: number, what = 'qmp', alive: () => boolean = () => true): Promise<Socket> {
  for (;;) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const socket = connect(path);
        socket.once('connect', () => {
          socket.removeListener('error', reject);
          resolve(socket);
        });
        socket.once('error', reject);
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      if (RETRY_CODES.has(code) && !alive()) {
        throw new VmdError('ERR_QEMU', `${what}: ${path}: qemu exited before it accepted connections`, { cause: err });
      }
      if (!RETRY_CODES.has(code) || Date.now() + RETRY_DELAY_MS > deadline) {
        throw new VmdError('ERR_QEMU', `${what}: cannot connect to ${path}: ${code || String(err)}`, { cause: err });
      }
      await sleep(RETRY_DELAY_MS);
    }
  }
}

/** Read the first line, which must be the {"QMP": …} greeting; return what followed it in the same chunk. */
function readGreeting(socket: Socket, deadline: number, maxLineBytes: number): Promise<{ greeting: QmpGreeting; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const cleanup = () => {
      clearTimeout(timer);
      // Paused so nothing is lost before the client attaches its own 'data' listener.
      socket.pause();
      socket.removeListener('data', onData);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClose);
    };
    const fail = (why: string, cause?: unknown) => {
      cleanup();
      reject(new VmdError('ERR_QEMU', `qmp: ${why}`, cause === undefined ? undefined : { cause }));
    };
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const nl = buffered.indexOf(0x0a);
      if (nl === -1) {
        if (buffered.length > maxLineBytes) fail('greeting too long');
        return;
      }
      cleanup();
      let msg: unknown;
      try {
        msg = JSON.parse(buffered.subarray(0, nl).toString('utf8'));
      } catch (err) {
        return reject(new VmdError('ERR_PROTOCOL', 'qmp: malformed greeting', { cause: err }));
      }
      if (!isObject(msg) || !isObject(msg.QMP) || !isObject(msg.QMP.version)) {
        return reject(new VmdError('ERR_PROTOCOL', 'qmp: no greeting'));
      }
      const caps = Array.isArray(msg.QMP.capabilities) ? msg.QMP.capabilities.map(String) : [];
      resolve({ greeting: { version: msg.QMP.version as unknown as QmpGreeting['version'], capabilities: caps }, rest: buffered.subarray(nl + 1) });
    };
    const onError = (err: Error) => fail(`connection failed before the greeting: ${err.message}`, err);
    const onClose = () => fail('connection closed before the greeting');
    const timer = setTimeout(() => fail('no greeting in time'), Math.max(1, deadline - Date.now()));
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
  });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
