// `vmctl send` and `vmctl receive`: a guest's state leaves as a stream, or a new VM is made from one.
// The parent checks and records; vmm moves the bytes between the client socket and QEMU's migration.

import type { Socket } from 'node:net';
import { rmSync } from 'node:fs';
import { VmdError, toVmdError } from '../../share/errors.js';
import type { ControlToParent } from '../../share/ipc.js';
import type { ControlRequest } from '../../share/protocol.js';
import { encodeStreamHeader } from '../../share/stream.js';
import { logInfo, logWarn } from '../log.js';
import type { Parent } from './context.js';
import { qemuLogTail, vmStart } from './launch.js';
import { qemuLogPath } from './qemu-log.js';
import { isOurQemu } from './lifecycle.js';
import type { Entry } from './registry.js';
import { socketReject } from './sockets.js';
import { vmPermittedGet } from './requests.js';
import { receiveIdClaim } from './receive-id.js';
import { streamConfigOf, vmFromStream } from './vm-config.js';
import { migrateStart } from './migrate.js';
import { migrateKeyRemove, migrateKeyWrite } from './migrate-tls.js';
import { copyImagesCreate, copyImagesKeep, copyImagesRecord, copyImagesRemove } from './copy-storage.js';
import { fsIdentityOf } from '../user-files.js';

/** A transfer waits for bytes from a pipe, maybe over ssh: bounded only against a vmm that never answers. */
const TRANSFER_TIMEOUT_MS = 24 * 3600_000;

/** A send or receive request with its socket. */
export function streamRequest(p: Parent, msg: Extract<ControlToParent, { type: 'control.stream' }>, socket: Socket): void {
  const req = msg.request;
  if (req.type === 'vm.send.request') {
    try {
      sendStart(p, msg, req, socket);
    } catch (err) {
      socketReject(socket, req.id, err);
    }
  } else if (req.type === 'vm.migrate.request') {
    try {
      migrateStart(p, msg, req, msg.remainder, socket);
    } catch (err) {
      socketReject(socket, req.id, err);
    }
  } else if (req.type === 'vm.receive.request') {
    receive(p, msg.uid, req, msg.remainder, socket).catch((err: unknown) => socketReject(socket, req.id, err));
  }
}

/** `vmctl send NAME`: vmm streams the guest's state to the client and stops it; on failure the guest stays. */
function sendStart(p: Parent, who: { uid: number; gid: number }, req: Extract<ControlRequest, { type: 'vm.send.request' }>, socket: Socket): void {
  const e = vmPermittedGet(p, req.target, { peer: 0, ...who }, 'send');
  if (e.runtime === null || e.state === 'starting' || e.state === 'stopping') {
    throw new VmdError('ERR_VM_NOT_RUNNING', `vm "${e.record.name}": not running`);
  }
  if (p.transfers.has(e.record.id)) throw new VmdError('ERR_INVALID', `vm "${e.record.name}": already being sent`);
  const header = encodeStreamHeader(streamConfigOf(e.record.id, e.record.config)).toString('base64');
  p.transfers.add(e.record.id);
  p.roles.vmmCall((r) => ({
    type: 'vm.send', req: r, vmId: e.record.id, header,
    response: { type: 'vm.send.response', id: req.id, vmId: e.record.id, name: e.record.name },
  }), { timeoutMs: TRANSFER_TIMEOUT_MS, handle: socket, forVm: e.record.id }).then(
    () => {
      logInfo(`vm "${e.record.name}" (vm ${e.record.id}) sent`);
      p.events.vm(e, 'sent');
    },
    (err: unknown) => logWarn(`vm "${e.record.name}": send failed, the guest stays: ${toVmdError(err).message}`),
  ).finally(() => p.transfers.delete(e.record.id));
}

