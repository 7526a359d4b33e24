// A streaming reader of libpcap capture files and a one-line summary of each Ethernet frame, in pure TypeScript.
// `vmctl capture` without -w prints these lines from the pcap stream vmd relays from tcpdump on the VM's link.

/** LINKTYPE_ETHERNET: every vmd link is an Ethernet tap. */
export const LINKTYPE_ETHERNET = 1;

/** The global header's size and a record header's size (HOST-FACTS §6). */
export const PCAP_HEADER_BYTES = 24;
export const PCAP_RECORD_HEADER_BYTES = 16;

/** No record is larger than this, whatever the header's snaplen says: a bound against a corrupt stream. */
export const PCAP_MAX_RECORD = 16 * 1024 * 1024;

/** What the global header says. */
export interface PcapHeader {
  readonly littleEndian: boolean;
  /** True for the nanosecond variant (magic 0xa1b23c4d). */
  readonly nanos: boolean;
  readonly versionMajor: number;
  readonly versionMinor: number;
  readonly snaplen: number;
  readonly linktype: number;
}

/** One captured packet. */
export interface PcapRecord {
  readonly tsSec: number;
  /** Microseconds, or nanoseconds when the file is the nanosecond variant. */
  readonly tsFrac: number;
  readonly nanos: boolean;
  /** Bytes on the wire; `data` may be shorter (the snaplen cut it). */
  readonly origLen: number;
  readonly data: Buffer;
}

/** Why a byte stream is not a pcap capture. */
export class PcapError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PcapError';
  }
}

/** Streaming reader: push chunks as they arrive, get the whole records in them; throws PcapError on a bad stream. */
export class PcapStreamReader {
  #chunks: Buffer[] = [];
  #buffered = 0;
  #header: PcapHeader | undefined;
  #records = 0;

  get header(): PcapHeader | undefined {
    return this.#header;
  }

  /** Records read so far. */
  get records(): number {
    return this.#records;
  }

  /** Bytes received and not yet part of a whole record. */
  get buffered(): number {
    return this.#buffered;
  }

