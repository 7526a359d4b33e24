// The control-socket connections the parent handed to control, with the uid and gid the kernel gave for each.
// Control names a connection by the id the parent gave it; a uid it claims for that connection is checked here.

import type { ControlToParent } from '../../share/ipc.js';
import { ProtocolError } from '../../share/protocol.js';
import type { PeerIds } from '../accept.js';

export interface PeerCred {
  readonly peer: number;
  readonly uid: number;
  readonly gid: number;
}

/**
 * Why a subverted control cannot act as root: the parent learns each connection's credentials itself (SO_PEERCRED
 * at accept, vmd/accept.ts) and refuses a message whose uid or gid differs from them, or that names a connection it never handed
 * out. RoleChannel treats the refusal like any malformed message: the role is killed, the message not acted on.
 */
export class ControlPeers {
  readonly #peers = new Map<number, { uid: number; gid: number }>();
  #next = 1;

  /** A new connection's id, recorded with the credentials the kernel gave for it. */
  register(cred: PeerIds): PeerCred {
    const peer = this.#next++;
    this.#peers.set(peer, { uid: cred.uid, gid: cred.gid });
    return { peer, uid: cred.uid, gid: cred.gid };
  }

  /** Checks who a message from control says it acts for; a connection whose socket left control is forgotten. */
  check(msg: ControlToParent): ControlToParent {
    if (msg.type === 'control.ready') return msg;
    const known = this.#peers.get(msg.peer);
    if (msg.type === 'control.closed') {
      this.#peers.delete(msg.peer);
      return msg;
    }
    if (known === undefined) throw new ProtocolError(`${msg.type}: connection ${msg.peer} was never handed to control`);
    if (known.uid !== msg.uid || known.gid !== msg.gid) {
      throw new ProtocolError(`${msg.type}: connection ${msg.peer} is uid ${known.uid} gid ${known.gid}, not uid ${msg.uid} gid ${msg.gid}`);
    }
    // Console, capture and stream requests take the socket with them: control no longer has the connection.
    if (msg.type !== 'control.request') this.#peers.delete(msg.peer);
    return msg;
  }

  /** Control is gone, and every connection it held with it. */
  clear(): void {
    this.#peers.clear();
  }

  get size(): number {
    return this.#peers.size;
  }
}
