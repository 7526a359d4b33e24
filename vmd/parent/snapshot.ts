// `vmctl snapshot`: snapshots of a VM's qcow2 disks. A running guest's go through vmm as QMP jobs (RAM included);
// a stopped guest's are qemu-img's, run as the requester on the image the requester's own credentials opened.

import { closeSync, constants as fsc } from 'node:fs';
import type { DiskConfig } from '../../share/config.js';
import { VmdError } from '../../share/errors.js';
import type { ControlRequest, SnapshotInfo } from '../../share/protocol.js';
import { asRequester, fsIdentityOf, openAsRequester, runWithFd, type FsIdentity } from '../user-files.js';
import type { Parent } from './context.js';
import { respond, vmPermittedGet, type Asker } from './requests.js';
import type { Entry } from './registry.js';

/** As long as vmm waits for a snapshot job, and a little more. */
const SNAPSHOT_TIMEOUT_MS = 11 * 60_000;
/** qemu-img snapshot copies no data (it writes refcounts and a table), but a revert of a big image takes a while. */
const QEMU_IMG_TIMEOUT_MS = 5 * 60_000;

type SnapshotReq = Extract<ControlRequest, { type: 'vm.snapshot.request' }>;

/** `vmctl snapshot [-l | -r name | -d name] id [name]`. */
export async function vmSnapshotRequest(p: Parent, who: Asker, req: SnapshotReq): Promise<void> {
  const e = vmPermittedGet(p, req.target, who, 'snapshot');
  const vm = e.record.name;
  const disks = e.record.config.disks;
  if (disks.length === 0) throw new VmdError('ERR_INVALID', `vm "${vm}": snapshot: the vm has no disk`);
  const raw = disks.find((d) => d.format !== 'qcow2');
  if (raw !== undefined) {
    throw new VmdError('ERR_UNSUPPORTED', `vm "${vm}": snapshot: disk ${raw.path} is ${raw.format}, which holds no snapshots`, {
      hint: 'convert it: qemu-img convert -O qcow2 DISK DISK.qcow2',
    });
  }
  const fs = fsIdentityOf(who.uid);
  const name = req.op === 'create' ? req.name ?? defaultName() : req.name ?? '';
  if (req.op !== 'list') {
    if (e.runtime === null) await stoppedSnapshot(p, e, fs, req.op, name);
    else await runningSnapshot(p, e, req.op, name);
  }
  const snapshots: SnapshotInfo[] = [];
  for (const d of disks) snapshots.push(...await snapshotsOf(d, fs));
  respond(p, who.peer, { type: 'vm.snapshot.response', id: req.id, vmId: e.record.id, vm, op: req.op, name, snapshots });
}

/** `snap-YYYYMMDD-HHMMSS` in UTC: sorts by time, and a second is finer than anyone snapshots by hand. */
function defaultName(): string {
  return `snap-${new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15)}`;
}

async function runningSnapshot(p: Parent, e: Entry, op: 'create' | 'revert' | 'delete', name: string): Promise<void> {
  if (e.state !== 'running' && e.state !== 'paused') throw new VmdError('ERR_VM_NOT_RUNNING', `vm "${e.record.name}": snapshot: the vm is ${e.state}`);
  const res = await p.roles.vmmCall((r) => ({ type: 'vm.snapshot', req: r, vmId: e.record.id, op, name }), { forVm: e.record.id, timeoutMs: SNAPSHOT_TIMEOUT_MS });
  if (res.state === 'running' || res.state === 'paused') p.vms.trySetState(e, res.state);
}

/** qemu-img snapshot on each disk of a stopped VM; QEMU's image lock refuses it if a start took the disk meanwhile. */
async function stoppedSnapshot(p: Parent, e: Entry, who: FsIdentity, op: 'create' | 'revert' | 'delete', name: string): Promise<void> {
  if (e.state !== 'stopped' && e.state !== 'waiting') throw new VmdError('ERR_VM_RUNNING', `vm "${e.record.name}": snapshot: the vm is ${e.state}`);
  const flag = op === 'create' ? '-c' : op === 'revert' ? '-a' : '-d';
  for (const d of e.record.config.disks) {
    // qemu-img snapshot has no -f: --image-opts names the format, so nothing is probed.
    const argv = ['qemu-img', 'snapshot', flag, name, '--image-opts', 'driver=qcow2,file.filename=/proc/self/fd/3'];
    await qemuImgOn(d, who, fsc.O_RDWR, argv, `vm "${e.record.name}": snapshot`);
  }
}

/** The snapshots qemu-img lists for one disk (-U: a running guest holds the image's lock). */
async function snapshotsOf(d: DiskConfig, who: FsIdentity): Promise<SnapshotInfo[]> {
  const out = await qemuImgOn(d, who, fsc.O_RDONLY, ['qemu-img', 'info', '-U', '-f', 'qcow2', '--output=json', '/proc/self/fd/3'], 'snapshot');
  return readSnapshots(d.path, out);
}

/** Runs qemu-img as the requester on the disk, opened with the requester's credentials; returns its output. */
async function qemuImgOn(d: DiskConfig, who: FsIdentity, flags: number, argv: string[], what: string): Promise<string> {
  let fd: number;
  try {
    fd = openAsRequester(d.path, flags | fsc.O_NONBLOCK, who);
  } catch (err) {
    throw new VmdError('ERR_DISK_MISSING', `${what}: disk ${d.path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const r = await runWithFd(asRequester(argv, who), fd, QEMU_IMG_TIMEOUT_MS);
    if (r.exitCode !== 0) {
      const first = r.stderr.split('\n').find((l) => l.trim().length > 0)?.replace(/^qemu-img: (\/proc\/self\/fd\/3: )?/, '');
      const locked = /lock/i.test(first ?? '');
      throw new VmdError(locked ? 'ERR_DISK_LOCKED' : 'ERR_QEMU', `${what}: disk ${d.path}: qemu-img: ${first ?? `exit ${r.exitCode}`}`);
    }
    return r.stdout;
  } finally {
    closeSync(fd);
  }
}

/** The `snapshots` of qemu-img's JSON, field by field: an image's contents are the requester's, not trusted. */
export function readSnapshots(disk: string, json: string): SnapshotInfo[] {
  let info: unknown;
  try {
    info = JSON.parse(json);
  } catch {
    return [];
  }
  const list = (info as { snapshots?: unknown } | null)?.snapshots;
  if (!Array.isArray(list)) return [];
  return list.slice(0, 10_000).flatMap((s: { name?: unknown; 'vm-state-size'?: unknown; 'date-sec'?: unknown } | null) => {
    if (typeof s?.name !== 'string' || s.name.length === 0 || s.name.length > 1024) return [];
    const size = typeof s['vm-state-size'] === 'number' && Number.isSafeInteger(s['vm-state-size']) && s['vm-state-size'] >= 0 ? s['vm-state-size'] : 0;
    const sec = typeof s['date-sec'] === 'number' && Number.isFinite(s['date-sec']) ? s['date-sec'] : 0;
    return [{ disk, name: s.name, vmStateBytes: size, date: new Date(sec * 1000).toISOString() }];
  });
}
