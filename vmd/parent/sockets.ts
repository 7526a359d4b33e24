// Requests that arrive with their client socket: consoles (handed on to vmm) and captures (tcpdump streams to it).
// The parent decides who may; the bytes themselves never pass through it.

import type { Socket } from 'node:net';
import type { ControlToParent } from '../../share/ipc.js';
import { VmdError, toVmdError } from '../../share/errors.js';
import { encodeFrame } from '../../share/frame.js';
import { getpwnam } from '../../share/users.js';
import type { Parent } from './context.js';
import { untilStarted } from './lifecycle.js';
import { vmPermittedGet } from './requests.js';

/** Ends a socket-carrying request with an error frame (the connection then belongs to nobody). */
export function socketReject(socket: Socket, id: number, err: unknown): void {
  if (socket.destroyed) return;
  socket.on('error', () => socket.destroy());
  socket.end(encodeFrame({ type: 'error', id, error: toVmdError(err).toJSON() }));
}

/** `vmctl console NAME`: once the guest runs (and is adopted by the current vmm), vmm attaches the socket. */
export function consoleRequest(p: Parent, msg: Extract<ControlToParent, { type: 'control.console' }>, socket: Socket): void {
  if (msg.request.type !== 'vm.console.request') return;
  const id = msg.request.id;
  let e;
  try {
    e = vmPermittedGet(p, msg.request.target, msg, 'console');
  } catch (err) {
    socketReject(socket, id, err);
    return;
  }
  const vm = e;
  const notRunning = new VmdError('ERR_VM_NOT_RUNNING', `vm "${vm.record.name}": not running`, { hint: `start it with: vmctl start ${vm.record.name}` });
  if (vm.runtime === null) {
    socketReject(socket, id, notRunning);
    return;
  }
  // A start in progress (status already shows its QEMU) finishes first; after a vmm restart the guest is
  // attached once the new vmm has adopted it.
  untilStarted(vm, 30_000).then(() => p.roles.untilVmm(vm.record.id, 10_000)).then(() => {
    const vmm = p.roles.vmm;
    if (vm.runtime === null || vm.state === 'starting' || vmm === null) return socketReject(socket, id, notRunning);
    vmm.send({ type: 'vm.console.attach', vmId: vm.record.id, name: vm.record.name, reqId: id, remainder: msg.remainder }, socket);
  }, (err: unknown) => socketReject(socket, id, err));
}

/** `vmctl capture`: root or the VM's owner, a running VM, a NIC with a host link; then tcpdump streams to the client. */
export function captureRequest(p: Parent, msg: Extract<ControlToParent, { type: 'control.capture' }>, socket: Socket): void {
  if (msg.request.type !== 'vm.capture.request') return;
  const req = msg.request;
  try {
    const e = vmPermittedGet(p, req.target, msg);
    const name = e.record.name;
    if (e.runtime === null || e.state === 'starting') {
      throw new VmdError('ERR_VM_NOT_RUNNING', `vm "${name}": not running`, { hint: `start it with: vmctl start ${name}` });
    }
    const nics = e.record.config.interfaces.length;
    if (req.interface >= nics) {
      throw new VmdError('ERR_INVALID', `vm "${name}": no interface ${req.interface}`, {
        hint: nics === 0 ? 'it has no network interfaces' : `its interfaces are numbered 0 to ${nics - 1}, as vmctl links ${name} shows`,
      });
    }
    if (!p.env.root) throw new VmdError('ERR_UNSUPPORTED', `vm "${name}": capture: needs vmd to run as root`);
    const link = p.network.linkOf(e.record.id, req.interface);
    if (link === null) {
      throw new VmdError('ERR_INVALID', `vm "${name}": interface ${req.interface}: no host link to capture on (user-mode networking)`, {
        hint: 'attach the interface to a switch, or make it a local interface',
      });
    }
    // tcpdump's own unprivileged user when the system has one, vmd's otherwise; either keeps only CAP_NET_RAW.
    const user = getpwnam('tcpdump') ?? p.env.ident ?? { uid: 0, gid: 0 };
    const header = encodeFrame({ type: 'vm.capture.response', id: req.id, vmId: e.record.id, name, interface: req.interface, link: link.name });
    const optional = {
      ...(req.count === undefined ? {} : { count: req.count }),
      ...(req.snaplen === undefined ? {} : { snaplen: req.snaplen }),
      ...(req.filter === undefined ? {} : { filter: req.filter }),
    };
    p.captures.start(
      e.record.id,
      { vm: name, index: req.interface, link: link.name, ...(req.filter === undefined ? {} : { filter: req.filter }) },
      { link: link.name, netns: link.netns, uid: user.uid, gid: user.gid, ...optional },
      socket, header,
    ).catch((err: unknown) => socketReject(socket, req.id, err));
  } catch (err) {
    socketReject(socket, req.id, err);
  }
}
