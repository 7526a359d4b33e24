// `vmctl relay [socket]`: what `vmctl -H host` runs on that host under ssh. It connects to the host's vmd socket and
// copies bytes both ways, nothing more, so vmd sees the ssh user as the peer (SO_PEERCRED) and checks it as any local one.

import { connect as netConnect, type Socket } from 'node:net';
import { socketPath } from '../share/paths.js';
import { strerror } from './errors.js';
import type { Io } from './vmctl.js';

/** Connects to vmd's socket, or fails with OpenBSD's `connect: PATH: strerror` (the client on the far side shows it). */
function connectSocket(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ path });
    socket.once('error', (err: NodeJS.ErrnoException) => reject(new Error(`connect: ${path}: ${strerror(err.code)}`)));
    socket.once('connect', () => {
      socket.removeAllListeners('error');
      resolve(socket);
    });
  });
}

/**
 * Copies stdin to the socket and the socket to stdout until vmd closes its side. The end of stdin (the client went
 * away, or `receive` finished sending) is passed on as a half-close, because vmd may still answer after it.
 */
function copyBoth(io: Io, socket: Socket): Promise<number> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (code: number): void => {
      if (done) return;
      done = true;
      io.stdin.unpipe(socket);
      socket.destroy();
      resolve(code);
    };
    io.stdin.pipe(socket, { end: true });
    socket.pipe(io.stdout, { end: false });
    socket.on('end', () => io.stdout.write('', () => finish(0)));
    socket.on('error', () => finish(1));
    socket.on('close', () => finish(0));
    // The reader on the client side is gone: nothing more can be delivered.
    io.stdout.on('error', () => finish(1));
  });
}

/** Runs the relay: the only operand is the socket's path (default as for any vmctl: VMD_SOCKET, then /run/vmd.sock). */
export async function runRelay(args: readonly string[], io: Io): Promise<number> {
  if (args.length > 1 || (args[0] ?? 'x').length === 0 || (args[0] ?? '').startsWith('-')) {
    io.stderr.write('usage:\tvmctl relay [socket]\n');
    return 1;
  }
  const path = args[0] ?? socketPath(io.env);
  let socket: Socket;
  try {
    socket = await connectSocket(path);
  } catch (err) {
    io.stderr.write(`vmctl: ${(err as Error).message}\n`);
    return 1;
  }
  return copyBoth(io, socket);
}
