// Snapshots of a running guest over QMP: snapshot-save, -load and -delete jobs on every writable disk, the RAM
// and device state stored in the first. QEMU stops the guest's CPUs while it saves or loads, then resumes them.

import { VmdError } from '../../share/errors.js';
import type { VmState } from '../../share/protocol.js';
import type { QmpClient } from '../qmp.js';
import type { Guest } from './guests.js';

/** A snapshot job of a guest with a few GiB of RAM takes seconds under KVM, minutes under TCG on a loaded host. */
const JOB_TIMEOUT_MS = 10 * 60_000;
const JOB_POLL_MS = 200;

interface DiskNode {
  readonly device: string;
  readonly node: string;
  readonly format: string;
}

/** The guest's writable disks (`diskN` in vmd's argv) as block nodes, read defensively from query-block. */
export function diskNodesOf(answer: unknown): DiskNode[] {
  if (!Array.isArray(answer)) return [];
  const out: DiskNode[] = [];
  for (const b of answer) {
    const o = b as { device?: unknown; inserted?: { 'node-name'?: unknown; ro?: unknown; image?: { format?: unknown } } } | null;
    const ins = o?.inserted;
    if (typeof o?.device !== 'string' || !/^disk\d+$/.test(o.device) || ins === undefined || ins.ro === true) continue;
    if (typeof ins['node-name'] !== 'string') continue;
    out.push({ device: o.device, node: ins['node-name'], format: typeof ins.image?.format === 'string' ? ins.image.format : 'unknown' });
  }
  return out;
}

/** Takes, reverts to or deletes snapshot `name` of a running guest; returns the state the guest is in afterwards. */
export async function guestSnapshot(g: Guest, op: 'create' | 'revert' | 'delete', name: string): Promise<VmState> {
  const qmp = g.qmp;
  if (qmp === null) throw new VmdError('ERR_QEMU', `vm ${g.handle.name}: no qmp connection`);
  const disks = diskNodesOf(await qmp.execute('query-block'));
  if (disks.length === 0) {
    throw new VmdError('ERR_INVALID', `vm "${g.handle.name}": snapshot: no writable disk to hold it`, { hint: 'give the vm a qcow2 disk' });
  }
  const raw = disks.find((d) => d.format !== 'qcow2');
  if (raw !== undefined) {
    throw new VmdError('ERR_UNSUPPORTED', `vm "${g.handle.name}": snapshot: disk ${raw.device.slice(4)} is ${raw.format}, which holds no snapshots`, {
      hint: 'convert it: qemu-img convert -O qcow2 DISK DISK.qcow2',
    });
  }
  const wasRunning = g.state === 'running';
  const jobId = `vmd-snapshot-${g.vmId}-${Date.now()}`;
  const devices = disks.map((d) => d.node);
  if (op === 'create') await qmp.execute('snapshot-save', { 'job-id': jobId, tag: name, vmstate: devices[0], devices });
  else if (op === 'revert') await qmp.execute('snapshot-load', { 'job-id': jobId, tag: name, vmstate: devices[0], devices });
  else await qmp.execute('snapshot-delete', { 'job-id': jobId, tag: name, devices });
  await jobWait(qmp, jobId, `vm "${g.handle.name}": snapshot ${name}`);
  // A loaded snapshot leaves the CPUs stopped when QEMU saw the guest stopped at load time: a running guest runs on.
  const status = await qmp.execute<{ running?: boolean }>('query-status');
  if (wasRunning && status.running === false) await qmp.execute('cont');
  return wasRunning || status.running === true ? 'running' : 'paused';
}

/** Waits for a QMP job to conclude, dismisses it and throws its error, if it had one. */
async function jobWait(qmp: QmpClient, id: string, what: string): Promise<void> {
  const deadline = Date.now() + JOB_TIMEOUT_MS;
  for (;;) {
    const jobs = await qmp.execute<Array<{ id?: unknown; status?: unknown; error?: unknown }>>('query-jobs');
    const job = Array.isArray(jobs) ? jobs.find((j) => j.id === id) : undefined;
    if (job === undefined) throw new VmdError('ERR_QEMU', `${what}: the job vanished`);
    if (job.status === 'concluded') {
      await qmp.execute('job-dismiss', { id });
      if (typeof job.error === 'string') throw new VmdError('ERR_QEMU', `${what}: qemu: ${job.error.slice(0, 1024)}`);
      return;
    }
    if (Date.now() > deadline) throw new VmdError('ERR_QEMU', `${what}: not done within ${JOB_TIMEOUT_MS / 60_000} minutes`);
    await new Promise((r) => setTimeout(r, JOB_POLL_MS));
  }
}