  push(chunk: Uint8Array): PcapRecord[] {
    if (chunk.byteLength > 0) {
      this.#chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
      this.#buffered += chunk.byteLength;
    }
    const out: PcapRecord[] = [];
    if (this.#header === undefined) {
      if (this.#buffered < PCAP_HEADER_BYTES) return out;
      this.#header = readHeader(this.#take(PCAP_HEADER_BYTES));
    }
    const h = this.#header;
    const limit = Math.min(Math.max(h.snaplen, 65535), PCAP_MAX_RECORD);
    while (this.#buffered >= PCAP_RECORD_HEADER_BYTES) {
      const rh = this.#peek(PCAP_RECORD_HEADER_BYTES);
      const u32 = (o: number): number => (h.littleEndian ? rh.readUInt32LE(o) : rh.readUInt32BE(o));
      const incl = u32(8);
      if (incl > limit) throw new PcapError(`record ${this.#records + 1}: ${incl} bytes exceeds the snapshot length ${h.snaplen}`);
      if (this.#buffered < PCAP_RECORD_HEADER_BYTES + incl) break;
      const rec = this.#take(PCAP_RECORD_HEADER_BYTES + incl);
      out.push({ tsSec: u32(0), tsFrac: u32(4), nanos: h.nanos, origLen: Math.max(u32(12), incl), data: rec.subarray(PCAP_RECORD_HEADER_BYTES) });
      this.#records++;
    }
    return out;
  }

  /** The stream ended: bytes left over mean it was cut inside a record (or inside the header). */
  end(): PcapError | undefined {
    if (this.#buffered === 0) return undefined;
    return new PcapError(this.#header === undefined ? 'stream ended inside the file header' : `stream ended inside record ${this.#records + 1}`);
  }

  #peek(n: number): Buffer {
    if ((this.#chunks[0] as Buffer).length < n) this.#chunks = [Buffer.concat(this.#chunks)];
    return (this.#chunks[0] as Buffer).subarray(0, n);
  }

  #take(n: number): Buffer {
    const head = this.#peek(n);
    const first = this.#chunks[0] as Buffer;
    // Copied: the record outlives the chunk it came in, and a chunk may hold many records.
    const taken = Buffer.from(head);
    if (first.length === n) this.#chunks.shift();
    else this.#chunks[0] = first.subarray(n);
    this.#buffered -= n;
    return taken;
  }
}

function readHeader(b: Buffer): PcapHeader {
  const magicLE = b.readUInt32LE(0);
  const magicBE = b.readUInt32BE(0);
  let littleEndian: boolean;
  let nanos: boolean;
  if (magicLE === 0xa1b2c3d4 || magicLE === 0xa1b23c4d) {
    littleEndian = true;
    nanos = magicLE === 0xa1b23c4d;
  } else if (magicBE === 0xa1b2c3d4 || magicBE === 0xa1b23c4d) {
    littleEndian = false;
    nanos = magicBE === 0xa1b23c4d;
  } else {
    throw new PcapError(`not a pcap stream (magic 0x${magicBE.toString(16).padStart(8, '0')})`);
  }
  const u16 = (o: number): number => (littleEndian ? b.readUInt16LE(o) : b.readUInt16BE(o));
  const u32 = (o: number): number => (littleEndian ? b.readUInt32LE(o) : b.readUInt32BE(o));
  const versionMajor = u16(4);
  if (versionMajor !== 2) throw new PcapError(`pcap version ${versionMajor}.${u16(6)} not supported`);
  // The link type is the low 16 bits; the upper ones may carry FCS information (pcap-savefile(5)).
  return { littleEndian, nanos, versionMajor, versionMinor: u16(6), snaplen: u32(16), linktype: u32(20) & 0xffff };
}

// ---- summaries ----

/** `HH:MM:SS.ffffff` as tcpdump prints a timestamp: local time by default, UTC when asked (tests). */
export function formatTimestamp(rec: Pick<PcapRecord, 'tsSec' | 'tsFrac' | 'nanos'>, utc = false): string {
  const d = new Date(rec.tsSec * 1000);
  const two = (n: number): string => String(n).padStart(2, '0');
  const [h, m, s] = utc ? [d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds()] : [d.getHours(), d.getMinutes(), d.getSeconds()];
  const micros = rec.nanos ? Math.floor(rec.tsFrac / 1000) : rec.tsFrac;
  return `${two(h)}:${two(m)}:${two(s)}.${String(Math.min(micros, 999_999)).padStart(6, '0')}`;
}

/** One line per packet: time, addresses, protocol and its details, and the length on the wire. */
export function summaryLine(rec: PcapRecord, linktype: number, utc = false): string {
  return `${formatTimestamp(rec, utc)} ${packetSummary(rec.data, linktype)}, length ${rec.origLen}`;
}

/** Thrown by the decoders when the capture cut a header short; the summary then says what it had. */
class Short extends Error {}

function need(b: Buffer, n: number): void {
  if (b.length < n) throw new Short();
}

/** The decoder's text, or `what [truncated]` when the capture cut a header short. */
function orTruncated(what: string, decode: () => string): string {
  try {
    return decode();
  } catch (err) {
    if (err instanceof Short) return `${what} [truncated]`;
    throw err;
  }
}

/** What a frame is, without the time and length: `IP 10.0.0.1 > 10.0.0.2: ICMP echo request, id 5, seq 1`. */
export function packetSummary(data: Buffer, linktype: number): string {
  if (linktype !== LINKTYPE_ETHERNET) return `link-type ${linktype}`;
  if (data.length < 14) return 'ethernet [truncated]';
  const dst = mac(data, 0);
  const src = mac(data, 6);
  let type = data.readUInt16BE(12);
  let off = 14;
  let vlan = '';
  if (type === 0x8100 || type === 0x88a8) {
    if (data.length < 18) return `${src} > ${dst}: vlan [truncated]`;
    vlan = `vlan ${data.readUInt16BE(14) & 0x0fff} `;
    type = data.readUInt16BE(16);
    off = 18;
  }
  const payload = data.subarray(off);
  switch (type) {
    case 0x0806: return `${vlan}${src} > ${dst}: ${orTruncated('ARP', () => arp(payload))}`;
    case 0x0800: return vlan + orTruncated('IP', () => ipv4(payload));
    case 0x86dd: return vlan + orTruncated('IP6', () => ipv6(payload));
    default: return `${vlan}${src} > ${dst}: ethertype 0x${type.toString(16).padStart(4, '0')}`;
  }
}

function mac(b: Buffer, o: number): string {
  return [...b.subarray(o, o + 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

function ip4(b: Buffer, o: number): string {
  return `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
}

/** RFC 5952 text: lowercase, no leading zeros, the longest run of two or more zero groups as `::`. */
export function ip6(b: Buffer, o: number): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(b.readUInt16BE(o + 2 * i));
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = (a: number[]): string => a.map((x) => x.toString(16)).join(':');
  if (best < 0) return hex(g);
  return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

function arp(b: Buffer): string {
  need(b, 8);
  const htype = b.readUInt16BE(0);
  const ptype = b.readUInt16BE(2);
  const op = b.readUInt16BE(6);
  if (htype !== 1 || ptype !== 0x0800 || b[4] !== 6 || b[5] !== 4) return `ARP, op ${op}`;
  need(b, 28);
  const sha = mac(b, 8);
  const spa = ip4(b, 14);
  const tpa = ip4(b, 24);
  if (op === 1) return `ARP, who-has ${tpa} tell ${spa}`;
  if (op === 2) return `ARP, reply ${spa} is-at ${sha}`;
  return `ARP, op ${op}`;
}

function ipv4(b: Buffer): string {
  need(b, 20);
  const ihl = (b[0]! & 0x0f) * 4;
  const proto = b[9]!;
  const src = ip4(b, 12);
  const dst = ip4(b, 16);
  const fragOffset = b.readUInt16BE(6) & 0x1fff;
  if ((b[0]! >> 4) !== 4 || ihl < 20) return `IP ${src} > ${dst}: bad header`;
  if (fragOffset !== 0) return `IP ${src} > ${dst}: ${protoName(proto)} fragment at ${fragOffset * 8}`;
  return transport(proto, b.subarray(ihl), `IP ${src}`, `${dst}`, false);
}

/** IPv6 extension headers walked to find the transport: hop-by-hop, routing, fragment, destination options. */
function ipv6(b: Buffer): string {
  need(b, 40);
  const src = ip6(b, 8);
  const dst = ip6(b, 24);
  let next = b[6]!;
  let off = 40;
  for (let hops = 0; hops < 8 && (next === 0 || next === 43 || next === 44 || next === 60); hops++) {
    need(b, off + 8);
    if (next === 44 && (b.readUInt16BE(off + 2) & 0xfff8) !== 0) return `IP6 ${src} > ${dst}: ${protoName(b[off]!)} fragment`;
    const len = next === 44 ? 8 : (b[off + 1]! + 1) * 8;
    next = b[off]!;
    off += len;
  }
  return transport(next, b.subarray(Math.min(off, b.length)), `IP6 ${src}`, dst, true);
}

function protoName(p: number): string {
  switch (p) {
    case 1: return 'ICMP';
    case 6: return 'TCP';
    case 17: return 'UDP';
    case 58: return 'ICMP6';
    default: return `ip-proto-${p}`;
  }
}

const TCP_FLAGS: ReadonlyArray<readonly [number, string]> = [[0x01, 'F'], [0x02, 'S'], [0x04, 'R'], [0x08, 'P'], [0x20, 'U'], [0x40, 'E'], [0x80, 'W']];

function transport(proto: number, b: Buffer, src: string, dst: string, v6: boolean): string {
  return orTruncated(`${src} > ${dst}: ${protoName(proto)}`, () => transportDetail(proto, b, src, dst, v6));
}

function transportDetail(proto: number, b: Buffer, src: string, dst: string, v6: boolean): string {
  switch (proto) {
    case 6: {
      need(b, 14);
      const flags = b[13]!;
      const letters = TCP_FLAGS.filter(([bit]) => flags & bit).map(([, l]) => l).join('') + (flags & 0x10 ? '.' : '');
      return `${src}.${b.readUInt16BE(0)} > ${dst}.${b.readUInt16BE(2)}: TCP [${letters === '' ? 'none' : letters}]`;
    }
    case 17: {
      need(b, 4);
      return `${src}.${b.readUInt16BE(0)} > ${dst}.${b.readUInt16BE(2)}: UDP`;
    }
    case 1:
      if (v6) break;
      need(b, 2);
      return `${src} > ${dst}: ICMP ${icmp4(b)}`;
    case 58:
      if (!v6) break;
      need(b, 2);
      return `${src} > ${dst}: ICMP6 ${icmp6(b)}`;
  }
  return `${src} > ${dst}: ${protoName(proto)}`;
}

function echo(b: Buffer, what: string): string {
  need(b, 8);
  return `${what}, id ${b.readUInt16BE(4)}, seq ${b.readUInt16BE(6)}`;
}

const UNREACH4 = ['net', 'host', 'protocol', 'port'];

function icmp4(b: Buffer): string {
  const type = b[0]!;
  const code = b[1]!;
  switch (type) {
    case 0: return echo(b, 'echo reply');
    case 8: return echo(b, 'echo request');
    case 3: return `${UNREACH4[code] ?? `code ${code}`} unreachable`;
    case 11: return 'time exceeded';
    default: return `type ${type}, code ${code}`;
  }
}

function icmp6(b: Buffer): string {
  const type = b[0]!;
  switch (type) {
    case 128: return echo(b, 'echo request');
    case 129: return echo(b, 'echo reply');
    case 1: return 'destination unreachable';
    case 3: return 'time exceeded';
    case 133: return 'router solicitation';
    case 134: return 'router advertisement';
    case 135:
      need(b, 24);
      return `neighbor solicitation, who has ${ip6(b, 8)}`;
    case 136:
      need(b, 24);
      return `neighbor advertisement, tgt is ${ip6(b, 8)}`;
    default: return `type ${type}, code ${b[1]!}`;
  }
}
