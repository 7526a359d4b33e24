// The control role: the only door for users. Serves the control socket's connections (the parent binds the socket,
// learns each client's uid from the kernel and passes the connection on unread), decodes every request, refuses what
// a non-root user may not do, answers status itself and forwards the rest to the parent. What each peer may hold
// (connections, memory, time) is bounded by vmd/control/limits.ts, so a flood by users never locks root out.

import type { Socket } from 'node:net';
import { encodeFrame, MAX_RESPONSE_FRAME_BYTES, readFrames, type FrameReader } from '../share/frame.js';
import { isParentToControl, type ControlToParent, type ParentToControl } from '../share/ipc.js';
import { ProtocolError, UNPRIVILEGED_REQUESTS, type ControlResponse } from '../share/protocol.js';
import { readRequest, requestIdOf } from '../share/read-request.js';
import { ControlLimits, controlLimitsFrom, limitMessage, openFilesLimit, type LimitVerdict } from './control/limits.js';
import { logDebug, logSetVerbose, logWarn } from './log.js';
import { roleMain } from './proc.js';
import { StatusSnapshot } from './status.js';

const MAX_PENDING_PER_CONNECTION = 32;
/** A closing connection whose peer does not take our last frame is destroyed after this long anyway. */
const HANG_UP_GRACE_MS = 1000;
/** Refusals are logged at most this often per uid and reason: a flood must not become a flood of log lines. */
const REFUSAL_LOG_INTERVAL_MS = 10_000;

interface Connection {
  readonly socket: Socket;
  readonly reader: FrameReader;
  readonly uid: number;
  readonly gid: number;
  pending: number;
}

