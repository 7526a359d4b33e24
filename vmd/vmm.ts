// The vmm role: owns each running guest's lifecycle over QMP, keeps its console buffered, notices when it dies.
// Unprivileged: it never opens images or touches the network; the parent spawns QEMU and tells vmm to adopt it.

import { connect, createServer, type Socket } from 'node:net';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { VmdError, toVmdError, type VmdErrorData } from '../share/errors.js';
import { encodeFrame } from '../share/frame.js';
import { chunkPrefix, encodeStreamError, StreamDecoder, STREAM_END, throttle } from '../share/stream.js';
import { isParentToVmm, type GuestHandle, type ParentToVmm, type VmmToParent } from '../share/ipc.js';
import type { VmState } from '../share/protocol.js';
import { logDebug, logSetVerbose, logWarn } from './log.js';
import { roleMain } from './proc.js';
import { connectRetry, QmpClient } from './qmp.js';
import { pidAlive } from './pid.js';

const CONSOLE_RING_BYTES = 64 * 1024;
const PID_POLL_MS = 250;
/** How long an attach waits for vmm's connection to a guest's console before it says to try again. */
const CONSOLE_CONNECT_WAIT_MS = 5000;
/** Where every guest's console socket reads into (callbacks are synchronous, so one buffer serves all). */
const consoleReadBuffer = Buffer.alloc(64 * 1024);

/**
 * The last N bytes a guest printed, so a late `vmctl console` still sees the boot. The store starts small and
 * doubles up to the capacity as output arrives: most guests print a few KiB at boot, and vmm keeps one per guest.
 */
export class RingBuffer {
  private buf: Buffer;
  private start = 0;
  private length = 0;

  constructor(readonly capacity: number, initial = 4096) {
    this.buf = Buffer.alloc(Math.min(capacity, initial));
  }

  /** Bytes held now (at most the capacity). */
  get size(): number {
    return this.length;
  }

  write(chunk: Buffer): void {
    if (chunk.length >= this.capacity) {
      if (this.buf.length < this.capacity) this.buf = Buffer.alloc(this.capacity);
      chunk.copy(this.buf, 0, chunk.length - this.capacity);
      this.start = 0;
      this.length = this.capacity;
      return;
    }
    const needed = this.length + chunk.length;
    if (needed > this.buf.length && this.buf.length < this.capacity) {
      let size = this.buf.length;
      while (size < needed && size < this.capacity) size *= 2;
      const grown = Buffer.alloc(Math.min(size, this.capacity));
      this.contents().copy(grown);
      this.buf = grown;
      this.start = 0;
    }
    const cap = this.buf.length;
    const end = (this.start + this.length) % cap;
    const first = Math.min(chunk.length, cap - end);
    chunk.copy(this.buf, end, 0, first);
    chunk.copy(this.buf, 0, first);
    if (needed > cap) {
      this.start = (this.start + needed - cap) % cap;
      this.length = cap;
    } else this.length = needed;
  }

  contents(): Buffer {
    const cap = this.buf.length;
    const end = this.start + this.length;
    if (end <= cap) return Buffer.from(this.buf.subarray(this.start, end));
    return Buffer.concat([this.buf.subarray(this.start), this.buf.subarray(0, end - cap)]);
  }
}

class Guest {
  qmp: QmpClient | null = null;
  console: Socket | null = null;
  attacher: Socket | null = null;
  readonly ring = new RingBuffer(CONSOLE_RING_BYTES);
  state: VmState = 'running';
  shutdownReason: string | null = null;
  exited = false;
  stopTimer: NodeJS.Timeout | null = null;
  /** A send or receive in progress holds the guest's migration. */
  transfer: 'send' | 'receive' | null = null;
  /** Attach requests waiting for the console connection (just after a start or a vmm restart). */
  consoleWaiters: Array<() => void> = [];

  constructor(readonly handle: GuestHandle) {}

  /** Runs the attach requests that waited for the console (connected now, or the guest gone). */
  wakeConsoleWaiters(): void {
    for (const w of this.consoleWaiters.splice(0)) w();
  }

