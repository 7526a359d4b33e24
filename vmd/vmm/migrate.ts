// `vmctl migrate` in vmm, both ends: the source migrates its running guest straight to the target QEMU's TCP port
// and quits it only on the client's commit; the target's QEMU listens, loads and resumes (a live receive).

import type { Socket } from 'node:net';
import { VmdError, toVmdError } from '../../share/errors.js';
import { encodeFrame, FrameDecoder } from '../../share/frame.js';
import { migrateUri, readMigrateClientFrame, type MigrateClientFrame, type MigrateCounters, type MigrateProgress } from '../../share/migrate.js';
import { logWarn } from '../log.js';
import type { QmpClient } from '../qmp.js';
import { guestFinish, type Guest, type Vmm } from './guests.js';
import { guestQuitAndWait } from './lifecycle.js';
import { diskSizes, MIRROR_POLL_MS, Mirrors, nbdExport, nbdStop } from './mirror.js';
import type { CarriedCount } from '../../share/migrate-counters.js';
import { countersAsk } from './migrate-counters.js';
import { MigrationTls } from './migrate-tls.js';
import { MigrationWake, migrationEventsOn } from './migrate-wake.js';

/** How the source migrates: QEMU's downtime limit, whether disks are mirrored first, and the key's directory. */
export interface MigrateHow { readonly downtimeMs: number; readonly copyStorage: boolean; readonly tlsDir: string }

/** query-migrate states in which the migration is still going on. */
const MIGRATING = ['setup', 'active', 'pre-switchover', 'device', 'wait-unplug', 'cancelling'];
/** How often QEMU is asked (and progress goes to the client): the target waits for the news of completion. */
const PROGRESS_MS = 50;
/** Times the run state is asked for after completion (5 ms apart) before the first figures are taken as they are. */
const COMPLETED_POLLS = 200;
/** The source's bandwidth cap: QEMU's default (32 MiB/s) would make a 1 GB guest take half a minute on loopback. */
const MAX_BANDWIDTH = 8 * 1024 ** 3;
/** Frames the client may send are small (a commit carries at most MAX_CARRIED_COUNTS counters); anything bigger is not vmctl. */
const MAX_CLIENT_FRAME = 128 * 1024;

export interface QueryMigrate {
  status?: string;
  'error-desc'?: string;
  downtime?: number;
  'total-time'?: number;
  ram?: { transferred?: number; remaining?: number; total?: number };
}

/** The client's frames, one at a time; null once it closed (which, before a decision, means abort). */
class ClientFrames {
  readonly #decoder = new FrameDecoder({ maxFrameBytes: MAX_CLIENT_FRAME });
  readonly #queue: Array<MigrateClientFrame | null> = [];
  #waiter: ((f: MigrateClientFrame | null) => void) | null = null;