/** Runs the control role until the parent goes away. */
export function controlMain(): void {
  const connections = new Map<number, Connection>();
  let ready = false;
  const status = new StatusSnapshot();
  const limits = new ControlLimits(controlLimitsFrom(process.env, openFilesLimit()), []);
  const refusalLogged = new Map<string, number>();
  // The deadline is checked a few times per timeout, at most once a second: cheap for a thousand connections.
  const sweep = setInterval(() => {
    for (const id of limits.expired(Date.now())) closeByLimit(id, 'timeout');
  }, Math.max(100, Math.min(1000, limits.settings.requestTimeoutMs / 4)));
  sweep.unref();

  /** Writes one reply: a response to encode, or a frame already in pieces (a status listing) written without a copy. */
  const reply = (conn: Connection, response: ControlResponse | (() => Buffer[]), close: boolean): void => {
    if (conn.socket.destroyed || conn.socket.writableEnded) return;
    try {
      if (typeof response === 'function') {
        const pieces = response();
        conn.socket.cork();
        for (const piece of pieces) conn.socket.write(piece);
        conn.socket.uncork();
      } else {
        conn.socket.write(encodeFrame(response, { maxFrameBytes: MAX_RESPONSE_FRAME_BYTES }));
      }
    } catch (err) {
      logWarn(`reply: ${err instanceof Error ? err.message : String(err)}`);
      close = true;
    }
    if (close) hangUp(conn.socket);
    // A peer that does not read its replies stops being read: its requests must not pile replies up in memory.
    else if (conn.socket.writableNeedDrain && conn.reader.attached) {
      conn.socket.pause();
      conn.socket.once('drain', () => { if (conn.reader.attached) conn.socket.resume(); });
    }
  };

  const refuse = (conn: Connection, id: number, code: 'ERR_PROTOCOL' | 'ERR_VERSION' | 'ERR_PERMISSION', message: string): void => {
    conn.reader.detach();
    reply(conn, { type: 'error', id, error: { code, message } }, true);
  };

  const send = roleMain<ParentToControl, ControlToParent>(
    isParentToControl,
    (msg, handle) => {
      switch (msg.type) {
        case 'control.config':
          logSetVerbose(msg.verbose);
          if (msg.socketOwnerUid !== undefined) limits.privilege(msg.socketOwnerUid);
          if (!ready) {
            ready = true;
            send({ type: 'control.ready' });
          }
          break;
        case 'control.connection':
          // Every client connection, accepted by the parent and passed on unread.
          if (handle !== undefined && !('listen' in handle)) accept(handle as Socket, msg.peer, { uid: msg.uid, gid: msg.gid });
          break;
        case 'control.response': {
          const conn = connections.get(msg.peer);
          if (conn === undefined) return;
          conn.pending = Math.max(0, conn.pending - 1);
          limits.requestAnswered(msg.peer, Date.now());
          reply(conn, msg.response, msg.close);
          break;
        }
        case 'control.status':
          status.update(msg.vms, msg.warnings);
          break;
        case 'log.verbose':
          logSetVerbose(msg.level);
          break;
      }
    },
    () => {
      clearInterval(sweep);
      for (const c of connections.values()) c.socket.destroy();
    },
  );

  /** Ends a connection after our last frame, and destroys it: its reading side is paused and would never end. */
  function hangUp(socket: Socket): void {
    const timer = setTimeout(() => socket.destroy(), HANG_UP_GRACE_MS);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
    socket.end(() => socket.destroy());
  }

  /** Closes a connection the limits gave up on (already forgotten by them), telling the peer why. */
  function closeByLimit(peer: number, verdict: LimitVerdict): void {
    limits.remove(peer);
    const conn = connections.get(peer);
    if (conn === undefined) return;
    logRefusal(conn.uid, verdict, `connection ${peer} of uid ${conn.uid} closed: ${limitMessage(verdict, limits.settings)}`);
    refuse(conn, 0, 'ERR_PROTOCOL', `control socket: ${limitMessage(verdict, limits.settings)}`);
  }

  function logRefusal(uid: number, verdict: LimitVerdict, message: string): void {
    const now = Date.now();
    const key = `${uid} ${verdict}`;
    if (now - (refusalLogged.get(key) ?? -Infinity) < REFUSAL_LOG_INTERVAL_MS) return;
    refusalLogged.set(key, now);
    logWarn(`${message} (logged once per ${REFUSAL_LOG_INTERVAL_MS / 1000} s)`);
  }

  /** A connection the parent accepted, named by the parent's id, with the uid and gid the kernel gave the parent. */
  function accept(socket: Socket, peer: number, cred: { uid: number; gid: number }): void {
    const admission = limits.admit(peer, cred.uid, Date.now());
    for (const victim of admission.evict) closeByLimit(victim, 'evicted');
    if (!admission.admitted) {
      logRefusal(cred.uid, 'connections', `refused a connection of uid ${cred.uid}: ${limitMessage('connections', limits.settings)}`);
      socket.on('error', () => socket.destroy());
      socket.write(encodeFrame({ type: 'error', id: 0, error: { code: 'ERR_PROTOCOL', message: `control socket: ${limitMessage('connections', limits.settings)}` } }));
      hangUp(socket);
      return;
    }
    const reader = readFrames(socket);
    const conn: Connection = { socket, reader, uid: cred.uid, gid: cred.gid, pending: 0 };
    connections.set(peer, conn);
    logDebug(`connection ${peer} from uid ${cred.uid}`);
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      limits.remove(peer);
      if (connections.delete(peer)) send({ type: 'control.closed', peer });
    });
    reader.on('held', (bytes) => {
      for (const victim of limits.hold(peer, bytes)) closeByLimit(victim, 'memory');
    });
    reader.on('protocol-error', (err) => refuse(conn, 0, 'ERR_PROTOCOL', err.message));
    reader.on('message', (raw) => {
      let request;
      try {
        request = readRequest(raw);
      } catch (err) {
        if (err instanceof ProtocolError) refuse(conn, requestIdOf(raw), err.code, err.message);
        else refuse(conn, requestIdOf(raw), 'ERR_PROTOCOL', 'malformed request');
        return;
      }
      // OpenBSD's control.c gate: anything else from a non-root peer is EPERM and the connection closes.
      if (conn.uid !== 0 && !UNPRIVILEGED_REQUESTS.has(request.type)) {
        logWarn(`denied request ${request.type} from uid ${conn.uid}`);
        refuse(conn, request.id, 'ERR_PERMISSION', `${request.type.replace(/\.request$/, '')}: permission denied`);
        return;
      }
      if (conn.pending >= MAX_PENDING_PER_CONNECTION) {
        refuse(conn, request.id, 'ERR_PROTOCOL', 'too many requests in flight on one connection');
        return;
      }
      limits.requestStarted(peer);
      if (request.type === 'vm.console.request') {
        // The connection becomes the console's byte stream: hand the socket itself to the parent (then vmm).
        const remainder = reader.switchToRaw();
        connections.delete(peer);
        limits.remove(peer);
        send({ type: 'control.console', peer, uid: conn.uid, gid: conn.gid, request, remainder: remainder.toString('base64') }, socket);
        return;
      }
      if (request.type === 'vm.capture.request') {
        // The connection becomes the capture's pcap stream; anything the client sends after its request is ignored.
        reader.switchToRaw();
        connections.delete(peer);
        limits.remove(peer);
        send({ type: 'control.capture', peer, uid: conn.uid, gid: conn.gid, request }, socket);
        return;
      }
      if (request.type === 'vm.send.request' || request.type === 'vm.receive.request') {
        // Like console: the connection becomes the stream, so the socket itself goes to the parent (then vmm).
        const remainder = reader.switchToRaw();
        connections.delete(peer);
        limits.remove(peer);
        send({ type: 'control.stream', peer, uid: conn.uid, gid: conn.gid, request, remainder: remainder.toString('base64') }, socket);
        return;
      }
      if (request.type === 'vm.status.request' && status.ready) {
        // Answered here from the parent's latest snapshot: no round trip through two more processes.
        const req = request;
        reply(conn, () => status.answer(req), false);
        limits.requestAnswered(peer, Date.now());
        return;
      }
      conn.pending++;
      send({ type: 'control.request', peer, uid: conn.uid, gid: conn.gid, request });
    });
  }
}
