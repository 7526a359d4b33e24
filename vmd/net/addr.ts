// Names and addresses of managed links, derived only from a VM's id, name and NIC index (pure, no system calls).
// Local interfaces follow OpenBSD's vm_priv_addr/vm_priv_addr6 rule exactly: a /31 per NIC and a /96 for IPv6.

import { createHash } from 'node:crypto';
import type { Prefix4, Prefix6 } from '../../share/config.js';
import { VmdError } from '../../share/errors.js';

/** Host and guest side of one local interface (IPv4, dotted quads; prefixLen is always 31). */
export interface LocalAddr4 {
  readonly host: string;
  readonly guest: string;
  readonly prefixLen: 31;
}

/** Host and guest side of one local interface (IPv6, compressed text; prefixLen is always 96). */
export interface LocalAddr6 {
  readonly host: string;
  readonly guest: string;
  readonly prefixLen: 96;
}

// Linux limits interface names to IFNAMSIZ-1 = 15 bytes.
const IFNAMSIZ_MAX = 15;

function checkId(what: string, n: number, max: number): void {
  if (!Number.isSafeInteger(n) || n < 0 || n > max) {
    throw new VmdError('ERR_INVALID', `${what}: ${String(n)} is not an integer from 0 to ${max}`);
  }
}

/** The managed tap's stable kernel name, `vmd<ID>i<IDX>`: fits IFNAMSIZ for ids up to 9 digits. */
export function linkName(vmId: number, nicIndex: number): string {
  checkId('vm id', vmId, 999_999_999);
  checkId('interface index', nicIndex, 99);
  const name = `vmd${vmId}i${nicIndex}`;
  if (name.length > IFNAMSIZ_MAX) throw new VmdError('ERR_INVALID', `link name: ${name} is longer than ${IFNAMSIZ_MAX} characters`);
  return name;
}

/** OpenBSD's interface description `vm<ID>-if<IDX>-<NAME>`, set as the link's alias (ifalias, up to 255 bytes). */
export function linkAlias(vmId: number, nicIndex: number, vmName: string): string {
  return `vm${vmId}-if${nicIndex}-${vmName}`;
}

/** The network namespace that stands for OpenBSD routing domain N. */
export function rdomainNetns(rdomain: number): string {
  checkId('rdomain', rdomain, 255);
  return `vmd-rdomain${rdomain}`;
}

/** A locally administered MAC (OpenBSD's `fe:e1:bb:` prefix) that stays the same for this VM id, name and NIC. */
export function stableMac(id: number, name: string, index: number): string {
  const h = createHash('sha256').update(`${id}/${name}/${index}`).digest();
  // fe:e1:bb like OpenBSD's vmd, then three bytes that differ per VM and NIC.
  return ['fe', 'e1', 'bb', h[0]!, h[1]!, ((h[2]! & 0xf0) | (index & 0x0f))].map((b) => (typeof b === 'string' ? b : b.toString(16).padStart(2, '0'))).join(':');
}

/**
 * The host side's MAC on a local link, from the guest's: the same on every host, so a guest that moved (receive)
 * still reaches its gateway through the neighbour entry it had. `fe:e1:ba` and the guest's last three bytes,
 * or `fe:e1:b9` when the guest itself uses the first.
 */
export function localHostMac(guestMac: string): string {
  const tail = guestMac.toLowerCase().split(':').slice(3).join(':');
  const mac = `fe:e1:ba:${tail}`;
  return mac === guestMac.toLowerCase() ? `fe:e1:b9:${tail}` : mac;
}

/** Dotted quad → unsigned 32-bit number; throws ERR_INVALID on anything else. */
export function parseIPv4(text: string): number {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  const parts = m ? m.slice(1).map(Number) : [];
  if (!m || parts.some((p) => p > 255)) throw new VmdError('ERR_INVALID', `invalid IPv4 address: ${text}`);
  return ((parts[0]! << 24) >>> 0) + (parts[1]! << 16) + (parts[2]! << 8) + parts[3]!;
}

/** Unsigned 32-bit number → dotted quad. */
export function formatIPv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff].join('.');
}

/** The netmask of a prefix length as an unsigned 32-bit number (0 for /0). */
export function maskOf(prefixLen: number): number {
  checkId('prefix length', prefixLen, 32);
  return prefixLen === 0 ? 0 : (0xffffffff << (32 - prefixLen)) >>> 0;
}

