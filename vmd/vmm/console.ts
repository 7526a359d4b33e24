// Guest consoles in vmm: one connection per guest to QEMU's serial socket, read into the guest's backlog, and
// the one `vmctl console` attached to it at a time (the client socket arrives from the parent as an IPC handle).

import { connect, type Socket } from 'node:net';
import { encodeFrame } from '../../share/frame.js';
import { logDebug } from '../log.js';
import { pidAlive } from '../pid.js';
import type { Guest, Vmm } from './guests.js';

/** How long an attach waits for vmm's connection to a guest's console before it says to try again. */
const CONSOLE_CONNECT_WAIT_MS = 5000;
/** Where every guest's console socket reads into (callbacks are synchronous, so one buffer serves all). */
const consoleReadBuffer = Buffer.alloc(64 * 1024);

/** Connects to a guest's console socket, and again (bounded) whenever it drops while the guest lives. */
export function consoleConnect(g: Guest, attempt = 0): void {
  if (g.exited) return;
  // QEMU writes the serial console a byte at a time (a kernel's boot log is ~20,000 writes), so each read is
  // made cheap: `onread` reads into one shared buffer and calls back without the stream machinery or a Buffer
  // per read (this process runs without a JIT). The ring copies the bytes; an attached client gets what
  // arrived in one event-loop turn as one write.
  let pending: Buffer[] = [];
  const sock = connect({
    path: g.handle.consoleSocket,
    onread: {
      buffer: consoleReadBuffer,
      callback: (n: number, buf: Uint8Array): boolean => {
        const bytes = Buffer.from(buf.buffer, buf.byteOffset, n);
        g.ring.write(bytes);
        if (g.attacher === null) return true;
        if (pending.length === 0) {
          setImmediate(() => {
            const out = pending.length === 1 ? pending[0]! : Buffer.concat(pending);
            pending = [];
            g.attacher?.write(out);
          });
        }
        pending.push(Buffer.from(bytes));
        return true;
      },
    },
  });
  sock.on('connect', () => {
    g.console = sock;
    g.wakeConsoleWaiters();
  });
  sock.on('error', (err) => {
    logDebug(`vm ${g.vmId} console: ${err.message}`);
  });
  sock.on('close', () => {
    if (g.console === sock) g.console = null;
    if (!g.exited && attempt < 20 && pidAlive(g.handle.pid)) {
      setTimeout(() => consoleConnect(g, attempt + 1), 100);
    }
  });
}

/** A `vmctl console` request as vmm gets it: the client's connection and what it sent after its request. */
export interface ConsoleAttach {
  readonly vmId: number;
  readonly reqId: number;
  readonly name: string;
  readonly client: Socket;
  readonly remainder: Buffer;
}

/** Attaches a client to a guest's console: the backlog first, then both directions live; one client at a time. */
export function consoleAttach(vmm: Vmm, req: ConsoleAttach): void {
  const { vmId, reqId, name, client } = req;
  const g = vmm.guests.get(vmId);
  const fail = (code: 'ERR_CONSOLE_BUSY' | 'ERR_VM_NOT_RUNNING' | 'ERR_CONSOLE', message: string): void => {
    client.end(encodeFrame({ type: 'error', id: reqId, error: { code, message } }));
  };
  client.on('error', () => client.destroy());
  if (g === undefined || g.exited) return fail('ERR_VM_NOT_RUNNING', `vm "${name}": not running`);
  if (g.attacher !== null && !g.attacher.destroyed) {
    return fail('ERR_CONSOLE_BUSY', `console of vm "${name}": already attached by another vmctl`);
  }
  if (g.console === null) {
    // Connecting to QEMU's console socket takes a moment after a start or a vmm restart: wait for it, bounded.
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      g.consoleWaiters = g.consoleWaiters.filter((w) => w !== retry);
      fail('ERR_CONSOLE', `console of vm "${name}": not connected yet, try again`);
    }, CONSOLE_CONNECT_WAIT_MS);
    const retry = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (client.destroyed) return;
      if (g.exited) return fail('ERR_VM_NOT_RUNNING', `vm "${name}": not running`);
      consoleAttach(vmm, req);
    };
    g.consoleWaiters.push(retry);
    return;
  }
  consolePipe(g, req);
}

/** Joins an accepted client to a connected console. */
function consolePipe(g: Guest, req: ConsoleAttach): void {
  const { client } = req;
  g.attacher = client;
  client.write(encodeFrame({ type: 'vm.console.response', id: req.reqId, vmId: req.vmId, name: req.name }));
  const tail = g.ring.contents();
  if (tail.length > 0) client.write(tail);
  if (req.remainder.length > 0) g.console?.write(req.remainder);
  client.on('data', (chunk: Buffer) => g.console?.write(chunk));
  client.on('close', () => {
    if (g.attacher === client) g.attacher = null;
  });
  client.resume();
}