/** `vmctl receive NAME`: a new VM from the stream's config, through vmStart's checks, then its state from the body. */
async function receive(p: Parent, uid: number, req: Extract<ControlRequest, { type: 'vm.receive.request' }>, remainder: string, socket: Socket): Promise<void> {
  if (p.vms.byName(req.target) !== undefined) {
    throw new VmdError('ERR_VM_EXISTS', `vm "${req.target}": already exists`, { hint: 'receive it under another name' });
  }
  if (/^\d+$/.test(req.target)) throw new VmdError('ERR_INVALID', `vm name "${req.target}": invalid VM name`);
  const vm = vmFromStream(req.target, req.config);
  const e = p.vms.add({ id: receiveIdClaim(p, vm, req.config.id), name: vm.name, origin: 'adhoc', config: vm, ownerUid: vm.owner?.uid ?? uid, ownerGid: vm.owner?.gid ?? null });
  const id = e.record.id;
  p.transfers.add(id);
  // --copy-storage: the disks are made here, empty, before the start opens them; the source's mirror fills them.
  let made: string[] = [];
  try {
    if (req.copyStorage !== undefined && req.live !== true) throw new VmdError('ERR_INVALID', `vm "${vm.name}": copy-storage: only a live migration copies disks`);
    if (req.copyStorage !== undefined) made = await copyImagesCreate(vm, req.copyStorage, fsIdentityOf(uid));
    await vmStart(p, e, uid, { incoming: true });
    if (e.runtime !== null) copyImagesRecord(e.runtime.runDir, uid, made);
  } catch (err) {
    await copyImagesRemove(made, fsIdentityOf(uid));
    p.transfers.delete(id);
    p.vms.remove(id);
    throw err;
  }
  p.vms.setState(e, 'starting');
  let error: VmdError | null = null;
  // A live receive's key, for QEMU's TLS server: on disk only while the migration lasts.
  let tlsDir: string | undefined;
  try {
    if (req.tlsKey !== undefined) tlsDir = migrateKeyWrite(p, id, req.tlsKey);
    await p.roles.vmmCall((r) => ({
      type: 'vm.receive', req: r, vmId: id, remainder, live: req.live === true, copyStorage: req.copyStorage !== undefined, ...(tlsDir === undefined ? {} : { tlsDir }),
      response: { type: 'vm.receive.response', id: req.id, phase: 'ready', vm: p.vms.info(e) },
    }), { timeoutMs: TRANSFER_TIMEOUT_MS, handle: socket });
  } catch (err) {
    error = toVmdError(err);
  }
  if (tlsDir !== undefined) migrateKeyRemove(tlsDir);
  p.transfers.delete(id);
  if (error === null && e.runtime !== null) {
    copyImagesKeep(e.runtime.runDir);
    p.vms.setState(e, 'running');
    p.db.event(id, 'receive', `from "${req.config.name}"`);
    p.events.vm(e, 'received');
    logInfo(`received ${vm.name} (vm ${id}) successfully, tty ${e.runtime.consoleSocket}`);
    // A reply that reaches the client through vmm: control's listing goes first, as before any reply.
    p.vms.flush();
    p.roles.vmm?.send({ type: 'vm.stream.reply', vmId: id, response: { type: 'vm.receive.response', id: req.id, phase: 'done', vm: p.vms.info(e) } });
    return;
  }
  const detail = await receiveUndo(p, e, error);
  // After QEMU is gone (it held them open): nothing the failed migration made stays on this host.
  await copyImagesRemove(made, fsIdentityOf(uid));
  p.vms.flush();
  p.roles.vmm?.send({ type: 'vm.stream.reply', vmId: id, response: { type: 'error', id: req.id, error: detail.toJSON() } });
}

/** Nothing half-made stays: the QEMU, its links and run directory and the VM record go before the client hears. */
async function receiveUndo(p: Parent, e: Entry, error: VmdError | null): Promise<VmdError> {
  const id = e.record.id;
  const name = e.record.name;
  const tail = e.runtime === null ? '' : qemuLogTail(qemuLogPath(p.env.stateDir, e.record.id));
  const pid = e.runtime?.pid ?? null;
  e.stopRequested = true;
  if (pid !== null) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    const deadline = Date.now() + 5000;
    while (isOurQemu(pid, id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    p.roles.vmm?.send({ type: 'vm.forget', vmId: id });
  }
  if (e.runtime !== null) {
    rmSync(e.runtime.runDir, { recursive: true, force: true });
    p.db.runtimeDelete(id);
    e.runtime = null;
  }
  await p.network.vmDown(id).catch((err: unknown) => logWarn(`vm "${name}": network: ${toVmdError(err).message}`));
  p.vms.remove(id);
  const why = error ?? new VmdError('ERR_QEMU', `vm "${name}": receive: the guest exited`);
  const detail = tail.length > 0 && why.code === 'ERR_QEMU' ? new VmdError('ERR_QEMU', `${why.message} (qemu: ${tail})`, { cause: why }) : why;
  logWarn(`vm "${name}": receive failed: ${detail.message}`);
  return detail;
}
