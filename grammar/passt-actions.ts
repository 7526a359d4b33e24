// The actions of a `passt interface { … }`: its outward device and address style, and the refusal of the
// interface options a passt NIC cannot honour (its traffic never crosses a bridge or the forwarding path).

import { isIPv4 } from 'node:net';
import { PASST_NAT_ADDRESS } from '../share/config.js';
import { ifNameError } from '../share/names.js';
import type { ActionBase } from './action-base.js';
import type { IfaceOpt } from './ast.js';
import { formatIPv4, maskIPv4, parseIPv4Net, strtonum } from './values.js';

/** A passt NIC's settings while its block is read. */
export interface PasstDraft {
  dev: string | null;
  address: string | null;
}

/**
 * The options of a passt interface that are its own (`dev`, `nat`, `address`); false for the shared ones.
 * Those a passt NIC cannot honour fail here, naming the line, so nothing in its block is silently ignored.
 */
export function passtOption(a: ActionBase, p: PasstDraft, o: IfaceOpt, la: number): boolean {
  switch (o.kind) {
    case 'dev': {
      const v = a.text(o.value);
      if (ifNameError(v) !== null) a.fail(o.value, `invalid interface: ${v}`, la);
      p.dev = v;
      return true;
    }
    case 'nat':
      p.address = PASST_NAT_ADDRESS;
      return true;
    case 'address': {
      const v = a.text(o.value);
      const err = passtAddressError(v);
      if (err !== null) a.fail(o.value, `invalid address: ${v}: ${err}`, la);
      p.address = v;
      return true;
    }
    case 'rule':
      // Decided: passt carries the guest's traffic on the host's own sockets, so per-link nftables rules never
      // see it; the only way in is a forward. A rule that could not be enforced is an error, not a no-op.
      a.fail(o.start, 'filter rules cannot apply to a passt interface: its traffic never crosses the forwarding path '
        + '(only its forward ports reach the guest)', la);
      break;
    case 'switch': case 'group': case 'rdomain': case 'allow':
      a.fail(o.start, `${o.kind}: not available on a passt interface`, la);
      break;
    case 'lladdr':
      if (o.locked) a.fail(o.start, 'locked lladdr: not available on a passt interface', la);
      return false;
    default:
      return false;
  }
  return false;
}

/** Why `address CIDR` cannot be a qemu-style guest address (IPv4, /8../30, a host address, not the router), or null. */
export function passtAddressError(text: string): string | null {
  const [addr = '', lenText] = text.split('/');
  if (!isIPv4(addr) || lenText === undefined || !/^[0-9]+$/.test(lenText)) return 'want an IPv4 ADDRESS/LENGTH';
  const len = strtonum(lenText, 8, 30);
  if (typeof len !== 'number') return 'length must be 8 to 30';
  const a = parseIPv4Net(addr)!;
  const net = maskIPv4(a, len);
  const broadcast = (net | (2 ** (32 - len) - 1)) >>> 0;
  if (a === net || a === broadcast) return 'a network or broadcast address';
  if (a === net + 2) return `${formatIPv4(a)} is the router's address`;
  return null;
}
