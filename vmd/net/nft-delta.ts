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
  if (a.kind === 'chain' && b.kind === 'chain') return a.hook === b.hook;
  const s = a as SetItem;
  const t = b as SetItem;
  return s.type === t.type && s.flags === t.flags;
}

/** Chains kept from `old` to `next` with other rules, by `family name`. */
function rewritten(old: NftModel, next: NftModel): Array<{ family: NftFamily; chain: ChainItem }> {
  const out: Array<{ family: NftFamily; chain: ChainItem }> = [];
  for (const [family, items] of next) {
    const pairs = paired(old.get(family) ?? [], items);
    if (pairs === null) continue;
    for (const [o, i] of pairs.kept) if (i.kind === 'chain' && o.kind === 'chain' && !sameRules(o, i)) out.push({ family, chain: i });
  }
  return out;
}

/** One table's two versions matched up: declarations only in `next`, in both but not the same object, only in `old`. */
export interface Pairing { readonly added: Decl[]; readonly kept: Array<[Decl, Decl]>; readonly removed: Decl[] }

/** How far ahead the walk looks for the item it stands at: more than one link's run of declarations in a section. */
const RESYNC = 16;

/**
 * The pairing of two versions, or null when they hold an include or a declaration whose type changed (only a
 * replace can do it). Remembered for the pair, since deltaSeedChains and nftDelta both ask.
 */
function paired(old: readonly NftItem[], next: readonly NftItem[]): Pairing | null {
  const known = pairings.get(next);
  if (known !== undefined && known.old === old) return known.pairing;
  const pairing = pairByWalk(old, next) ?? pairByKey(old, next);
  pairings.set(next, { old, pairing });
  return pairing;
}

const pairings = new WeakMap<readonly NftItem[], { old: readonly NftItem[]; pairing: Pairing | null }>();

/**
 * The pairing by walking both versions side by side: nft.ts keeps an unchanged link's declarations as the same
 * objects and in the same order, so a start or a stop is a short run of additions or removals among thousands of
 * identical items, found without a map of every declaration. Null when the walk cannot tell (a run longer than
 * RESYNC, a declaration that moved): pairByKey decides then.
 */
export function pairByWalk(old: readonly NftItem[], next: readonly NftItem[]): Pairing | null {
  const added: Decl[] = [];
  const kept: Array<[Decl, Decl]> = [];
  const removed: Decl[] = [];
  let i = 0;
  let j = 0;
  while (i < old.length || j < next.length) {
    const o = old[i];
    const n = next[j];
    if (o !== undefined && o === n) {
      i++;
      j++;
    } else if (n === undefined) {
      removed.push(o as Decl);
      i++;
    } else if (o === undefined) {
      added.push(n as Decl);
      j++;
    } else if (keyOf(o) === keyOf(n)) {
      kept.push([o as Decl, n as Decl]);
      i++;
      j++;
    } else {
      const ahead = lookAhead(next, j, o);
      const behind = ahead < 0 ? lookAhead(old, i, n) : -1;
      if (ahead < 0 && behind < 0) return null;
      if (ahead >= 0) for (; j < ahead; j++) added.push(next[j] as Decl);
      else for (; i < behind; i++) removed.push(old[i] as Decl);
    }
  }
  if ([...added, ...removed].some((x) => (x.kind as string) === 'include') || kept.some(([a, b]) => !compatible(a, b))) return null;
  // A key both added and removed is a declaration that moved: pairByKey pairs it as kept instead.
  if (added.length > 0 && removed.length > 0) {
    const gone = new Set(removed.map(keyOf));
    if (added.some((x) => gone.has(keyOf(x)))) return null;
  }
  return { added, kept, removed };
}

/** The index in `items` after `from` (within RESYNC) holding `item` itself, or -1. */
function lookAhead(items: readonly NftItem[], from: number, item: NftItem): number {
  const end = Math.min(items.length, from + 1 + RESYNC);
  for (let k = from + 1; k < end; k++) if (items[k] === item) return k;
  return -1;
}

/** The pairing by key: every declaration of `next` looked up among `old`'s (the reference the walk is tested against). */
export function pairByKey(old: readonly NftItem[], next: readonly NftItem[]): Pairing | null {
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
  return { added, kept, removed };
}

/** The elements of `a` that `b` lacks, in `a`'s order. */
function missingFrom(a: readonly string[], b: readonly string[]): string[] {
  if (a === b) return [];
  if (b.length === 0) return [...a];
  const have = setOf(b);
  return a.filter((e) => !have.has(e));
}

/**
 * A version's elements as a set, made once: a map's elements are the `next` of one delta and the `old` of the
 * following one. nft.ts makes an unchanged link's element the same string each time, so its hash is not made again.
 */
function setOf(items: readonly string[]): ReadonlySet<string> {
  let s = elementSets.get(items);
  if (s === undefined) elementSets.set(items, s = new Set(items));
  return s;
}

const elementSets = new WeakMap<readonly string[], ReadonlySet<string>>();

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
  const pairs = paired(old, next);
  if (pairs === null) return null;
  const { added, kept, removed } = pairs;
  const t = `${family} vmd`;
  const out: string[] = [];
  // New objects first (declarations, chains with their rules), so the elements and rules below can name them.
  const order = (i: Decl): number => ({ set: 0, map: 0, chain: 1 })[i.kind];
  if (added.length > 0) out.push(...tableLines(family, [...added].sort((a, b) => order(a) - order(b)), false));
  for (const [o, i] of kept) {
    if (o.kind !== 'chain' || i.kind !== 'chain' || sameRules(o, i)) continue;
    const seed = seeds.get(`${family} ${i.name}`);
    out.push(`flush chain ${t} ${i.name}`, ...i.rules.map((r) => `add rule ${t} ${i.name} ${seeded(r, seed)}`));
  }
  // Elements: removed before added, so an element whose verdict changed is replaced rather than refused.
  for (const [o, i] of kept) {
    if ((o.kind !== 'set' && o.kind !== 'map') || (i.kind !== 'set' && i.kind !== 'map')) continue;
    // A map's element is deleted by its key alone.
    const gone = missingFrom(o.elements, i.elements).map((e) => (i.kind === 'map' ? e.split(' : ')[0]! : e));
    if (gone.length > 0) out.push(`delete element ${t} ${i.name} { ${gone.join(', ')} }`);
  }
  const fresh = (i: Decl, had: readonly string[]): void => {
    if (i.kind !== 'set' && i.kind !== 'map') return;
    const add = missingFrom(i.elements, had);
    if (add.length > 0) out.push(`add element ${t} ${i.name} ${elementsLine(add).replace(/^elements = /, '')}`);
  };
  for (const i of added) fresh(i, []);
  for (const [o, i] of kept) fresh(i, o.kind === 'set' || o.kind === 'map' ? o.elements : []);
  // Deletions: chains emptied first (their rules name sets and maps), then maps (whose verdicts name chains).
  for (const o of removed) if (o.kind === 'chain') out.push(`flush chain ${t} ${o.name}`);
  for (const o of removed) if (o.kind === 'set' || o.kind === 'map') out.push(`delete ${o.kind === 'map' ? 'map' : 'set'} ${t} ${o.name}`);
  for (const o of removed) if (o.kind === 'chain') out.push(`delete chain ${t} ${o.name}`);
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