  get vmId(): number {
    return this.handle.vmId;
  }
}

/** Runs the vmm role until the parent goes away; guests keep running when it does. */
export function vmmMain(): void {
  const guests = new Map<number, Guest>();
  let stopTimeoutMs = 30_000;
  // query-migrate states in which the migration is still going on.
  const MIGRATING = ['setup', 'active', 'pre-switchover', 'device', 'wait-unplug', 'cancelling'];
  // Receive connections by VM id, kept until the parent says what the last reply is (also when the guest is gone).
  const receivers = new Map<number, Socket>();

  const send = roleMain<ParentToVmm, VmmToParent>(
    isParentToVmm,
    (msg, handle) => {
      dispatch(msg, handle as Socket | undefined).catch((err: unknown) => logWarn(`${msg.type}: ${toVmdError(err).message}`));
    },
    () => {
      // Leaving guests running is the point: only our connections to them close.
      for (const g of guests.values()) {
        g.qmp?.close();
        g.console?.destroy();
        g.attacher?.destroy();
      }
    },
  );

  const result = (req: number, error: VmdErrorData | null, state?: VmState): void => {
    send(state === undefined ? { type: 'vm.result', req, error } : { type: 'vm.result', req, error, state });
  };

  const guestOf = (vmId: number): Guest => {
    const g = guests.get(vmId);
    if (g === undefined || g.exited) throw new VmdError('ERR_VM_NOT_RUNNING', `vm ${vmId}: not running`);
    return g;
  };

  async function dispatch(msg: ParentToVmm, handle: Socket | undefined): Promise<void> {
    switch (msg.type) {
      case 'vmm.config':
        logSetVerbose(msg.verbose);
        stopTimeoutMs = msg.stopTimeoutMs;
        return;
      case 'log.verbose':
        logSetVerbose(msg.level);
        return;
      case 'vm.adopt':
        try {
          const state = await adopt(msg.guest);
          result(msg.req, null, state);
        } catch (err) {
          result(msg.req, toVmdError(err, 'ERR_QEMU').toJSON());
        }
        return;
      case 'vm.stop':
        try {
          stop(guestOf(msg.vmId), msg.force);
          result(msg.req, null);
        } catch (err) {
          result(msg.req, toVmdError(err).toJSON());
        }
        return;
      case 'vm.pause':
      case 'vm.unpause':
        try {
          const g = guestOf(msg.vmId);
          if (g.qmp === null) throw new VmdError('ERR_QEMU', `vm ${g.handle.name}: no qmp connection`);
          await g.qmp.execute(msg.type === 'vm.pause' ? 'stop' : 'cont');
          g.state = msg.type === 'vm.pause' ? 'paused' : 'running';
          result(msg.req, null, g.state);
        } catch (err) {
          result(msg.req, toVmdError(err, 'ERR_QEMU').toJSON());
        }
        return;
      case 'vm.console.attach':
        if (handle === undefined) return;
        attach(msg.vmId, msg.reqId, msg.name, handle, Buffer.from(msg.remainder, 'base64'));
        return;
      case 'vm.forget': {
        const g = guests.get(msg.vmId);
        if (g !== undefined) finish(g, 'forgotten', false);
        return;
      }
      case 'vm.send':
      case 'vm.receive': {
        const client = handle;
        if (client === undefined) {
          result(msg.req, { code: 'ERR_INTERNAL', message: `vm ${msg.vmId}: ${msg.type}: no connection` });
          return;
        }
        client.on('error', () => client.destroy());
        // The parent words a receive's last reply; a send that fails before its stream began is answered here.
        if (msg.type === 'vm.receive') receivers.set(msg.vmId, client);
        let g: Guest | undefined;
        try {
          g = guestOf(msg.vmId);
          if (g.transfer !== null) throw new VmdError('ERR_INVALID', `vm "${g.handle.name}": a ${g.transfer} is already in progress`);
        } catch (err) {
          const error = toVmdError(err).toJSON();
          if (msg.type === 'vm.send') client.end(encodeFrame({ type: 'error', id: (msg.response as { id: number }).id, error }));
          result(msg.req, error);
          return;
        }
        try {
          if (msg.type === 'vm.send') await sendGuest(g, client, msg.response, Buffer.from(msg.header, 'base64'));
          else await receiveGuest(g, client, msg.response, Buffer.from(msg.remainder, 'base64'));
          result(msg.req, null, msg.type === 'vm.receive' ? g.state : undefined);
        } catch (err) {
          result(msg.req, toVmdError(err, 'ERR_QEMU').toJSON());
        }
        return;
      }
      case 'vm.stream.reply': {
        const client = receivers.get(msg.vmId);
        receivers.delete(msg.vmId);
        if (client !== undefined && !client.destroyed) client.end(encodeFrame(msg.response));
        return;
      }
    }
  }


  /** Polls query-migrate until the migration is over; returns its final status and QEMU's error text. */
  async function migrationOutcome(g: Guest, timeoutMs = 60_000): Promise<{ status: string; error: string }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const q = (await g.qmp!.execute('query-migrate')) as { status?: string; 'error-desc'?: string };
      const status = q.status ?? 'none';
      if (!MIGRATING.includes(status)) return { status, error: q['error-desc'] ?? '' };
      if (Date.now() > deadline) return { status: `still ${status} after ${Math.round(timeoutMs / 1000)} s`, error: '' };
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Rejects when QEMU reports the migration failed (e.g. before it ever connected); stops polling once `until` settles. */
  async function migrationFailure(g: Guest, until: Promise<unknown>): Promise<never> {
    let settled = false;
    until.then(() => { settled = true; }, () => { settled = true; });
    for (;;) {
      await new Promise((r) => setTimeout(r, 100));
      if (settled) return new Promise<never>(() => undefined);
      const q = (await g.qmp!.execute('query-migrate')) as { status?: string; 'error-desc'?: string };
      if (q.status === 'failed' || q.status === 'cancelled') {
        throw new VmdError('ERR_QEMU', `vm "${g.handle.name}": send: migration ${q.status}${q['error-desc'] ? `: ${q['error-desc']}` : ''}`);
      }
    }
  }

  /**
   * `vmctl send`: pause, let QEMU migrate into a unix socket of ours (QEMU's sandbox forbids exec:), chunk its
   * bytes onto the client connection, then quit the guest. On any failure the guest resumes as it was.
   */
  async function sendGuest(g: Guest, client: Socket, response: unknown, header: Buffer): Promise<void> {
    const qmp = g.qmp;
    const name = g.handle.name;
    if (qmp === null) throw new VmdError('ERR_QEMU', `vm "${name}": no qmp connection`);
    g.transfer = 'send';
    const wasRunning = g.state === 'running';
    const path = join(dirname(g.handle.qmpSocket), 'migrate.sock');
    rmSync(path, { force: true });
    const server = createServer();
    let qemu: Socket | null = null;
    let failTransfer: (err: Error) => void = () => undefined;
    const onClientClose = (): void => failTransfer(new VmdError('ERR_INTERRUPTED', `vm "${name}": send: the receiving end went away`));
    client.on('close', onClientClose);
    try {
      client.write(encodeFrame(response));
      client.write(header);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => resolve());
      });
      const transferred = new Promise<void>((resolve, reject) => {
        failTransfer = reject;
        server.once('connection', (conn: Socket) => {
          qemu = conn;
          server.close();
          conn.on('data', (data: Buffer) => {
            client.write(chunkPrefix(data.length));
            client.write(data);
            throttle(client, conn);
          });
          conn.on('end', () => resolve());
          conn.on('error', (err) => reject(new VmdError('ERR_QEMU', `vm "${name}": send: migration stream: ${err.message}`)));
        });
      });
      if (client.destroyed) throw new VmdError('ERR_INTERRUPTED', `vm "${name}": send: the receiving end went away`);
      if (wasRunning) await qmp.execute('stop');
      // The guest is paused, so there is no downtime to protect: QEMU's default rate limit only slows the send.
      await qmp.execute('migrate-set-parameters', { 'max-bandwidth': 8 * 1024 ** 3 });
      await qmp.execute('migrate', { uri: `unix:${path}` });
      await Promise.race([transferred, migrationFailure(g, transferred)]);
      const outcome = await migrationOutcome(g);
      if (outcome.status !== 'completed') {
        throw new VmdError('ERR_QEMU', `vm "${name}": send: migration ${outcome.status}${outcome.error === '' ? '' : `: ${outcome.error}`}`);
      }
    } catch (err) {
      server.close();
      (qemu as Socket | null)?.destroy();
      await qmp.execute('migrate_cancel').catch(() => undefined);
      await migrationOutcome(g).catch(() => undefined);
      if (wasRunning) {
        await qmp.execute('cont').catch((e: unknown) => logWarn(`vm "${name}": cannot resume after a failed send: ${toVmdError(e).message}`));
      }
      g.transfer = null;
      client.off('close', onClientClose);
      if (!client.destroyed) client.end(encodeStreamError(toVmdError(err, 'ERR_QEMU').toJSON()));
      throw err;
    } finally {
      rmSync(path, { force: true });
    }
    // The guest now lives in the stream: this QEMU goes, and only then does the reader learn the stream is whole,
    // so a receiver on this host finds the disks free and the sender's links on their way out.
    client.off('close', onClientClose);
    g.state = 'stopping';
    g.shutdownReason = 'sent';
    await quitAndWait(g);
    finish(g, 'sent', true);
    client.end(STREAM_END);
  }

  /** Quits a guest's QEMU and waits (bounded) until the process is gone. */
  async function quitAndWait(g: Guest): Promise<void> {
    const pid = g.handle.pid;
    await g.qmp?.execute('quit', undefined, { timeoutMs: 2000 }).catch(() => undefined);
    const deadline = Date.now() + 5000;
    while (pidAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (pidAlive(pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
      while (pidAlive(pid) && Date.now() < deadline + 2000) await new Promise((r) => setTimeout(r, 20));
    }
  }

  /**
   * `vmctl receive`: QEMU (started paused with -incoming defer) listens on a unix socket; the stream's body is
   * de-chunked into it. Only a complete stream, fully loaded by QEMU, is resumed.
   */
  async function receiveGuest(g: Guest, client: Socket, response: unknown, remainder: Buffer): Promise<void> {
    const qmp = g.qmp;
    const name = g.handle.name;
    if (qmp === null) throw new VmdError('ERR_QEMU', `vm "${name}": no qmp connection`);
    g.transfer = 'receive';
    // The client half-closes after the body and waits for the last reply: keep our side open for it.
    client.allowHalfOpen = true;
    const path = join(dirname(g.handle.qmpSocket), 'incoming.sock');
    const decoder = new StreamDecoder({ body: true });
    let qemu: Socket | null = null;
    try {
      await qmp.execute('migrate-incoming', { uri: `unix:${path}` });
      qemu = await connectRetry(path, Date.now() + 5000, 'migration socket');
      const conn = qemu;
      client.write(encodeFrame(response));
      await new Promise<void>((resolve, reject) => {
        let over = false;
        let qemuGone = false;
        const stop = (err: Error | null): void => {
          if (over) return;
          over = true;
          client.off('data', feed);
          if (err === null) resolve();
          else reject(err);
        };
        const feed = (chunk: Buffer): void => {
          let events;
          try {
            events = decoder.push(chunk);
          } catch (err) {
            stop(new VmdError('ERR_STREAM', `vm "${name}": receive: ${toVmdError(err).message.replace(/^stream: /, 'stream ')}`));
            return;
          }
          for (const ev of events) {
            if (ev.kind === 'data') {
              if (qemuGone) {
                stop(new VmdError('ERR_STREAM', `vm "${name}": receive: qemu finished loading before the end of the stream`, { hint: 'the stream holds more than one guest state: it is corrupt' }));
                return;
              }
              conn.write(ev.data);
              throttle(conn, client);
            } else if (ev.kind === 'end') {
              conn.end();
              stop(null);
            } else if (ev.kind === 'error') {
              stop(new VmdError('ERR_STREAM', `vm "${name}": receive: the sender failed: ${ev.error.message}`));
            } else {
              stop(new VmdError('ERR_STREAM', `vm "${name}": receive: a second header inside the stream`));
            }
          }
        };
        const atEof = (): void => {
          if (over) return;
          try {
            decoder.finish();
          } catch (err) {
            stop(new VmdError('ERR_STREAM', `vm "${name}": receive: ${toVmdError(err).message.replace(/^stream: /, 'stream ')}`, { hint: 'the stream was cut short; nothing was kept' }));
          }
        };
        if (remainder.length > 0) feed(remainder);
        client.on('data', feed);
        client.on('end', atEof);
        client.on('close', atEof);
        // QEMU closes its end once it has read the whole state, which may be before the end marker arrives (a
        // sender writes it only after its guest is gone): not an error by itself. More state after it is, and
        // a QEMU that failed to load says so in its status below.
        conn.on('error', () => { qemuGone = true; });
        conn.on('close', () => { qemuGone = true; });
        client.resume();
      });
      // QEMU has all the bytes; with -S it ends in 'paused' once loaded, and exits if the state does not load.
      const deadline = Date.now() + 60_000;
      for (;;) {
        const st = (await qmp.execute('query-status')) as { status?: string };
        if (st.status === 'paused' || st.status === 'postmigrate') break;
        if (st.status !== 'inmigrate' && st.status !== 'prelaunch') throw new VmdError('ERR_QEMU', `vm "${name}": receive: qemu is ${st.status ?? 'in an unknown state'}`);
        if (Date.now() > deadline) throw new VmdError('ERR_QEMU', `vm "${name}": receive: qemu did not finish loading the guest`);
        await new Promise((r) => setTimeout(r, 20));
      }
      g.state = 'paused';
      await qmp.execute('cont');
      g.state = 'running';
    } catch (err) {
      (qemu as Socket | null)?.destroy();
      client.pause();
      throw err;
    } finally {
      g.transfer = null;
      rmSync(path, { force: true });
    }
  }

  async function adopt(h: GuestHandle): Promise<VmState> {
    const old = guests.get(h.vmId);
    if (old !== undefined && !old.exited && old.handle.pid === h.pid) return old.state;
    // A leftover entry for an earlier QEMU of this VM must not hold on to the new one's sockets.
    if (old !== undefined) finish(old, 'replaced', false);
    const g = new Guest(h);
    guests.set(h.vmId, g);
    try {
      g.qmp = await QmpClient.connect(h.qmpSocket, { timeoutMs: h.adopted ? 2000 : 10_000 });
    } catch (err) {
      guests.delete(h.vmId);
      throw new VmdError('ERR_QEMU', `vm "${h.name}": qmp ${h.qmpSocket}: ${toVmdError(err).message}`);
    }
    g.qmp.on('event', (name: string, data: unknown) => {
      if (name === 'SHUTDOWN') {
        // A sent guest's quit is the end of a send, and is logged and recorded as such.
        if (g.transfer === 'send') return;
        const reason = (data as { reason?: unknown } | undefined)?.reason;
        g.shutdownReason = typeof reason === 'string' ? reason : 'shutdown';
      } else if (name === 'STOP' && g.state === 'running') {
        g.state = 'paused';
        send({ type: 'vm.state', vmId: g.vmId, state: g.state });
      } else if (name === 'RESUME' && g.state === 'paused') {
        g.state = 'running';
        send({ type: 'vm.state', vmId: g.vmId, state: g.state });
      }
    });
    g.qmp.on('close', () => watchExit(g));
    const status = (await g.qmp.execute('query-status')) as { status?: string; running?: boolean };
    // A guest still waiting for its state after a vmd restart was being received: that receive is gone with the
    // old vmd, and the guest has nothing to run. Refusing it makes the parent terminate it and clean up.
    if (h.adopted && status.status === 'inmigrate') {
      g.exited = true;
      g.qmp.destroy();
      guests.delete(h.vmId);
      throw new VmdError('ERR_QEMU', `vm "${h.name}": an unfinished receive`);
    }
    g.state = status.running === false && status.status === 'paused' ? 'paused' : 'running';
    connectConsole(g);
    logDebug(`vm ${h.vmId} "${h.name}" pid ${h.pid} ${h.adopted ? 're-adopted' : 'adopted'} (${g.state})`);
    return g.state;
  }

  function connectConsole(g: Guest, attempt = 0): void {
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
        setTimeout(() => connectConsole(g, attempt + 1), 100);
      }
    });
  }

  function attach(vmId: number, reqId: number, name: string, client: Socket, remainder: Buffer): void {
    const g = guests.get(vmId);
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
        attach(vmId, reqId, name, client, remainder);
      };
      g.consoleWaiters.push(retry);
      return;
    }
    g.attacher = client;
    client.write(encodeFrame({ type: 'vm.console.response', id: reqId, vmId, name }));
    const tail = g.ring.contents();
    if (tail.length > 0) client.write(tail);
    if (remainder.length > 0) g.console.write(remainder);
    client.on('data', (chunk: Buffer) => g.console?.write(chunk));
    client.on('close', () => {
      if (g.attacher === client) g.attacher = null;
    });
    client.resume();
  }

  function stop(g: Guest, force: boolean): void {
    if (g.state === 'stopping' && !force) {
      throw new VmdError('ERR_VM_STOPPING', `vm "${g.handle.name}": already stopping`);
    }
    g.state = 'stopping';
    if (g.stopTimer !== null) clearTimeout(g.stopTimer);
    if (force) {
      kill(g);
      return;
    }
    g.qmp?.execute('system_powerdown').catch((err: unknown) => logDebug(`vm ${g.vmId} powerdown: ${toVmdError(err).message}`));
    // ACPI is a request the guest may ignore: after the timeout, quit for real (OpenBSD's rc waits 30 s too).
    g.stopTimer = setTimeout(() => {
      logWarn(`vm "${g.handle.name}": no shutdown after ${Math.round(stopTimeoutMs / 1000)} s, terminating`);
      kill(g);
    }, stopTimeoutMs);
  }

  function kill(g: Guest): void {
    const pid = g.handle.pid;
    g.qmp?.execute('quit', undefined, { timeoutMs: 1000 }).catch(() => undefined);
    setTimeout(() => {
      if (pidAlive(pid)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone meanwhile */
        }
      }
    }, 1500).unref();
  }

  function watchExit(g: Guest): void {
    if (g.exited) return;
    const started = Date.now();
    const poll = (): void => {
      if (g.exited) return;
      if (!pidAlive(g.handle.pid)) {
        finish(g, g.shutdownReason ?? 'killed', true);
        return;
      }
      // QMP closed but the process lingers: it is wedged, finish it.
      if (Date.now() - started > 5000) {
        try {
          process.kill(g.handle.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      setTimeout(poll, 50);
    };
    poll();
  }

  function finish(g: Guest, reason: string, report: boolean): void {
    if (g.exited) return;
    g.exited = true;
    if (g.stopTimer !== null) clearTimeout(g.stopTimer);
    g.qmp?.close();
    g.console?.destroy();
    g.attacher?.end();
    guests.delete(g.vmId);
    g.wakeConsoleWaiters();
    if (report) {
      logDebug(`vm ${g.vmId} "${g.handle.name}" exited: ${reason}`);
      send({ type: 'vm.exited', vmId: g.vmId, pid: g.handle.pid, reason });
    }
  }

  // A guest killed from outside may not close QMP promptly if it was never connected: poll pids too.
  setInterval(() => {
    for (const g of guests.values()) {
      if (!g.exited && !pidAlive(g.handle.pid)) finish(g, g.shutdownReason ?? 'killed', true);
    }
  }, PID_POLL_MS);

  send({ type: 'vmm.ready' });
}
