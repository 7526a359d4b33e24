// A migrated guest's firewall and forward counters: read at the source by their comments (`vm 'NAME' …`), carried
// without the name, and turned back into seeds for the target's VM of the same links (Rulesets.countersCarry).

import { carriableWhat, countPrefix, MAX_CARRIED_COUNTS, type CarriedCount } from '../../share/migrate-counters.js';
import type { CounterSeed } from './firewall.js';
import { nftCounters } from './nft-apply.js';

/** Counters by comment, kept only when they are VM `name`'s, less its prefix: what a migration carries. */
export function carriedOf(name: string, counters: ReadonlyMap<string, { packets: number; bytes: number }>): CarriedCount[] {
  const prefix = countPrefix(name);
  const out: CarriedCount[] = [];
  for (const [comment, c] of counters) {
    const what = comment.slice(prefix.length);
    if (!comment.startsWith(prefix) || !carriableWhat(what) || (c.packets === 0 && c.bytes === 0)) continue;
    out.push({ what, packets: Math.min(c.packets, Number.MAX_SAFE_INTEGER), bytes: Math.min(c.bytes, Number.MAX_SAFE_INTEGER) });
  }
  return out.slice(0, MAX_CARRIED_COUNTS);
}

/** Carried counts as seeds for VM `name` here: only ever its own comments, whatever the peer sent. */
export function carriedSeed(name: string, counts: readonly CarriedCount[]): CounterSeed {
  const seed: CounterSeed = new Map();
  for (const c of counts) if (carriableWhat(c.what)) seed.set(`${countPrefix(name)}${c.what}`, { packets: c.packets, bytes: c.bytes });
  return seed;
}

// PRIV: lists vmd's nftables tables in the VM's namespaces.
/** VM `name`'s counters now, summed over `spaces`: the namespaces of its links and the host's (local forwards). */
export async function countsRead(spaces: Iterable<string | null>, name: string): Promise<CarriedCount[]> {
  const all = new Map<string, { packets: number; bytes: number }>();
  for (const ns of spaces) {
    for (const [k, v] of await nftCounters(ns)) {
      const had = all.get(k) ?? { packets: 0, bytes: 0 };
      all.set(k, { packets: had.packets + v.packets, bytes: had.bytes + v.bytes });
    }
  }
  return carriedOf(name, all);
}
