// Field readers for untrusted messages: each returns the value or throws ProtocolError naming the message and field.
// The one kit behind every reader of the control protocol (read-request.ts, read-response.ts) and of sibling roles (ipc.ts).

import { MAX_PATH, ProtocolError } from './protocol.js';

/** A decoded JSON object, before any of its fields is trusted. */
export type Obj = Record<string, unknown>;

/** A plain object: not null, not an array. */
export function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Refuses any key not in `allowed`: a field vmd does not know is a client (or role) it does not understand. */
export function onlyKeys(o: Obj, allowed: readonly string[], what: string): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) throw new ProtocolError(`${what}: unknown field "${k.slice(0, 64)}"`);
  }
}

/** A non-empty string of at most `max` characters without NUL (it may end up in argv or a path). */
export function str(o: Obj, key: string, max: number, what: string): string {
  const v = o[key];
  if (typeof v !== 'string') throw new ProtocolError(`${what}: field "${key}" must be a string`);
  if (v.length === 0 || v.length > max) throw new ProtocolError(`${what}: field "${key}" must be 1 to ${max} characters`);
  if (v.includes('\0')) throw new ProtocolError(`${what}: field "${key}" contains a NUL byte`);
  return v;
}

/** `str`, or undefined when the key is absent. */
export function optStr(o: Obj, key: string, max: number, what: string): string | undefined {
  return o[key] === undefined ? undefined : str(o, key, max, what);
}

/** A safe integer from `min` to `max`. */
export function int(o: Obj, key: string, min: number, max: number, what: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    throw new ProtocolError(`${what}: field "${key}" must be an integer from ${min} to ${max}`);
  }
  return v;
}

/** `int`, or undefined when the key is absent. */
export function optInt(o: Obj, key: string, min: number, max: number, what: string): number | undefined {
  return o[key] === undefined ? undefined : int(o, key, min, max, what);
}

/** true or false, nothing truthy. */
export function bool(o: Obj, key: string, what: string): boolean {
  const v = o[key];
  if (typeof v !== 'boolean') throw new ProtocolError(`${what}: field "${key}" must be true or false`);
  return v;
}

/** One string of a fixed set (an enum). */
export function oneOf<T extends string>(o: Obj, key: string, values: readonly T[], what: string): T {
  const v = o[key];
  if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) {
    throw new ProtocolError(`${what}: field "${key}" must be one of ${values.join(', ')}`);
  }
  return v as T;
}

/** A list of at most `max` entries, or undefined when absent; the caller reads each entry. */
export function array(o: Obj, key: string, max: number, what: string): unknown[] | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length > max) throw new ProtocolError(`${what}: field "${key}" must be a list of at most ${max}`);
  return v;
}

/** Absolute path, bounded: paths in requests were resolved by the client. */
export function path(o: Obj, key: string, what: string): string | undefined {
  const p = optStr(o, key, MAX_PATH, what);
  if (p !== undefined && !p.startsWith('/')) throw new ProtocolError(`${what}: field "${key}" must be an absolute path`);
  return p;
}
