// vmctl's side of the control socket: connect, send framed requests, match replies to them by id.
// A console request turns the same connection into the guest's raw byte stream once vmd has said yes.

import { connect as netConnect } from 'node:net';
import type { Duplex } from 'node:stream';
import { encodeFrame, MAX_RESPONSE_FRAME_BYTES, readFrames, type FrameReader } from '../share/frame.js';
import { PROTOCOL_VERSION, ProtocolError, type ControlRequest, type ControlResponse } from '../share/protocol.js';
import { readResponse } from '../share/read-response.js';
import { socketPath, socketPathTooLong } from '../share/paths.js';
import { CliError, longSocketError, strerror } from './errors.js';

type WithoutBase<T> = T extends unknown ? Omit<T, 'v' | 'id'> : never;

/** A request as a command builds it; the client adds the protocol version and the request id. */
export type RequestBody = WithoutBase<ControlRequest>;

/** A decoded reply together with the object exactly as it came off the socket, which `--json` prints. */
export interface Reply {
  readonly response: ControlResponse;
  readonly raw: unknown;
}

/** A console (or capture) hand-off: the reply, the socket now carrying raw bytes, and bytes that arrived with the reply. */
export interface ConsoleStream extends Reply {
  readonly socket: Duplex;
  readonly remainder: Buffer;
}

interface Pending {
  readonly resolve: (reply: Reply & { remainder?: Buffer }) => void;
  readonly reject: (err: Error) => void;
  /** The reply type after which the connection stops being framed (console, capture, send, receive), if any. */
  readonly rawOn: ControlResponse['type'] | null;
}

/** One connection to vmd (its socket, or a byte stream that reaches it, as ssh): requests may overlap, replies are matched by id. */
export class ControlClient {
  /** What the connection reaches, for messages: the socket's path, or `host "h"` over ssh. */
  readonly path: string;
  readonly socket: Duplex;
  readonly #reader: FrameReader;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #failure: Error | undefined;

  private constructor(path: string, socket: Duplex) {
    this.path = path;
    this.socket = socket;
    this.#reader = readFrames(socket, { maxFrameBytes: MAX_RESPONSE_FRAME_BYTES });
    this.#reader.on('message', (msg) => this.#onMessage(msg));
    this.#reader.on('protocol-error', (err) => this.#fail(new CliError(`unexpected response received from vmd: ${err.message}`)));
    // A transport that knows why it broke (ssh's own words) says so with a CliError, kept as it is.
    socket.on('error', (err) => this.#fail(err instanceof CliError ? err : new CliError(`read error: ${strerror((err as NodeJS.ErrnoException).code)}`)));
    socket.on('close', () => this.#fail(new CliError('pipe closed')));
  }

  /** Connects to vmd's socket (VMD_SOCKET or /run/vmd.sock); fails as OpenBSD does: `connect: PATH: strerror`. */
  static connect(path: string = socketPath()): Promise<ControlClient> {
    if (socketPathTooLong(path)) return Promise.reject(longSocketError(path));
    return new Promise((resolve, reject) => {
      const socket = netConnect({ path });
      const onError = (err: NodeJS.ErrnoException): void => {
        socket.destroy();
        reject(new CliError(`connect: ${path}: ${strerror(err.code)}`, 'ERR_CONNECT'));
      };
      socket.once('error', onError);
      socket.once('connect', () => {
        socket.off('error', onError);
        resolve(new ControlClient(path, socket));
      });
    });
  }

  /** Wraps a byte stream that already reaches vmd (vmctl -H: ssh to the remote relay); `what` names it in messages. */
  static fromStream(what: string, stream: Duplex): ControlClient {
    return new ControlClient(what, stream);
  }

  /** Sends one request and resolves with its reply (an error reply too: callers word it for their command). */
  request(body: RequestBody): Promise<Reply> {
    return this.#send(body, null);
  }

  /** Sends `vm.console.request`; on `vm.console.response` the connection stops being framed and is handed over. */
  async console(target: string): Promise<ConsoleStream | Reply> {
    return this.stream({ type: 'vm.console.request', target }, 'vm.console.response');
  }

  /** Sends a request whose `rawOn` reply turns the connection into a byte stream (console, capture, send, receive). */
  async stream(body: RequestBody, rawOn: ControlResponse['type']): Promise<ConsoleStream | Reply> {
    const reply = await this.#send(body, rawOn);
    if (reply.response.type !== rawOn) return reply;
    return { ...reply, socket: this.socket, remainder: reply.remainder ?? Buffer.alloc(0) };
  }

  /** Sends `vm.capture.request`; on `vm.capture.response` the connection carries the capture's pcap bytes from then on. */
  async capture(body: Omit<Extract<RequestBody, { type: 'vm.capture.request' }>, 'type'>): Promise<ConsoleStream | Reply> {
    return this.stream({ type: 'vm.capture.request', ...body }, 'vm.capture.response');
  }

  /** Closes the connection; pending requests fail with `pipe closed`. */
  close(): void {
    this.#reader.detach();
    this.socket.end();
    this.socket.destroy();
  }

  #send(body: RequestBody, rawOn: ControlResponse['type'] | null): Promise<Reply & { remainder?: Buffer }> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, rawOn });
      try {
        this.socket.write(encodeFrame({ v: PROTOCOL_VERSION, id, ...body }));
      } catch (err) {
        this.#pending.delete(id);
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  }

  #onMessage(raw: unknown): void {
    let response: ControlResponse;
    try {
      response = readResponse(raw);
    } catch (err) {
      const why = err instanceof ProtocolError ? err.message : String(err);
      this.#fail(new CliError(`unexpected response received from vmd: ${why}`));
      return;
    }
    const pending = this.#pending.get(response.id);
    // An error about a request vmd could not even read carries id 0: it belongs to the oldest request.
    const key = pending === undefined && response.type === 'error' && response.id === 0 ? this.#pending.keys().next().value : response.id;
    const waiter = key === undefined ? undefined : this.#pending.get(key);
    if (waiter === undefined) return;
    this.#pending.delete(key as number);
    if (waiter.rawOn !== null && response.type === waiter.rawOn) {
      // Switch right after this frame: whatever follows it in the same chunk is already console output.
      const remainder = this.#reader.switchToRaw();
      this.#failure = new CliError('connection is a byte stream');
      waiter.resolve({ response, raw, remainder });
      return;
    }
    waiter.resolve({ response, raw });
  }

  #fail(err: Error): void {
    if (this.#failure !== undefined) return;
    this.#failure = err;
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }
}
