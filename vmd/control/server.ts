// The control role's connections: admitting what the parent hands over, reading requests, replying, closing.
// One object owns them, with their limits and the status snapshot, so each step is a method of its own.

import type { Socket } from 'node:net';
import { encodeFrame, MAX_RESPONSE_FRAME_BYTES, readFrames, type FrameReader } from '../../share/frame.js';
import type { ControlToParent, ParentToControl } from '../../share/ipc.js';
import { ProtocolError, UNPRIVILEGED_REQUESTS, type ControlRequest, type ControlResponse } from '../../share/protocol.js';
import { readRequest, requestIdOf } from '../../share/read-request.js';
import { heapTrimSoon } from '../heap-trim.js';
import { logDebug, logSetVerbose, logWarn } from '../log.js';
import type { Handle } from '../proc.js';
import { StatusSnapshot } from '../status.js';
import { displayRelay } from './display.js';
import { EventHub } from './events.js';
import { ControlLimits, limitMessage, type ControlLimitSettings, type LimitVerdict } from './limits.js';

const MAX_PENDING_PER_CONNECTION = 32;
/** A closing connection whose peer does not take our last frame is destroyed after this long anyway. */
const HANG_UP_GRACE_MS = 1000;
/** Refusals are logged at most this often per uid and reason: a flood must not become a flood of log lines. */
const REFUSAL_LOG_INTERVAL_MS = 10_000;

interface Connection {
  readonly peer: number;
  readonly socket: Socket;
  readonly reader: FrameReader;
  readonly uid: number;
  readonly gid: number;
  pending: number;
}

type RefusalCode = 'ERR_PROTOCOL' | 'ERR_VERSION' | 'ERR_PERMISSION';

/** Every client connection control holds, what each may hold (vmd/control/limits.ts), and the status listing. */
export class ControlServer {
  readonly #connections = new Map<number, Connection>();
  readonly #status = new StatusSnapshot();
  readonly #limits: ControlLimits;
  readonly #refusalLogged = new Map<string, number>();
  readonly #sweep: NodeJS.Timeout;
  readonly #events = new EventHub((peer, reqId, message) => this.#dropSubscriber(peer, reqId, message));
  /** Connections waiting for their display: what each sent past its request, read before the reader went raw. */
  readonly #displays = new Map<number, Buffer>();
  #ready = false;

