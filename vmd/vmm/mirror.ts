// `vmctl migrate --copy-storage` in vmm: the target's QEMU exports its new, empty disks over its NBD server while
// it waits for the migration; the source's QEMU mirrors every disk there while the guest runs, before the RAM moves.

import { createServer } from 'node:net';
import { VmdError } from '../../share/errors.js';
import type { QmpClient } from '../qmp.js';

/** How often the mirror jobs are polled (and progress goes to the client). */
export const MIRROR_POLL_MS = 100;
/** The drive ids vmd/qemu-disks.ts gives a VM's disks, in config order; the cloud-init seed and cdrom are not. */
const DISK_ID = /^disk(\d+)$/;

interface BlockInfo { device?: string; inserted?: { 'node-name'?: string; image?: { 'virtual-size'?: number } } }
interface BlockJob { device?: string; type?: string; len?: number; offset?: number; ready?: boolean; status?: string }

/** The VM's disks as QEMU has them, in config order. */
async function disksOf(qmp: QmpClient): Promise<Array<{ device: string; node: string; size: number }>> {
  const blocks = (await qmp.execute('query-block')) as BlockInfo[];
  const disks: Array<{ index: number; device: string; node: string; size: number }> = [];
  for (const b of blocks) {
    const m = DISK_ID.exec(b.device ?? '');
    if (m === null || b.inserted === undefined) continue;
    disks.push({ index: Number(m[1]), device: b.device as string, node: b.inserted['node-name'] ?? '', size: b.inserted.image?.['virtual-size'] ?? 0 });
  }
  return disks.sort((x, y) => x.index - y.index);
}

/** Each disk's virtual size in bytes, for the target to create its copies with (the source's `ready` reply). */
export async function diskSizes(qmp: QmpClient): Promise<number[]> {
  return (await disksOf(qmp)).map((d) => d.size);
}

/** A TCP port free right now: QEMU's NBD server has no way to say which port it bound when asked for port 0. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen({ port: 0, host: '::' }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * The target: starts QEMU's NBD server on every address and exports disk N writable as `diskN` (block-export-add
 * makes the image active, as migration with non-shared storage needs). Returns the port. A port taken between
 * freePort and QEMU's bind is retried.
 */
export async function nbdExport(qmp: QmpClient, name: string, tlsId: string): Promise<number> {
  let port = 0;
  for (let attempt = 0; port === 0; attempt++) {
    const candidate = await freePort();
    try {
      // One connection at a time: while the source's mirror is connected, no one else can write.
      // TLS with the migration's key: a client without it is refused before it may name an export.
      await qmp.execute('nbd-server-start', { addr: { type: 'inet', data: { host: '::', port: String(candidate) } }, 'max-connections': 1, 'tls-creds': tlsId });
      port = candidate;
    } catch (err) {
      if (attempt >= 3) throw new VmdError('ERR_QEMU', `vm "${name}": migrate: nbd server: ${(err as Error).message}`, { cause: err });
    }
  }
  for (const d of await disksOf(qmp)) {
    await qmp.execute('block-export-add', { type: 'nbd', id: `vmd-${d.device}`, 'node-name': d.node, name: d.device, writable: true });
  }
  return port;
}

/** The target, before the guest resumes: no one may write its disks over the network any more. */
export async function nbdStop(qmp: QmpClient): Promise<void> {
  await qmp.execute('nbd-server-stop');
}

/** The source's mirror jobs, one per disk, to the target's NBD exports. */
export class Mirrors {
  #jobs: string[] = [];
  #nodes: string[] = [];
  /** Bytes of every disk: the part of the migration's total the mirror stands for. */
  total = 0;

  constructor(private readonly qmp: QmpClient, private readonly name: string) {}

  /**
   * Starts a full mirror of every disk (the whole backing chain, flattened) to `host:port`: each target is an NBD
   * client node over TLS with the migration's credentials `tlsId` (vmd/vmm/migrate-tls.ts), which the caller added.
   */
  async start(host: string, port: number, tlsId: string): Promise<void> {
    for (const d of await disksOf(this.qmp)) {
      const job = `vmd-mirror-${d.device}`;
      const node = `vmd-nbd-${d.device}`;
      await this.qmp.execute('blockdev-add', {
        driver: 'nbd', 'node-name': node, server: { type: 'inet', host: host.replace(/^\[(.*)\]$/, '$1'), port: String(port) },
        export: d.device, 'tls-creds': tlsId,
      });
      this.#nodes.push(node);
      await this.qmp.execute('blockdev-mirror', { 'job-id': job, device: d.device, target: node, sync: 'full' });
      this.#jobs.push(job);
      this.total += d.size;
    }
  }

  /** The bytes copied so far and whether every job is READY; throws naming a job that ended before it was. */
  async poll(): Promise<{ copied: number; ready: boolean }> {
    const jobs = (await this.qmp.execute('query-block-jobs')) as BlockJob[];
    let copied = 0;
    let ready = true;
    for (const id of this.#jobs) {
      const j = jobs.find((x) => x.device === id);
      if (j === undefined || j.status === 'concluded' || j.status === 'aborting') {
        throw new VmdError('ERR_QEMU', `vm "${this.name}": migrate: the mirror of ${id.replace('vmd-mirror-', '')} to the target failed`, { hint: 'the guest runs on here with its own disks' });
      }
      copied += j.offset ?? 0;
      ready &&= j.ready === true;
    }
    return { copied, ready };
  }

  /**
   * Ends every job and waits until QEMU dropped them. After a completed migration (`sync`) a READY job's cancel
   * first brings the target in sync (QEMU's documented NBD flow); after a failure it just stops, the source's disks
   * untouched.
   */
  async cancel(sync: boolean): Promise<void> {
    for (const id of this.#jobs) await this.qmp.execute('block-job-cancel', { device: id, force: !sync }).catch(() => undefined);
    for (let i = 0; i < 600; i++) {
      const jobs = (await this.qmp.execute('query-block-jobs')) as BlockJob[];
      if (!jobs.some((j) => this.#jobs.includes(j.device ?? ''))) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    this.#jobs = [];
    // The NBD connections close with their nodes, and the TLS credentials are free to go.
    for (const node of this.#nodes) await this.qmp.execute('blockdev-del', { 'node-name': node }).catch(() => undefined);
    this.#nodes = [];
  }
}
