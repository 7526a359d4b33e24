// `vmctl send` in vmm: pause the guest, let QEMU migrate into a unix socket of ours, chunk its bytes onto the
// client's connection, then quit the guest. On any failure the guest resumes as it was.

import { createServer, type Server, type Socket } from 'node:net';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { VmdError, toVmdError } from '../../share/errors.js';
import { encodeFrame } from '../../share/frame.js';
import { chunkPrefix, encodeStreamError, STREAM_END, throttle } from '../../share/stream.js';
import { logWarn } from '../log.js';
import type { QmpClient } from '../qmp.js';
import { guestFinish, type Guest, type Vmm } from './guests.js';
import { guestQuitAndWait } from './lifecycle.js';

// query-migrate states in which the migration is still going on.
const MIGRATING = ['setup', 'active', 'pre-switchover', 'device', 'wait-unplug', 'cancelling'];

/** QEMU's migration connection to vmm, relayed onto the client as stream chunks. */
interface Relay {
  readonly server: Server;
  qemu: Socket | null;
  /** Settles once QEMU has written the whole state and closed its end; rejects on a broken relay. */
  transferred: Promise<void> | null;
  /** Rejects `transferred` (a no-op until it exists). */
  fail: (err: Error) => void;
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

/** Listens on `path` for QEMU's migration connection and relays what it writes onto the client, throttled. */
async function relayListen(relay: Relay, path: string, client: Socket, name: string): Promise<void> {
  const { server } = relay;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  relay.transferred = new Promise<void>((resolve, reject) => {
    relay.fail = reject;
    server.once('connection', (conn: Socket) => {
      relay.qemu = conn;
      server.close();
      conn.on('data', (data: Buffer) => {
        client.write(chunkPrefix(data.length));
        client.write(data);
        throttle(client, conn);
      });
      conn.on('end', () => resolve());
      conn.on('error', (err) => reject(new VmdError('ERR_QEMU', `vm "${name}": send: migration stream: ${err.message}`, { cause: err })));
    });
  });
}

/** Pauses the guest and has QEMU migrate into the relay; returns once QEMU says the migration completed. */
async function sendMigrate(g: Guest, qmp: QmpClient, relay: Relay, path: string, wasRunning: boolean): Promise<void> {
  const name = g.handle.name;
  if (wasRunning) await qmp.execute('stop');
  // The guest is paused, so there is no downtime to protect: QEMU's default rate limit only slows the send.
  await qmp.execute('migrate-set-parameters', { 'max-bandwidth': 8 * 1024 ** 3 });
  await qmp.execute('migrate', { uri: `unix:${path}` });
  const transferred = relay.transferred!;
  await Promise.race([transferred, migrationFailure(g, transferred)]);
  const outcome = await migrationOutcome(g);
  if (outcome.status !== 'completed') {
    throw new VmdError('ERR_QEMU', `vm "${name}": send: migration ${outcome.status}${outcome.error === '' ? '' : `: ${outcome.error}`}`);
  }
}

/** After a failed send: cancels the migration, resumes a guest that was running, tells the reader why. */
async function sendAbandon(g: Guest, qmp: QmpClient, relay: Relay, client: Socket, wasRunning: boolean, err: unknown): Promise<void> {
  relay.server.close();
  relay.qemu?.destroy();
  await qmp.execute('migrate_cancel').catch(() => undefined);
  await migrationOutcome(g).catch(() => undefined);
  if (wasRunning) {
    await qmp.execute('cont').catch((e: unknown) => logWarn(`vm "${g.handle.name}": cannot resume after a failed send: ${toVmdError(e).message}`));
  }
  g.transfer = null;
  if (!client.destroyed) client.end(encodeStreamError(toVmdError(err, 'ERR_QEMU').toJSON()));
}

/**
 * `vmctl send`: writes the reply and the stream header, relays the guest's state (QEMU's sandbox forbids exec:,
 * hence the socket), then quits the guest and ends the stream.
 */
export async function guestSend(vmm: Vmm, g: Guest, client: Socket, response: unknown, header: Buffer): Promise<void> {
  const qmp = g.qmp;
  const name = g.handle.name;
  if (qmp === null) throw new VmdError('ERR_QEMU', `vm "${name}": no qmp connection`);
  g.transfer = 'send';
  const wasRunning = g.state === 'running';
  const path = join(dirname(g.handle.qmpSocket), 'migrate.sock');
  rmSync(path, { force: true });
  const relay: Relay = { server: createServer(), qemu: null, transferred: null, fail: () => undefined };
  const onClientClose = (): void => relay.fail(new VmdError('ERR_INTERRUPTED', `vm "${name}": send: the receiving end went away`));
  client.on('close', onClientClose);
  try {
    client.write(encodeFrame(response));
    client.write(header);
    await relayListen(relay, path, client, name);
    if (client.destroyed) throw new VmdError('ERR_INTERRUPTED', `vm "${name}": send: the receiving end went away`);
    await sendMigrate(g, qmp, relay, path, wasRunning);
  } catch (err) {
    client.off('close', onClientClose);
    await sendAbandon(g, qmp, relay, client, wasRunning, err);
    throw err;
  } finally {
    rmSync(path, { force: true });
  }
  // The guest now lives in the stream: this QEMU goes, and only then does the reader learn the stream is whole,
  // so a receiver on this host finds the disks free and the sender's links on their way out.
  client.off('close', onClientClose);
  g.state = 'stopping';
  g.shutdownReason = 'sent';
  await guestQuitAndWait(g);
  guestFinish(vmm, g, 'sent', true);
  client.end(STREAM_END);
}
