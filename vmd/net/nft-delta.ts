// The change from one version of vmd's tables to the next as one small nft script (new objects, added and
// removed map elements, rewritten chains, deletions), so a guest's start or stop costs the same at any fleet size.

import type { CounterSeed } from './firewall.js';
import { elementsLine, ruleKey, tableLines, type NftFamily, type NftItem, type NftModel } from './nft-model.js';

type Decl = Exclude<NftItem, { kind: 'include' }>;
type SetItem = Extract<NftItem, { kind: 'set' | 'map' }>;
type ChainItem = Extract<NftItem, { kind: 'chain' }>;

const keyOf = (i: NftItem): string => {
  let k = keys.get(i);
  if (k === undefined) keys.set(i, k = `${i.kind === 'map' ? 'set' : i.kind} ${i.name}`);
  return k;
};
const keys = new WeakMap<NftItem, string>();
/** Declarations by key; remembered per version, since each version is the `next` of one delta and the `old` of the following one. */
const byKey = (items: readonly NftItem[]): Map<string, NftItem> => {
  let m = byKeySeen.get(items);
  if (m === undefined) byKeySeen.set(items, m = new Map(items.map((i) => [keyOf(i), i])));
  return m;
};
const byKeySeen = new WeakMap<readonly NftItem[], Map<string, NftItem>>();
const sameRules = (a: ChainItem, b: ChainItem): boolean => a.rules === b.rules || (a.rules.length === b.rules.length && a.rules.every((r, n) => ruleKey(r) === ruleKey(b.rules[n]!)));
/** An anonymous counter (`counter`, not `counter name "…"`), whose value lives in its rule and goes with it. */
const ANON_COUNTER = /\bcounter(?! name)\b/;

/** Whether two versions of one declaration can be turned into each other by element or rule changes alone. */
function compatible(a: NftItem, b: NftItem): boolean {
  if (a.kind === 'include' || b.kind === 'include' || a.kind !== b.kind) return false;
  if (a.kind === 'counter' && b.kind === 'counter') return a.comment === b.comment;
  if (a.kind === 'chain' && b.kind === 'chain') return a.hook === b.hook;
  const s = a as SetItem;
  const t = b as SetItem;
  return s.type === t.type && s.flags === t.flags;
}

/** Chains kept from `old` to `next` with other rules, by `family name`. */
function rewritten(old: NftModel, next: NftModel): Array<{ family: NftFamily; chain: ChainItem }> {
  const out: Array<{ family: NftFamily; chain: ChainItem }> = [];
  for (const [family, items] of next) {
    const before = byKey(old.get(family) ?? []);
    for (const i of items) {
      const o = before.get(keyOf(i));
      if (i.kind === 'chain' && o?.kind === 'chain' && !sameRules(o, i)) out.push({ family, chain: i });
    }
  }
  return out;
}

/**
 * The chains a delta rewrites whose rules hold anonymous counters (`family name`): their values must be read
 * first and passed to nftDelta as seeds, or the rewrite would start them again from zero.
 */
export function deltaSeedChains(old: NftModel, next: NftModel): Array<{ family: NftFamily; chain: string }> {
  return rewritten(old, next).filter((c) => c.chain.rules.some((r) => ANON_COUNTER.test(r))).map((c) => ({ family: c.family, chain: c.chain.name }));
}

/** A rule with the first anonymous counter carrying its comment's seed (taken once, as chainRules takes it). */
function seeded(rule: string, seed: CounterSeed | undefined): string {
  const comment = /comment "([^"]*)"$/.exec(rule)?.[1];
  const s = comment === undefined ? undefined : seed?.get(comment);
  if (s === undefined) return rule;
  seed!.delete(comment!);
  return rule.replace(ANON_COUNTER, `counter packets ${s.packets} bytes ${s.bytes}`);
}

