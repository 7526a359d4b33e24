// A migrated guest's firewall counters as they travel from the source vmd through vmctl to the target: keyed by what
// they count with the VM's name left off, so the target can only ever add to the counters of the VM it received.

import { ProtocolError } from './protocol.js';
import { isObj, onlyKeys } from './read.js';

/** One counter of a VM's links and forwards: `what` is its comment after `vm 'NAME' ` (`if0 rule 2`, `forward tcp/8080`). */
export interface CarriedCount {
  readonly what: string;
  readonly packets: number;
  readonly bytes: number;
}

/**
 * Counters one VM may carry: 4 per NIC, one per rule and forward; vm.conf allows far fewer NICs, rules and
 * forwards than would reach it, so a longer list is not vmd's.
 */
export const MAX_CARRIED_COUNTS = 1024;

/** What firewall.ts and nft-plan.ts write after a VM's name, and nothing else. */
const WHAT_RE = /^(?:if\d{1,3} (?:mac-spoof|ip-spoof|guard|vlan|rule \d{1,5})|forward (?:tcp|udp)\/\d{1,5})$/;

/** The prefix of every comment of VM `name`'s counters (firewall.ts linkComment, nft-plan.ts forwardComment). */
export function countPrefix(name: string): string {
  return `vm '${name}' `;
}

/** Whether a counter's comment, less its VM's prefix, is one a peer may carry. */
export function carriableWhat(what: string): boolean {
  return WHAT_RE.test(what);
}

/** Reads a list of carried counters from a peer: bounded, each one of the VM's own counters, once. */
export function readCarriedCounts(v: unknown, what: string): CarriedCount[] {
  if (!Array.isArray(v) || v.length > MAX_CARRIED_COUNTS) {
    throw new ProtocolError(`${what}: field "counters" must be a list of at most ${MAX_CARRIED_COUNTS} counters`);
  }
  const seen = new Set<string>();
  return v.map((c: unknown, n) => {
    const w = `${what}: counter ${n + 1}`;
    if (!isObj(c)) throw new ProtocolError(`${w}: must be an object`);
    onlyKeys(c, ['what', 'packets', 'bytes'], w);
    if (typeof c.what !== 'string' || !carriableWhat(c.what)) throw new ProtocolError(`${w}: field "what" must name a counter of the VM's interfaces or forwards`);
    if (seen.has(c.what)) throw new ProtocolError(`${w}: "${c.what}" given twice`);
    seen.add(c.what);
    for (const k of ['packets', 'bytes'] as const) {
      const x = c[k];
      if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) throw new ProtocolError(`${w}: field "${k}" must be a count from 0 to ${Number.MAX_SAFE_INTEGER}`);
    }
    return { what: c.what, packets: c.packets as number, bytes: c.bytes as number };
  });
}
