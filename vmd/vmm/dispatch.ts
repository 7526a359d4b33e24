// What vmm does with each message from the parent: one call per message type, each answering with a vm.result
// where the parent waits for one. Client sockets (console, send, receive, migrate) arrive as the message's IPC handle.

import type { Socket } from 'node:net';
import { VmdError, toVmdError, type ErrorCode, type VmdErrorData } from '../../share/errors.js';
import { encodeFrame } from '../../share/frame.js';
import type { ParentToVmm } from '../../share/ipc.js';
import type { VmState } from '../../share/protocol.js';
import { logSetVerbose } from '../log.js';
import { consoleAttach } from './console.js';
import { guestFinish, guestRunning, type Guest, type Vmm } from './guests.js';
import { guestAdopt, guestPause, guestStop } from './lifecycle.js';
import { guestIncoming, guestMigrate } from './migrate.js';
import { countersAnswered } from './migrate-counters.js';
import { guestReceive } from './receive.js';
import { guestSend } from './send.js';
import { guestGrow } from './grow.js';
import { guestSnapshot } from './snapshot.js';

type Msg<T extends ParentToVmm['type']> = Extract<ParentToVmm, { type: T }>;

/** Handles one message from the parent. */
export async function vmmDispatchParent(vmm: Vmm, msg: ParentToVmm, handle: Socket | undefined): Promise<void> {
  switch (msg.type) {
    case 'vmm.config':
      return vmmConfigure(vmm, msg);
    case 'log.verbose':
      return logSetVerbose(msg.level);
    case 'vmm.metrics.data':
      return vmm.metrics?.parentAnswered(msg);
    case 'vm.adopt':
      return reply(vmm, msg.req, 'ERR_QEMU', () => guestAdopt(vmm, msg.guest));
    case 'vm.stop':
      return reply(vmm, msg.req, 'ERR_INTERNAL', async () => guestStop(vmm, guestRunning(vmm, msg.vmId), msg.force));
    case 'vm.pause':
    case 'vm.unpause':
      return reply(vmm, msg.req, 'ERR_QEMU', () => guestPause(guestRunning(vmm, msg.vmId), msg.type === 'vm.pause'));
    case 'vm.snapshot':
      return reply(vmm, msg.req, 'ERR_QEMU', () => guestSnapshot(guestRunning(vmm, msg.vmId), msg.op, msg.name));
    case 'vm.grow':
      return reply(vmm, msg.req, 'ERR_QEMU', async () => { await guestGrow(guestRunning(vmm, msg.vmId), msg.disk, msg.size); });
    case 'vm.console.attach':
      return consoleFromParent(vmm, msg, handle);
    case 'vm.forget':
      return guestForget(vmm, msg.vmId);
    case 'vm.send':
    case 'vm.receive':
    case 'vm.migrate':
      return transferServe(vmm, msg, handle);
    case 'vm.stream.reply':
      return streamReply(vmm, msg);
    case 'vm.counters.data':
      return countersAnswered(vmm, msg);
  }
}

/** Sends the parent the vm.result of a request: its error (as `code` when not a VmdError), or the state it left. */
async function reply(vmm: Vmm, req: number, code: ErrorCode, run: () => Promise<VmState | void>): Promise<void> {
  let state: VmState | void;
  try {
    state = await run();
  } catch (err) {
    vmm.send({ type: 'vm.result', req, error: toVmdError(err, code).toJSON() });
    return;
  }
  vmm.send(state === undefined ? { type: 'vm.result', req, error: null } : { type: 'vm.result', req, error: null, state });
}

/** The parent's settings for vmm: log level, the graceful stop's timeout and the metrics endpoint. */
function vmmConfigure(vmm: Vmm, msg: Msg<'vmm.config'>): void {
  logSetVerbose(msg.verbose);
  vmm.stopTimeoutMs = msg.stopTimeoutMs;
  vmm.metrics?.configure(msg.metrics);
}

function consoleFromParent(vmm: Vmm, msg: Msg<'vm.console.attach'>, handle: Socket | undefined): void {
  if (handle === undefined) return;
  consoleAttach(vmm, { vmId: msg.vmId, reqId: msg.reqId, name: msg.name, client: handle, remainder: Buffer.from(msg.remainder, 'base64') });
}

/** The parent has given a VM up (it removed it or saw it die): drop it without telling the parent again. */
function guestForget(vmm: Vmm, vmId: number): void {
  const g = vmm.guests.get(vmId);
  if (g !== undefined) guestFinish(vmm, g, 'forgotten', false);
}

/** A send, receive or migration: the guest must be running with no other transfer; vmm then serves the client itself. */
async function transferServe(vmm: Vmm, msg: Msg<'vm.send'> | Msg<'vm.receive'> | Msg<'vm.migrate'>, client: Socket | undefined): Promise<void> {
  if (client === undefined) {
    vmm.send({ type: 'vm.result', req: msg.req, error: { code: 'ERR_INTERNAL', message: `vm ${msg.vmId}: ${msg.type}: no connection` } });
    return;
  }
  client.on('error', () => client.destroy());
  // The parent words a receive's last reply; a send that fails before its stream began is answered here.
  if (msg.type === 'vm.receive') vmm.receivers.set(msg.vmId, client);
  let g: Guest;
  try {
    g = guestRunning(vmm, msg.vmId);
    if (g.transfer !== null) throw new VmdError('ERR_INVALID', `vm "${g.handle.name}": a ${g.transfer} is already in progress`);
  } catch (err) {
    const error: VmdErrorData = toVmdError(err).toJSON();
    if (msg.type !== 'vm.receive') client.end(encodeFrame({ type: 'error', id: (msg.response as { id: number }).id, error }));
    vmm.send({ type: 'vm.result', req: msg.req, error });
    return;
  }
  if (msg.type === 'vm.send') {
    return reply(vmm, msg.req, 'ERR_QEMU', () => guestSend(vmm, g, client, msg.response, Buffer.from(msg.header, 'base64')));
  }
  if (msg.type === 'vm.migrate') {
    return reply(vmm, msg.req, 'ERR_QEMU', () => guestMigrate(vmm, g, client, msg.response, Buffer.from(msg.remainder, 'base64'), {
      downtimeMs: msg.downtimeMs, copyStorage: msg.copyStorage === true, tlsDir: msg.tlsDir,
    }));
  }
  return reply(vmm, msg.req, 'ERR_QEMU', async () => {
    if (msg.live === true) {
      // The parent writes a live receive's key before it asks: none is a bug, and no port opens without one.
      if (msg.tlsDir === undefined) throw new VmdError('ERR_INTERNAL', `vm "${g.handle.name}": migrate: no key for the incoming migration`);
      const counters = await guestIncoming(g, client, msg.response, msg.tlsDir, msg.copyStorage === true);
      // Before the vm.result, so the parent has them by the time it answers the client.
      if (counters.length > 0) vmm.send({ type: 'vm.counters.carry', vmId: g.vmId, counters });
    } else {
      await guestReceive(g, client, msg.response, Buffer.from(msg.remainder, 'base64'));
    }
    return g.state;
  });
}

/** The last frame of a receive connection: written, then the connection closes. */
function streamReply(vmm: Vmm, msg: Msg<'vm.stream.reply'>): void {
  const client = vmm.receivers.get(msg.vmId);
  vmm.receivers.delete(msg.vmId);
  if (client !== undefined && !client.destroyed) client.end(encodeFrame(msg.response));
}