  constructor(client: Socket, remainder: Buffer) {
    const onData = (chunk: Buffer): void => {
      this.#decoder.push(chunk);
      for (;;) {
        const r = this.#decoder.read();
        if (r.kind !== 'message') {
          if (r.kind === 'error') this.#put(null);
          return;
        }
        let frame: MigrateClientFrame | null = null;
        try {
          frame = readMigrateClientFrame(r.message);
        } catch (err) {
          logWarn(`migration: client frame refused: ${toVmdError(err).message}`);
        }
        this.#put(frame);
        if (frame === null) client.destroy();
      }
    };
    if (remainder.length > 0) onData(remainder);
    client.on('data', onData);
    // The end of the client's half is the end of what it has to say (the socket may allow half-open connections).
    client.on('end', () => this.#put(null));
    client.on('close', () => this.#put(null));
    client.resume();
  }

  /** The next frame, or null once the client is gone. */
  next(): Promise<MigrateClientFrame | null> {
    const f = this.#queue.shift();
    if (f !== undefined) return Promise.resolve(f);
    return new Promise((resolve) => { this.#waiter = resolve; });
  }

  /** Whether the client has sent something (or gone) that is not yet taken. */
  get pending(): boolean {
    return this.#queue.length > 0;
  }

  /** Whether the client is gone (its last word may still wait in the queue). */
  get gone(): boolean {
    return this.#queue.at(-1) === null;
  }

  #put(f: MigrateClientFrame | null): void {
    if (this.#queue.at(-1) === null) return;
    const w = this.#waiter;
    this.#waiter = null;
    if (w !== null) w(f);
    else this.#queue.push(f);
  }
}

/** QEMU's numbers as a frame for the client. */
function progressOf(q: QueryMigrate, disks = 0): MigrateProgress {
  const done = q.status === 'completed';
  return {
    type: 'vm.migrate.progress', status: done ? 'completed' : 'active',
    // The disks were mirrored first: their bytes count as done.
    transferred: disks + (q.ram?.transferred ?? 0), remaining: q.ram?.remaining ?? 0, total: disks + (q.ram?.total ?? 0),
    downtimeMs: done ? q.downtime ?? null : null, totalMs: done ? q['total-time'] ?? null : null,
  };
}

/** Runs the migration, reporting progress, until QEMU ends it or the client gives up (then cancels it). */
async function migrationRun(g: Guest, qmp: QmpClient, client: Socket, frames: ClientFrames, disks: number, wake: MigrationWake): Promise<QueryMigrate> {
  let cancelled = false;
  for (;;) {
    const q = (await qmp.execute('query-migrate')) as QueryMigrate;
    const status = q.status ?? 'none';
    if (!MIGRATING.includes(status)) return status === 'completed' ? completedFigures(qmp, q) : q;
    if (frames.pending && !cancelled) {
      // Whatever the client says mid-migration, it is not a commit: only a completed migration can be committed.
      cancelled = true;
      await qmp.execute('migrate_cancel');
    } else if (status === 'active') {
      client.write(encodeFrame(progressOf(q, disks)));
    }
    await wake.sleep(PROGRESS_MS);
    if (g.exited) throw new VmdError('ERR_QEMU', `vm "${g.handle.name}": migrate: the guest exited`);
  }
}

/**
 * A completed migration's figures. QEMU's migration thread says `completed` a moment before it works out the
 * downtime and the total time, and only then sets the run state `postmigrate`: asked in between, both were 0
 * (seen in about one --copy-storage migration in three). So they are read again once the run state says so.
 */
export async function completedFigures(qmp: Pick<QmpClient, 'execute'>, first: QueryMigrate): Promise<QueryMigrate> {
  for (let i = 0; i < COMPLETED_POLLS; i++) {
    const st = (await qmp.execute('query-status')) as { status?: string };
    if (st.status === 'postmigrate') return (await qmp.execute('query-migrate')) as QueryMigrate;
    await new Promise((r) => setTimeout(r, 5));
  }
  return first;
}

/** --copy-storage: mirrors every disk to the target while the guest runs, until every job is READY. */
async function mirrorsReady(g: Guest, mirrors: Mirrors, client: Socket, frames: ClientFrames, go: { host: string; port: number; tlsId: string }): Promise<void> {
  const name = g.handle.name;
  await mirrors.start(go.host, go.port, go.tlsId);
  // The bar's total from the start: the disks, then the RAM that follows them.
  const ram = ((await g.qmp?.execute('query-memory-size-summary')) as { 'base-memory'?: number } | undefined)?.['base-memory'] ?? 0;
  for (;;) {
    const { copied, ready } = await mirrors.poll();
    if (ready) return;
    if (frames.pending) throw new VmdError('ERR_INTERRUPTED', `vm "${name}": migrate: the client gave up while the disks were copied`, { hint: 'the guest runs on here' });
    client.write(encodeFrame({
      type: 'vm.migrate.progress', status: 'active', transferred: copied, remaining: mirrors.total - copied,
      total: mirrors.total + ram, downtimeMs: null, totalMs: null,
    } satisfies MigrateProgress));
    await new Promise((r) => setTimeout(r, MIRROR_POLL_MS));
    if (g.exited) throw new VmdError('ERR_QEMU', `vm "${name}": migrate: the guest exited`);
  }
}

/** After a failed or cancelled migration: the guest runs on here as before. */
async function migrationResume(g: Guest, qmp: QmpClient): Promise<void> {
  const st = (await qmp.execute('query-status')) as { status?: string };
  if (st.status !== 'running') await qmp.execute('cont');
  g.state = 'running';
}

/**
 * `vmctl migrate` at the source: writes the ready reply (with the configuration the target is made from), waits
 * for where to go, migrates while the guest runs, and after completion waits for the client's verdict: commit
 * quits the guest here, abort resumes it. A client lost after completion leaves it paused: the target may run it.
 */
export async function guestMigrate(vmm: Vmm, g: Guest, client: Socket, response: unknown, remainder: Buffer, how: MigrateHow): Promise<void> {
  const { downtimeMs, copyStorage, tlsDir } = how;
  const qmp = g.qmp;
  const name = g.handle.name;
  if (qmp === null) throw new VmdError('ERR_QEMU', `vm "${name}": no qmp connection`);
  g.transfer = 'migrate';
  const mirrors = copyStorage ? new Mirrors(qmp, name) : null;
  const tls = new MigrationTls(qmp, tlsDir);
  const wake = new MigrationWake(qmp);
  let counted: Promise<readonly CarriedCount[]> | null = null;
  const onStop = (event: string): void => { if (event === 'STOP') counted ??= countersAsk(vmm, g); };
  try {
    client.write(encodeFrame(copyStorage ? { ...(response as object), diskSizes: await diskSizes(qmp) } : response));
    const frames = new ClientFrames(client, remainder);
    const go = await frames.next();
    if (go === null || go.type !== 'vm.migrate.go') throw new VmdError('ERR_INTERRUPTED', `vm "${name}": migrate: the client gave up before the migration began`);
    await tls.add('client');
    if (mirrors !== null) {
      if (go.nbdPort === undefined) throw new VmdError('ERR_INVALID', `vm "${name}": migrate: the target exports no disks to copy to`);
      await mirrorsReady(g, mirrors, client, frames, { host: go.host, port: go.nbdPort, tlsId: tls.id });
    }
    // The firewall's counters are read once the guest stops for the last pass (QEMU's STOP), alongside that pass.
    qmp.on('event', onStop);
    await qmp.execute('migrate-set-parameters', { 'downtime-limit': downtimeMs, 'max-bandwidth': MAX_BANDWIDTH });
    await tls.migrationOn();
    await migrationEventsOn(qmp);
    await qmp.execute('migrate', { uri: migrateUri(go.host, go.port) });
    const q = await migrationRun(g, qmp, client, frames, mirrors?.total ?? 0, wake);
    if (q.status !== 'completed') {
      await mirrors?.cancel(false);
      await migrationResume(g, qmp);
      const why = q['error-desc'] === undefined ? '' : `: ${q['error-desc']}`;
      throw new VmdError('ERR_QEMU', `vm "${name}": migrate: migration ${q.status ?? 'ended'}${why}`, { hint: 'the guest runs on here' });
    }
    // The guest is paused with all its state at the target: the last writes reach the target's disks, then the
    // client hears `completed` and the target may stop its NBD server and resume.
    await mirrors?.cancel(true);
    client.write(encodeFrame(progressOf(q, mirrors?.total ?? 0)));
    client.write(encodeFrame({ type: 'vm.migrate.counters', counters: await (counted ?? countersAsk(vmm, g)) } satisfies MigrateCounters));
    await migrationDecide(vmm, g, qmp, client, frames, response);
  } catch (err) {
    if (mirrors !== null && !g.exited) await mirrors.cancel(false).catch(() => undefined);
    // The guest stays here: its QEMU lets the spent key go, and a later migration adds its own.
    if (!g.exited) await tls.remove();
    if (!client.destroyed) client.end(encodeFrame({ type: 'error', id: (response as { id: number }).id, error: toVmdError(err, 'ERR_QEMU').toJSON() }));
    throw err;
  } finally {
    wake.close();
    qmp.off('event', onStop);
    if (!g.exited) g.transfer = null;
  }
}

/** The migration completed and the guest is paused here: the client says whether the target runs it. */
async function migrationDecide(vmm: Vmm, g: Guest, qmp: QmpClient, client: Socket, frames: ClientFrames, response: unknown): Promise<void> {
  const name = g.handle.name;
  const verdict = await frames.next();
  if (verdict === null) {
    logWarn(`vm "${name}": migrate: the client left after the migration completed; the guest stays paused here`);
    throw new VmdError('ERR_INTERRUPTED', `vm "${name}": migrate: no verdict from the client`, { hint: 'if the target runs the guest, stop it here; otherwise unpause it' });
  }
  if (verdict.type !== 'vm.migrate.commit') {
    await migrationResume(g, qmp);
    throw new VmdError('ERR_INTERRUPTED', `vm "${name}": migrate: the target did not take the guest`, { hint: 'the guest runs on here' });
  }
  g.state = 'stopping';
  g.shutdownReason = 'migrated';
  await guestQuitAndWait(g);
  guestFinish(vmm, g, 'migrated', true);
  client.end(encodeFrame({ ...(response as object), phase: 'done', config: undefined }));
}

/** Bounds the wait for the source's connection: a client that never starts the source leaves by closing. */
const INCOMING_TIMEOUT_MS = 24 * 3600_000;

/** The TCP port QEMU listens on after `migrate-incoming tcp:[::]:0` (QEMU picks a free one). */
async function incomingPort(qmp: QmpClient, name: string): Promise<number> {
  const q = (await qmp.execute('query-migrate')) as { 'socket-address'?: Array<{ port?: string }> };
  const port = Number(q['socket-address']?.[0]?.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new VmdError('ERR_QEMU', `vm "${name}": migrate: qemu did not say which port it listens on`);
  return port;
}

/** Waits until QEMU has loaded the whole state (paused, with -S), failing if it gave up or the client left. */
async function incomingLoaded(qmp: QmpClient, frames: ClientFrames, name: string, wake: MigrationWake): Promise<void> {
  const deadline = Date.now() + INCOMING_TIMEOUT_MS;
  for (;;) {
    const st = (await qmp.execute('query-status')) as { status?: string };
    if (st.status === 'paused' || st.status === 'postmigrate') return;
    if (st.status !== 'inmigrate' && st.status !== 'prelaunch') throw new VmdError('ERR_QEMU', `vm "${name}": migrate: qemu is ${st.status ?? 'in an unknown state'}`);
    // A commit may come before this poll sees the load finished (the source's news travels fast); it waits.
    if (frames.gone) throw new VmdError('ERR_INTERRUPTED', `vm "${name}": migrate: the client gave up`, { hint: 'the guest runs on at the source' });
    if (Date.now() > deadline) throw new VmdError('ERR_QEMU', `vm "${name}": migrate: no migration arrived`);
    await wake.sleep(50);
  }
}

/**
 * A live receive, `vmctl migrate`'s target: QEMU (started paused with -incoming defer) listens on a TCP port of
 * its own choosing, the ready reply tells the client which, and once QEMU has loaded a whole state the guest
 * resumes only on the client's commit, sent after the source said its migration completed. The stream is TLS with
 * the migration's key: anyone else who connects first fails the handshake, and QEMU goes on listening.
 */
export async function guestIncoming(g: Guest, client: Socket, response: unknown, tlsDir: string, copyStorage = false): Promise<readonly CarriedCount[]> {
  const qmp = g.qmp;
  const name = g.handle.name;
  if (qmp === null) throw new VmdError('ERR_QEMU', `vm "${name}": no qmp connection`);
  g.transfer = 'receive';
  const frames = new ClientFrames(client, Buffer.alloc(0));
  const tls = new MigrationTls(qmp, tlsDir);
  const wake = new MigrationWake(qmp);
  try {
    // Before QEMU listens: only a source holding this migration's key gets past the TLS handshake.
    await tls.add('server');
    await tls.migrationOn();
    await migrationEventsOn(qmp);
    // Every address: the client names the one the source reaches, which this host cannot know.
    await qmp.execute('migrate-incoming', { uri: 'tcp:[::]:0' });
    const port = await incomingPort(qmp, name);
    client.write(encodeFrame({ ...(response as object), port, ...(copyStorage ? { nbdPort: await nbdExport(qmp, name, tls.id) } : {}) }));
    await incomingLoaded(qmp, frames, name, wake);
    const verdict = await frames.next();
    if (verdict?.type !== 'vm.migrate.commit') {
      throw new VmdError('ERR_INTERRUPTED', `vm "${name}": migrate: the source did not complete the migration`, { hint: 'the guest runs on at the source' });
    }
    // The source's mirror is done: nothing may write the disks over the network once the guest runs.
    if (copyStorage) await nbdStop(qmp);
    g.state = 'paused';
    await qmp.execute('cont');
    g.state = 'running';
    await tls.remove();
    return verdict.counters ?? [];
  } finally {
    wake.close();
    g.transfer = null;
  }
}
