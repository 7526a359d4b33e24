// `vmctl receive` in vmm: QEMU (started paused with -incoming defer) listens on a unix socket, the stream's body
// is de-chunked into it, and only a complete stream, fully loaded by QEMU, is resumed.

import type { Socket } from 'node:net';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { VmdError, toVmdError } from '../../share/errors.js';
import { encodeFrame } from '../../share/frame.js';
import { StreamDecoder, StreamError, throttle } from '../../share/stream.js';
import { connectRetry, type QmpClient } from '../qmp.js';
import type { Guest } from './guests.js';

/** A stream that failed to decode, in the receive's words: `vm "x": receive: stream truncated after …`. */
function streamBroken(name: string, err: unknown, hint?: string): VmdError {
  const why = err instanceof StreamError ? `stream ${err.detail}` : toVmdError(err).message;
  return new VmdError('ERR_STREAM', `vm "${name}": receive: ${why}`, { cause: err, ...(hint === undefined ? {} : { hint }) });
}

/** De-chunks the client's stream body into QEMU's migration socket; resolves at the end marker. */
function streamIntoQemu(name: string, client: Socket, conn: Socket, remainder: Buffer): Promise<void> {
  const decoder = new StreamDecoder({ body: true });
  return new Promise<void>((resolve, reject) => {
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
        stop(streamBroken(name, err));
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
        stop(streamBroken(name, err, 'the stream was cut short; nothing was kept'));
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
}

/** Waits (bounded) until QEMU has loaded the state: with -S it ends in 'paused'; it exits if the state does not load. */
async function qemuLoaded(qmp: QmpClient, name: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const st = (await qmp.execute('query-status')) as { status?: string };
    if (st.status === 'paused' || st.status === 'postmigrate') return;
    if (st.status !== 'inmigrate' && st.status !== 'prelaunch') throw new VmdError('ERR_QEMU', `vm "${name}": receive: qemu is ${st.status ?? 'in an unknown state'}`);
    if (Date.now() > deadline) throw new VmdError('ERR_QEMU', `vm "${name}": receive: qemu did not finish loading the guest`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** `vmctl receive`: feeds the client's stream to the guest's waiting QEMU and resumes the guest once loaded. */
export async function guestReceive(g: Guest, client: Socket, response: unknown, remainder: Buffer): Promise<void> {
  const qmp = g.qmp;
  const name = g.handle.name;
  if (qmp === null) throw new VmdError('ERR_QEMU', `vm "${name}": no qmp connection`);
  g.transfer = 'receive';
  // The client half-closes after the body and waits for the last reply: keep our side open for it.
  client.allowHalfOpen = true;
  const path = join(dirname(g.handle.qmpSocket), 'incoming.sock');
  let qemu: Socket | null = null;
  try {
    await qmp.execute('migrate-incoming', { uri: `unix:${path}` });
    qemu = await connectRetry(path, Date.now() + 5000, 'migration socket');
    client.write(encodeFrame(response));
    await streamIntoQemu(name, client, qemu, remainder);
    await qemuLoaded(qmp, name);
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
