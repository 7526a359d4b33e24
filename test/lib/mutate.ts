// Seeded random mutation of valid messages, for property tests of readers: a failure names the seed that reproduces it.
// The caller gives the vocabulary (keys, strings, types) its messages use, so mutants are near misses, not noise.

/** mulberry32: a small seeded generator, so a failure names a seed that reproduces it. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** An own property even for `__proto__`, as JSON.parse makes it. */
export function setOwn(o: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true });
}

/** The words a reader's messages use: mutants put them in the wrong places. */
export interface Vocabulary {
  readonly keys: readonly string[];
  readonly strings: readonly string[];
  /** Types to swap into a message's `type`: other messages' and near misses. */
  readonly types: readonly string[];
}

/** Keys every reader must survive, whatever its vocabulary. */
export const HOSTILE_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'valueOf', 'hasOwnProperty', 'toJSON', 'length', '0', '', 'extra'];

const NUMBERS = [0, 1, -1, 2, 3, 4, 7, 63, 64, 65, 1023, 1024, 65535, 65536, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 53 - 1, 2 ** 53, 1e300, -1e300,
  0.5, -0.0, Number.NaN, Infinity, -Infinity, Number.MAX_VALUE, Number.MIN_VALUE];

function randomValue(r: () => number, depth: number, words: Vocabulary): unknown {
  const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!;
  const roll = r();
  if (roll < 0.1) return null;
  if (roll < 0.2) return r() < 0.5;
  if (roll < 0.45) return pick(NUMBERS);
  if (roll < 0.7) return pick(words.strings);
  if (depth <= 0) return undefined;
  if (roll < 0.85) return Array.from({ length: Math.floor(r() * 4) }, () => randomValue(r, depth - 1, words));
  const o: Record<string, unknown> = r() < 0.05 ? Object.create(null) : {};
  for (let n = Math.floor(r() * 4); n > 0; n--) setOwn(o, pick(words.keys), randomValue(r, depth - 1, words));
  return o;
}

/** Every object or array inside a value, with the value itself first. */
function containers(v: unknown, out: Array<Record<string, unknown> | unknown[]> = []): Array<Record<string, unknown> | unknown[]> {
  if (typeof v === 'object' && v !== null) {
    out.push(v as Record<string, unknown>);
    for (const child of Object.values(v)) containers(child, out);
  }
  return out;
}

/** One to three random edits of a copy of `msg`: delete, replace, add a key, a bad string, another type. */
export function mutate(msg: unknown, r: () => number, words: Vocabulary): unknown {
  const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!;
  let m: unknown = structuredClone(msg);
  for (let steps = 1 + Math.floor(r() * 3); steps > 0; steps--) {
    const places = containers(m);
    const roll = r();
    if (roll < 0.03 || places.length === 0) {
      m = randomValue(r, 3, words);
      continue;
    }
    const place = pick(places);
    const keys = Object.keys(place);
    if (roll < 0.3 && keys.length > 0) {
      // Delete a field or an element.
      const k = pick(keys);
      if (Array.isArray(place)) place.splice(Number(k), 1);
      else delete place[k];
    } else if (roll < 0.65 && keys.length > 0) {
      // Replace a value with anything.
      setOwn(place as Record<string, unknown>, pick(keys), randomValue(r, 2, words));
    } else if (roll < 0.8) {
      // Add a key, known or not (`__proto__` and friends included).
      if (Array.isArray(place)) place.push(randomValue(r, 2, words));
      else setOwn(place, pick(words.keys), randomValue(r, 2, words));
    } else if (roll < 0.9 && keys.length > 0) {
      // Swap in a string of the wrong length or content.
      setOwn(place as Record<string, unknown>, pick(keys), pick(words.strings));
    } else if (typeof m === 'object' && m !== null && !Array.isArray(m)) {
      // Another message's type, or a near-miss of one.
      setOwn(m as Record<string, unknown>, 'type', pick(words.types));
    }
  }
  // Half the time as it would arrive: through JSON (NaN becomes null, undefined keys vanish, __proto__ stays own).
  if (r() < 0.5) {
    const json = JSON.stringify(m);
    m = json === undefined ? m : JSON.parse(json);
  }
  return m;
}
