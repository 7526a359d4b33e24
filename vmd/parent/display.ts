// `vmctl display VM`: who may see a guest's screen, and the connection to its VNC socket that control relays.
// The socket's directory and permissions are display-socket.ts's; the bytes never pass through the parent.

import { connect, type Socket } from 'node:net';
import { errnoMessage } from '../../share/errno.js';
import { VmdError } from '../../share/errors.js';
import type { ControlRequest } from '../../share/protocol.js';
import type { Parent } from './context.js';
import { displaySealed, displaySocket } from './display-socket.js';
import { vmPermittedGet, type Asker } from './requests.js';

/** A connect to QEMU's VNC socket that takes longer than this means QEMU is stuck: the client hears so. */
const CONNECT_TIMEOUT_MS = 5000;

/**
 * `vmctl display VM`: root or the VM's owner (as for console), a running VM with `display vnc`. The parent connects
 * to the socket and hands the connection to control, which writes the response and relays the bytes both ways.
 */
export async function vmDisplayRequest(p: Parent, who: Asker, req: Extract<ControlRequest, { type: 'vm.display.request' }>): Promise<void> {
  const e = vmPermittedGet(p, req.target, who);
  const name = e.record.name;
  if (e.runtime === null || e.state === 'starting') {
    throw new VmdError('ERR_VM_NOT_RUNNING', `vm "${name}": not running`, { hint: `start it with: vmctl start ${name}` });
  }
  if (e.record.config.display !== 'vnc') {
    throw new VmdError('ERR_INVALID', `vm "${name}": display: the vm has no display`, {
      hint: 'add "display vnc" to its vm block in vm.conf, reload, and start it again',
    });
  }
  if (!displaySealed(p, e.record.id)) {
    throw new VmdError('ERR_QEMU', `vm "${name}": display: its socket was not made ready`, { hint: `restart the vm: vmctl stop ${name}; vmctl start ${name}` });
  }
  const vnc = await displayConnect(name, displaySocket(p.env.runRoot, e.record.id));
  const control = p.roles.control;
  if (control === null) {
    vnc.destroy();
    throw new VmdError('ERR_PROTOCOL', `vm "${name}": display: control is restarting`);
  }
  control.send({ type: 'control.display', peer: who.peer, response: { type: 'vm.display.response', id: req.id, vmId: e.record.id, name } }, vnc);
}

/** Connects to a VNC socket, paused: the first byte (QEMU's RFB greeting) is for the client, read by control. */
function displayConnect(name: string, path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ path });
    socket.pause();
    const timer = setTimeout(() => socket.destroy(new Error('timed out')), CONNECT_TIMEOUT_MS);
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(new VmdError('ERR_QEMU', `vm "${name}": display: ${path}: ${errnoMessage(err)}`, { cause: err }));
    });
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
  });
}