/** Host and guest IPv4 of local interface `nicIndex` of VM `vmId`: OpenBSD's `(id << 8) | (idx+1)*2`, guest +1, in `prefix`. */
export function localAddr4(prefix: Prefix4, vmId: number, nicIndex: number): LocalAddr4 {
  const exceeded = () => new VmdError('ERR_INVALID', `dhcp address range exceeded, vm id ${vmId} interface ${nicIndex}`);
  if (!Number.isSafeInteger(vmId) || vmId < 0 || !Number.isSafeInteger(nicIndex) || nicIndex < 0) throw exceeded();
  if (nicIndex >= 0x7f) throw exceeded();
  const mask = maskOf(prefix.length);
  const net = (parseIPv4(prefix.address) & mask) >>> 0;
  // Multiplication, not <<: ids of 2^23 and more would go negative in 32-bit shifts; the range check catches them.
  const host = vmId * 256 + (nicIndex + 1) * 2;
  const guest = host + 1;
  if (guest >= 2 ** (32 - prefix.length)) throw exceeded();
  return { host: formatIPv4((net | host) >>> 0), guest: formatIPv4((net | guest) >>> 0), prefixLen: 31 };
}

/** IPv6 text → 16 bytes (accepts `::` and an embedded dotted quad); throws ERR_INVALID otherwise. */
export function parseIPv6(text: string): Uint8Array {
  const bad = () => new VmdError('ERR_INVALID', `invalid IPv6 address: ${text}`);
  let s = text;
  const tail: number[] = [];
  const v4 = /^(.*:)(\d{1,3}(?:\.\d{1,3}){3})$/.exec(s);
  if (v4) {
    const n = parseIPv4(v4[2]!);
    tail.push(n >>> 16, n & 0xffff);
    s = v4[1]!.endsWith('::') ? v4[1]! : v4[1]!.slice(0, -1);
  }
  const halves = s.split('::');
  if (halves.length > 2) throw bad();
  const group = (g: string): number => {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) throw bad();
    return parseInt(g, 16);
  };
  const head = halves[0] === '' ? [] : halves[0]!.split(':').map(group);
  const rest = halves.length === 2 ? (halves[1] === '' ? [] : halves[1]!.split(':').map(group)) : [];
  const explicit = head.length + rest.length + tail.length;
  let words: number[];
  if (halves.length === 2) {
    if (explicit > 7) throw bad();
    words = [...head, ...new Array<number>(8 - explicit).fill(0), ...rest, ...tail];
  } else {
    words = [...head, ...tail];
    if (words.length !== 8) throw bad();
  }
  const out = new Uint8Array(16);
  words.forEach((w, i) => {
    out[2 * i] = w >>> 8;
    out[2 * i + 1] = w & 0xff;
  });
  return out;
}

/** 16 bytes → RFC 5952 text (lowercase, longest run of two or more zero groups as `::`). */
export function formatIPv6(bytes: Uint8Array): string {
  const words = Array.from({ length: 8 }, (_, i) => (bytes[2 * i]! << 8) | bytes[2 * i + 1]!);
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/** Host (byte 15 = 1) and guest (byte 15 = 2) /96 of a local interface: the prefix with bytes 8–11 = the guest's IPv4. */
export function localAddr6(prefix6: Prefix6, v4: LocalAddr4 | string): LocalAddr6 {
  if (!Number.isInteger(prefix6.length) || prefix6.length < 0 || prefix6.length > 64) {
    throw new VmdError('ERR_INVALID', `invalid local inet6 prefix: ${prefix6.address}/${prefix6.length} is longer than /64`);
  }
  const base = parseIPv6(prefix6.address);
  // Bytes 8–15 are the interface's own: whatever the prefix had there is replaced, as OpenBSD's memcpy does.
  const guest4 = parseIPv4(typeof v4 === 'string' ? v4 : v4.guest);
  const make = (last: number): string => {
    const b = Uint8Array.from(base);
    b.fill(0, 8);
    b[8] = guest4 >>> 24;
    b[9] = (guest4 >>> 16) & 0xff;
    b[10] = (guest4 >>> 8) & 0xff;
    b[11] = guest4 & 0xff;
    b[15] = last;
    return formatIPv6(b);
  };
  return { host: make(1), guest: make(2), prefixLen: 96 };
}
