// Value syntaxes of vm.conf checked by the grammar's actions: MACs, prefixes, addresses (names: share/names.ts).
// Re-implementations of the libc behaviour OpenBSD's parse.y relies on (ether_aton, inet_net_pton, …); sizes
// (scan_scaled/fmt_scaled) are share/scaled.ts, shared with vmctl.

import { isIPv4, isIPv6 } from 'node:net';
import type { Prefix4, Prefix6 } from '../share/config.js';

/** ether_aton(3) as OpenBSD's libc: six strtol(…, 16) octets split by `:`; returns lowercase `xx:…` or null. */
export function etherAton(text: string): string | null {
  let s = 0;
  while (s < text.length && /\s/.test(text[s]!)) s++;
  const octets: string[] = [];
  for (let i = 0; i < 6; i++) {
    const m = /^\s*([+-]?)(?:0[xX](?=[0-9a-fA-F]))?([0-9a-fA-F]+)/.exec(text.slice(s));
    if (m === null) return null;
    const value = parseInt(m[2]!, 16) * (m[1] === '-' ? -1 : 1);
    if (value > 0xff || value < 0 || Number.isNaN(value)) return null;
    const after = s + m[0].length;
    const c = text[after];
    if (!(c === ':' || (i === 5 && (c === undefined || /\s/.test(c))))) return null;
    octets.push(value.toString(16).padStart(2, '0'));
    s = after + 1;
  }
  return octets.join(':');
}

/** strtonum(3)-style range check of a decimal number; returns the value or OpenBSD's reason text. */
export function strtonum(text: string, min: number, max: number): number | 'invalid' | 'too small' | 'too large' {
  if (!/^\s*[+-]?[0-9]+$/.test(text)) return 'invalid';
  const v = BigInt(text.trim());
  if (v < BigInt(min)) return 'too small';
  if (v > BigInt(max)) return 'too large';
  return Number(v);
}

/** Dotted-quad (or inet_net_pton's shortened `10`, `10.1`) to a 32-bit number, or null. */
export function parseIPv4Net(text: string): number | null {
  const parts = text.split('.');
  if (parts.length < 1 || parts.length > 4) return null;
  let value = 0;
  for (let i = 0; i < 4; i++) {
    const part = parts[i];
    if (part === undefined) {
      value = value * 256;
      continue;
    }
    if (!/^[0-9]{1,3}$/.test(part) || Number(part) > 255) return null;
    value = value * 256 + Number(part);
  }
  return value;
}

/** A 32-bit number as a dotted quad. */
export function formatIPv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join('.');
}

/** An IPv6 address as 8 16-bit groups (embedded IPv4 allowed), or null. */
export function parseIPv6(text: string): number[] | null {
  if (!isIPv6(text)) return null;
  let head = text;
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    const v4 = parseIPv4Net(text.slice(lastColon + 1));
    if (v4 === null) return null;
    head = `${text.slice(0, lastColon + 1)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const [left, right] = head.includes('::') ? head.split('::') as [string, string] : [head, null];
  const parse = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const l = parse(left);
  const r = right === null ? [] : parse(right);
  const missing = 8 - l.length - r.length;
  if (right === null && missing !== 0) return null;
  if (missing < 0) return null;
  return [...l, ...new Array<number>(right === null ? 0 : missing).fill(0), ...r];
}

/** RFC 5952 text of 8 groups (longest run of ≥2 zero groups compressed, lowercase). */
export function formatIPv6(groups: readonly number[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/** Keep the first `length` bits of 8 IPv6 groups. */
export function maskIPv6(groups: readonly number[], length: number): number[] {
  return groups.map((g, i) => {
    const bits = Math.max(0, Math.min(16, length - 16 * i));
    return bits === 0 ? 0 : g & ((0xffff << (16 - bits)) & 0xffff);
  });
}

/** Keep the first `length` bits of an IPv4 address. */
export function maskIPv4(value: number, length: number): number {
  return length === 0 ? 0 : (value & (~0 << (32 - length))) >>> 0;
}

/** A rule or vxlan address: IPv4/IPv6, optional `/len`; canonical network CIDR, or null if invalid. */
export function parseCidr(text: string): string | null {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  const lenText = slash < 0 ? null : text.slice(slash + 1);
  if (isIPv4(addr)) {
    const len = lenText === null ? 32 : strtonum(lenText, 0, 32);
    if (typeof len !== 'number' || (lenText !== null && !/^[0-9]+$/.test(lenText))) return null;
    return `${formatIPv4(maskIPv4(parseIPv4Net(addr)!, len))}/${len}`;
  }
  const groups = parseIPv6(addr);
  if (groups === null) return null;
  const len = lenText === null ? 128 : strtonum(lenText, 0, 128);
  if (typeof len !== 'number' || (lenText !== null && !/^[0-9]+$/.test(lenText))) return null;
  return `${formatIPv6(maskIPv6(groups, len))}/${len}`;
}

/** A bare IPv4 or IPv6 host address in canonical form, or null. */
export function parseHostAddress(text: string): string | null {
  if (isIPv4(text)) return text;
  const groups = parseIPv6(text);
  return groups === null ? null : formatIPv6(groups);
}

/** parse_prefix4(): `ADDR[/LEN]`, LEN 1–16 (default 16), no host bits. */
export function parsePrefix4(text: string): Prefix4 | string {
  const slash = text.lastIndexOf('/');
  const addrText = slash < 0 ? text : text.slice(0, slash);
  let length = 16;
  if (slash >= 0) {
    const l = strtonum(text.slice(slash + 1), 1, 16);
    if (typeof l !== 'number') return l;
    length = l;
  }
  const addr = parseIPv4Net(addrText);
  if (addr === null) return 'invalid format';
  if ((addr & ~(~0 << (32 - length))) !== 0) return 'bad mask';
  return { address: formatIPv4(addr), length };
}

/** parse_prefix6(): numeric `ADDR[/LEN]`, LEN 0–64 (default 64), no host bits. */
export function parsePrefix6(text: string): Prefix6 | string {
  const slash = text.lastIndexOf('/');
  const addrText = slash < 0 ? text : text.slice(0, slash);
  let length = 64;
  if (slash >= 0) {
    const l = strtonum(text.slice(slash + 1), 0, 64);
    if (typeof l !== 'number') return l;
    length = l;
  }
  const groups = parseIPv6(addrText);
  // getaddrinfo(AI_NUMERICHOST) fails with EAI_NONAME on anything but a numeric address.
  if (groups === null) return 'Name or service not known';
  const masked = maskIPv6(groups, length);
  if (masked.some((g, i) => g !== groups[i])) return 'bad mask';
  return { address: formatIPv6(groups), length };
}