/** The commands of one table that exists in both versions, in an order nft accepts in one transaction. */
function tableDelta(family: NftFamily, old: readonly NftItem[], next: readonly NftItem[], seeds: ReadonlyMap<string, CounterSeed>): string[] | null {
  const before = byKey(old);
  const after = byKey(next);
  const added: Decl[] = [];
  const kept: Array<[Decl, Decl]> = [];
  for (const i of next) {
    const o = before.get(keyOf(i));
    if (i.kind === 'include') return null;
    // The same object: an unchanged link's declaration (nft.ts keeps them), nothing to compare or rewrite.
    if (o === i) continue;
    if (o === undefined) added.push(i);
    else if (!compatible(o, i)) return null;
    else kept.push([o as Decl, i]);
  }
  const removed = old.filter((o) => !after.has(keyOf(o))) as Decl[];
  if (removed.some((o) => (o.kind as string) === 'include')) return null;
  const t = `${family} vmd`;
  const out: string[] = [];
  // New objects first (declarations, chains with their rules), so the elements and rules below can name them.
  const order = (i: Decl): number => ({ counter: 0, set: 1, map: 1, chain: 2 })[i.kind];
  if (added.length > 0) out.push(...tableLines(family, [...added].sort((a, b) => order(a) - order(b)), false));
  for (const [o, i] of kept) {
    if (o.kind !== 'chain' || i.kind !== 'chain' || sameRules(o, i)) continue;
    const seed = seeds.get(`${family} ${i.name}`);
    out.push(`flush chain ${t} ${i.name}`, ...i.rules.map((r) => `add rule ${t} ${i.name} ${seeded(r, seed)}`));
  }
  // Elements: removed before added, so an element whose verdict changed is replaced rather than refused.
  for (const [o, i] of kept) {
    if ((o.kind !== 'set' && o.kind !== 'map') || (i.kind !== 'set' && i.kind !== 'map')) continue;
    const now = new Set(i.elements);
    // A map's element is deleted by its key alone.
    const gone = o.elements.filter((e) => !now.has(e)).map((e) => (i.kind === 'map' ? e.split(' : ')[0]! : e));
    if (gone.length > 0) out.push(`delete element ${t} ${i.name} { ${gone.join(', ')} }`);
  }
  for (const i of next) {
    if (i.kind !== 'set' && i.kind !== 'map') continue;
    const o = before.get(keyOf(i));
    const had = new Set(o !== undefined && (o.kind === 'set' || o.kind === 'map') ? o.elements : []);
    const fresh = i.elements.filter((e) => !had.has(e));
    if (fresh.length > 0) out.push(`add element ${t} ${i.name} ${elementsLine(fresh).replace(/^elements = /, '')}`);
  }
  // Deletions: chains emptied first (their rules name sets, maps and counters), then maps (whose verdicts name chains).
  for (const o of removed) if (o.kind === 'chain') out.push(`flush chain ${t} ${o.name}`);
  for (const o of removed) if (o.kind === 'set' || o.kind === 'map') out.push(`delete ${o.kind === 'map' ? 'map' : 'set'} ${t} ${o.name}`);
  for (const o of removed) if (o.kind === 'chain') out.push(`delete chain ${t} ${o.name}`);
  for (const o of removed) if (o.kind === 'counter') out.push(`delete counter ${t} ${o.name}`);
  return out;
}

/**
 * The script that turns vmd's tables from `old` into `next` in one atomic nft run: '' when nothing changes,
 * null when only a full replace can do it (an included file, a declaration whose type changed). Seeds (by
 * `family chain`, from deltaSeedChains) carry the anonymous counters of rewritten chains; they are consumed.
 */
export function nftDelta(old: NftModel, next: NftModel, seeds: ReadonlyMap<string, CounterSeed> = new Map()): string | null {
  const out: string[] = [];
  for (const family of ['inet', 'arp', 'bridge'] as const) {
    const o = old.get(family);
    const n = next.get(family);
    if (n?.some((i) => i.kind === 'include') || o?.some((i) => i.kind === 'include')) return null;
    if (o === undefined && n !== undefined) out.push(...tableLines(family, n));
    else if (o !== undefined && n === undefined) out.push(`delete table ${family} vmd`);
    else if (o !== undefined && n !== undefined) {
      const lines = tableDelta(family, o, n, seeds);
      if (lines === null) return null;
      out.push(...lines);
    }
  }
  return out.length === 0 ? '' : `${out.join('\n')}\n`;
}