  constructor(settings: ControlLimitSettings, private readonly send: (m: ControlToParent, h?: Handle) => void) {
    this.#limits = new ControlLimits(settings, []);
    // The deadline is checked a few times per timeout, at most once a second: cheap for a thousand connections.
    this.#sweep = setInterval(() => {
      for (const id of this.#limits.expired(Date.now())) this.#closeByLimit(id, 'timeout');
    }, Math.max(100, Math.min(1000, settings.requestTimeoutMs / 4)));
    this.#sweep.unref();
  }

  /** Messages from the parent. */
  controlDispatchParent(msg: ParentToControl, handle: Handle | undefined): void {
    switch (msg.type) {
      case 'control.config':
        return this.#configure(msg.verbose, msg.socketOwnerUid);
      case 'control.connection':
        // Every client connection, accepted by the parent and passed on unread.
        if (handle !== undefined && !('listen' in handle)) this.#accept(handle as Socket, msg.peer, { uid: msg.uid, gid: msg.gid });
        return;
      case 'control.response':
        return this.#answered(msg.peer, msg.response, msg.close);
      case 'control.status':
        return this.#status.update(msg.vms, msg.warnings);
      case 'control.event':
        return this.#events.publish(msg.event);
      case 'control.display':
        if (handle !== undefined && !('listen' in handle)) this.#display(msg.peer, msg.response, handle as Socket);
        return;
      case 'log.verbose':
        return logSetVerbose(msg.level);
    }
  }

  /** The parent is gone: so is every client connection. */
  shutdown(): void {
    clearInterval(this.#sweep);
    for (const c of this.#connections.values()) c.socket.destroy();
  }

  #configure(verbose: number, socketOwnerUid: number | undefined): void {
    logSetVerbose(verbose);
    if (socketOwnerUid !== undefined) this.#limits.privilege(socketOwnerUid);
    if (this.#ready) return;
    this.#ready = true;
    this.send({ type: 'control.ready' });
  }

  #answered(peer: number, response: ControlResponse, close: boolean): void {
    const conn = this.#connections.get(peer);
    if (conn === undefined) return;
    conn.pending = Math.max(0, conn.pending - 1);
    this.#limits.requestAnswered(peer, Date.now());
    // A display request that failed: its connection reads no more frames, so it ends with the error.
    this.#reply(conn, response, close || this.#displays.delete(peer));
  }

  /** The parent's answer to a display request: the response, then the client's bytes relayed to the VNC socket. */
  #display(peer: number, response: ControlResponse, vnc: Socket): void {
    const conn = this.#connections.get(peer);
    const remainder = this.#displays.get(peer);
    if (conn === undefined || remainder === undefined || conn.socket.destroyed) {
      vnc.destroy();
      return;
    }
    this.#displays.delete(peer);
    this.#reply(conn, response, false);
    // From here on the connection is a byte stream. Like an events subscription it stays "in flight" for the limits:
    // no deadline, but it counts against its user's connections, so a user cannot hold QEMU unbounded VNC clients.
    displayRelay(conn.socket, vnc, remainder);
  }

  /** Writes one reply: a response to encode, or a frame already in pieces (a status listing) written without a copy. */
  #reply(conn: Connection, response: ControlResponse | (() => Buffer[]), close: boolean): void {
    const socket = conn.socket;
    if (socket.destroyed || socket.writableEnded) return;
    try {
      if (typeof response === 'function') {
        const pieces = response();
        socket.cork();
        for (const piece of pieces) socket.write(piece);
        socket.uncork();
      } else {
        socket.write(encodeFrame(response, { maxFrameBytes: MAX_RESPONSE_FRAME_BYTES }));
      }
    } catch (err) {
      logWarn(`reply: ${err instanceof Error ? err.message : String(err)}`);
      close = true;
    }
    if (close) hangUp(socket);
    // A peer that does not read its replies stops being read: its requests must not pile replies up in memory.
    else if (socket.writableNeedDrain && conn.reader.attached) {
      socket.pause();
      socket.once('drain', () => { if (conn.reader.attached) socket.resume(); });
    }
  }

  #refuse(conn: Connection, id: number, code: RefusalCode, message: string): void {
    conn.reader.detach();
    this.#reply(conn, { type: 'error', id, error: { code, message } }, true);
  }

  /** Closes a connection the limits gave up on (already forgotten by them), telling the peer why. */
  #closeByLimit(peer: number, verdict: LimitVerdict): void {
    this.#limits.remove(peer);
    const conn = this.#connections.get(peer);
    if (conn === undefined) return;
    const why = limitMessage(verdict, this.#limits.settings);
    this.#logRefusal(conn.uid, verdict, `connection ${peer} of uid ${conn.uid} closed: ${why}`);
    this.#refuse(conn, 0, 'ERR_PROTOCOL', `control socket: ${why}`);
  }

  #logRefusal(uid: number, verdict: LimitVerdict, message: string): void {
    const now = Date.now();
    const key = `${uid} ${verdict}`;
    if (now - (this.#refusalLogged.get(key) ?? -Infinity) < REFUSAL_LOG_INTERVAL_MS) return;
    this.#refusalLogged.set(key, now);
    logWarn(`${message} (logged once per ${REFUSAL_LOG_INTERVAL_MS / 1000} s)`);
  }

  /** A connection the parent accepted, named by the parent's id, with the uid and gid the kernel gave the parent. */
  #accept(socket: Socket, peer: number, cred: { uid: number; gid: number }): void {
    const admission = this.#limits.admit(peer, cred.uid, Date.now());
    for (const victim of admission.evict) this.#closeByLimit(victim, 'evicted');
    if (!admission.admitted) {
      const why = limitMessage('connections', this.#limits.settings);
      this.#logRefusal(cred.uid, 'connections', `refused a connection of uid ${cred.uid}: ${why}`);
      socket.on('error', () => socket.destroy());
      socket.write(encodeFrame({ type: 'error', id: 0, error: { code: 'ERR_PROTOCOL', message: `control socket: ${why}` } }));
      hangUp(socket);
      return;
    }
    const reader = readFrames(socket);
    const conn: Connection = { peer, socket, reader, uid: cred.uid, gid: cred.gid, pending: 0 };
    this.#connections.set(peer, conn);
    logDebug(`connection ${peer} from uid ${cred.uid}`);
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      this.#limits.remove(peer);
      this.#events.unsubscribe(peer);
      this.#displays.delete(peer);
      if (this.#connections.delete(peer)) this.send({ type: 'control.closed', peer });
      heapTrimSoon();
    });
    reader.on('held', (bytes) => {
      for (const victim of this.#limits.hold(peer, bytes)) this.#closeByLimit(victim, 'memory');
    });
    reader.on('protocol-error', (err) => this.#refuse(conn, 0, 'ERR_PROTOCOL', err.message));
    reader.on('message', (raw) => this.#request(conn, raw));
  }

  /** One request: read, gated (OpenBSD's control.c), then answered here, handed over with its socket, or forwarded. */
  #request(conn: Connection, raw: unknown): void {
    let request: ControlRequest;
    try {
      request = readRequest(raw);
    } catch (err) {
      if (err instanceof ProtocolError) this.#refuse(conn, requestIdOf(raw), err.code, err.message);
      else this.#refuse(conn, requestIdOf(raw), 'ERR_PROTOCOL', 'malformed request');
      return;
    }
    // Anything else from a non-root peer is EPERM and the connection closes.
    if (conn.uid !== 0 && !UNPRIVILEGED_REQUESTS.has(request.type)) {
      logWarn(`denied request ${request.type} from uid ${conn.uid}`);
      this.#refuse(conn, request.id, 'ERR_PERMISSION', `${request.type.replace(/\.request$/, '')}: permission denied`);
      return;
    }
    if (conn.pending >= MAX_PENDING_PER_CONNECTION) {
      this.#refuse(conn, request.id, 'ERR_PROTOCOL', 'too many requests in flight on one connection');
      return;
    }
    this.#limits.requestStarted(conn.peer);
    if (this.#handOver(conn, request)) return;
    // After the request the connection carries VNC: nothing more is read as frames (the parent answers or refuses).
    if (request.type === 'vm.display.request') this.#displays.set(conn.peer, conn.reader.switchToRaw());
    if (request.type === 'vm.events.request') return this.#subscribe(conn, request.id, request.target);
    if (request.type === 'vm.status.request' && this.#status.ready) {
      // Answered here from the parent's latest snapshot: no round trip through two more processes.
      const req = request;
      this.#reply(conn, () => this.#status.answer(req), false);
      this.#limits.requestAnswered(conn.peer, Date.now());
      return;
    }
    conn.pending++;
    this.send({ type: 'control.request', peer: conn.peer, uid: conn.uid, gid: conn.gid, request });
  }

  /**
   * `vmctl events`: the connection follows events from now on; it stays "in flight" for the limits, so it has no
   * deadline, but it still counts against its user's connections and is evicted first for root when busy ones are.
   */
  #subscribe(conn: Connection, id: number, target: string | undefined): void {
    if (target !== undefined && this.#status.ready && !this.#status.has(target)) {
      this.#reply(conn, { type: 'error', id, error: { code: 'ERR_VM_NOT_FOUND', message: `vm "${target}": not found` } }, true);
      return;
    }
    this.#reply(conn, { type: 'vm.events.response', id }, false);
    this.#events.subscribe(conn.peer, conn.socket, id, target);
  }

  #dropSubscriber(peer: number, reqId: number, message: string): void {
    const conn = this.#connections.get(peer);
    if (conn === undefined) return;
    logWarn(`connection ${peer} of uid ${conn.uid}: ${message}`);
    this.#refuse(conn, reqId, 'ERR_PROTOCOL', message);
  }

  /**
   * Console, capture, send and receive turn the connection into a byte stream: the socket itself goes to the parent
   * (then vmm or tcpdump) and leaves control. Anything a capture client sends after its request is ignored.
   */
  #handOver(conn: Connection, request: ControlRequest): boolean {
    const who = { peer: conn.peer, uid: conn.uid, gid: conn.gid };
    let msg: ControlToParent;
    if (request.type === 'vm.capture.request') {
      conn.reader.switchToRaw();
      msg = { type: 'control.capture', ...who, request };
    } else if (request.type === 'vm.console.request') {
      msg = { type: 'control.console', ...who, request, remainder: conn.reader.switchToRaw().toString('base64') };
    } else if (request.type === 'vm.send.request' || request.type === 'vm.receive.request' || request.type === 'vm.migrate.request') {
      msg = { type: 'control.stream', ...who, request, remainder: conn.reader.switchToRaw().toString('base64') };
    } else {
      return false;
    }
    this.#connections.delete(conn.peer);
    this.#limits.remove(conn.peer);
    this.send(msg, conn.socket);
    return true;
  }
}

/** Ends a connection after our last frame, and destroys it: its reading side is paused and would never end. */
function hangUp(socket: Socket): void {
  const timer = setTimeout(() => socket.destroy(), HANG_UP_GRACE_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  socket.end(() => socket.destroy());
}
