// The control role: the only door for users. Serves the control socket's connections (the parent binds the socket
// and passes each connection on unread), learns each peer's uid from the kernel, decodes every request, refuses what
// a non-root user may not do, answers status itself and forwards the rest to the parent.

import type { Socket } from 'node:net';
import { encodeFrame, MAX_RESPONSE_FRAME_BYTES, readFrames, type FrameReader } from '../share/frame.js';
import { isParentToControl, type ControlToParent, type ParentToControl } from '../share/ipc.js';
import { ProtocolError, UNPRIVILEGED_REQUESTS, type ControlResponse } from '../share/protocol.js';
import { readRequest, requestIdOf } from '../share/read-request.js';
import { logDebug, logSetVerbose, logWarn } from './log.js';
import { peerCred } from './native.js';
import { roleMain } from './proc.js';
import { StatusSnapshot } from './status.js';

const MAX_CONNECTIONS = 1024;
const MAX_PENDING_PER_CONNECTION = 32;

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
  let nextPeer = 1;
  let ready = false;
  const status = new StatusSnapshot();

  /** Writes one reply: a response to encode, or a frame already in pieces (a status listing) written without a copy. */
  const reply = (conn: Connection, response: ControlResponse | (() => Buffer[]), close: boolean): void => {
    if (conn.socket.destroyed) return;
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
    if (close) conn.socket.end();
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
          if (!ready) {
            ready = true;
            send({ type: 'control.ready' });
          }
          break;
        case 'control.connection':
          // Every client connection, accepted by the parent and passed on unread.
          if (handle !== undefined && !('listen' in handle)) accept(handle as Socket);
          break;
        case 'control.response': {
          const conn = connections.get(msg.peer);
          if (conn === undefined) return;
          conn.pending = Math.max(0, conn.pending - 1);
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
      for (const c of connections.values()) c.socket.destroy();
    },
  );

  function accept(socket: Socket): void {
    if (connections.size >= MAX_CONNECTIONS) {
      logWarn('too many connections: refusing one');
      socket.destroy();
      return;
    }
    let cred;
    try {
      cred = peerCred(socket);
    } catch (err) {
      logWarn(`peer credentials: ${err instanceof Error ? err.message : String(err)}`);
      socket.destroy();
      return;
    }
    const peer = nextPeer++;
    const reader = readFrames(socket);
    const conn: Connection = { socket, reader, uid: cred.uid, gid: cred.gid, pending: 0 };
    connections.set(peer, conn);
    logDebug(`connection ${peer} from uid ${cred.uid} pid ${cred.pid}`);
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      if (connections.delete(peer)) send({ type: 'control.closed', peer });
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
      if (request.type === 'vm.console.request') {
        // The connection becomes the console's byte stream: hand the socket itself to the parent (then vmm).
        const remainder = reader.switchToRaw();
        connections.delete(peer);
        send({ type: 'control.console', peer, uid: conn.uid, gid: conn.gid, request, remainder: remainder.toString('base64') }, socket);
        return;
      }
      if (request.type === 'vm.capture.request') {
        // The connection becomes the capture's pcap stream; anything the client sends after its request is ignored.
        reader.switchToRaw();
        connections.delete(peer);
        send({ type: 'control.capture', peer, uid: conn.uid, gid: conn.gid, request }, socket);
        return;
      }
      if (request.type === 'vm.send.request' || request.type === 'vm.receive.request') {
        // Like console: the connection becomes the stream, so the socket itself goes to the parent (then vmm).
        const remainder = reader.switchToRaw();
        connections.delete(peer);
        send({ type: 'control.stream', peer, uid: conn.uid, gid: conn.gid, request, remainder: remainder.toString('base64') }, socket);
        return;
      }
      if (request.type === 'vm.status.request' && status.ready) {
        // Answered here from the parent's latest snapshot: no round trip through two more processes.
        const req = request;
        reply(conn, () => status.answer(req), false);
        return;
      }
      conn.pending++;
      send({ type: 'control.request', peer, uid: conn.uid, gid: conn.gid, request });
    });
  }
}
