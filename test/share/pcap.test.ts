// Tests for share/pcap: the streaming pcap reader (every header variant, any chunking, bad and cut streams) and
// the one-line packet summaries `vmctl capture` prints, from frames built byte by byte; tcpdump reads the same file.

import t from 'tap';
import { execa } from 'execa';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  formatTimestamp, ip6, packetSummary, PcapError, PcapStreamReader, summaryLine, type PcapRecord,
} from '../../share/pcap.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/[^0-9a-f]/gi, ''), 'hex');
const MAC_A = '52:54:00:00:00:0a';
const MAC_B = '52:54:00:00:00:0b';
const mac = (m: string): Buffer => hex(m);
const ip4 = (a: string): Buffer => Buffer.from(a.split('.').map(Number));

function ether(dst: string, src: string, type: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(2);
  h.writeUInt16BE(type);
  return Buffer.concat([mac(dst), mac(src), h, payload]);
}

function ipv4(proto: number, src: string, dst: string, payload: Buffer, fragOffset = 0): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + payload.length, 2);
  h.writeUInt16BE(fragOffset, 6);
  h[8] = 64;
  h[9] = proto;
  ip4(src).copy(h, 12);
  ip4(dst).copy(h, 16);
  return Buffer.concat([h, payload]);
}

function ipv6(next: number, src: Buffer, dst: Buffer, payload: Buffer): Buffer {
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(payload.length, 4);
  h[6] = next;
  h[7] = 255;
  src.copy(h, 8);
  dst.copy(h, 24);
  return Buffer.concat([h, payload]);
}

const icmpEcho = (type: number, id: number, seq: number): Buffer => {
  const b = Buffer.alloc(16);
  b[0] = type;
  b.writeUInt16BE(id, 4);
  b.writeUInt16BE(seq, 6);
  return b;
};
const ports = (s: number, d: number, rest: Buffer): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt16BE(s, 0);
  b.writeUInt16BE(d, 2);
  return Buffer.concat([b, rest]);
};
const tcp = (s: number, d: number, flags: number): Buffer => {
  const rest = Buffer.alloc(16);
  rest[8] = 0x50;
  rest[9] = flags;
  return ports(s, d, rest);
};
const arp = (op: number, sha: string, spa: string, tha: string, tpa: string): Buffer =>
  Buffer.concat([hex('0001 0800 06 04'), Buffer.from([0, op]), mac(sha), ip4(spa), mac(tha), ip4(tpa)]);

const V6_A = hex('fe80 0000 0000 0000 5054 00ff fe00 000a');
const V6_B = hex('fd00 0000 0000 0000 0000 0000 0000 0001');

/** The frames and what each one's summary must say. */
const FRAMES: Array<[string, Buffer, string]> = [
  ['arp request', ether('ff:ff:ff:ff:ff:ff', MAC_A, 0x0806, arp(1, MAC_A, '10.0.0.10', '00:00:00:00:00:00', '10.0.0.11')),
    `${MAC_A} > ff:ff:ff:ff:ff:ff: ARP, who-has 10.0.0.11 tell 10.0.0.10`],
  ['arp reply', ether(MAC_A, MAC_B, 0x0806, arp(2, MAC_B, '10.0.0.11', MAC_A, '10.0.0.10')),
    `${MAC_B} > ${MAC_A}: ARP, reply 10.0.0.11 is-at ${MAC_B}`],
  ['icmp echo request', ether(MAC_B, MAC_A, 0x0800, ipv4(1, '10.0.0.10', '10.0.0.11', icmpEcho(8, 77, 3))),
    'IP 10.0.0.10 > 10.0.0.11: ICMP echo request, id 77, seq 3'],
  ['icmp echo reply', ether(MAC_A, MAC_B, 0x0800, ipv4(1, '10.0.0.11', '10.0.0.10', icmpEcho(0, 77, 3))),
    'IP 10.0.0.11 > 10.0.0.10: ICMP echo reply, id 77, seq 3'],
  ['icmp port unreachable', ether(MAC_A, MAC_B, 0x0800, ipv4(1, '10.0.0.11', '10.0.0.10', hex('0303 0000 0000 0000'))),
    'IP 10.0.0.11 > 10.0.0.10: ICMP port unreachable'],
  ['tcp syn', ether(MAC_B, MAC_A, 0x0800, ipv4(6, '10.0.0.10', '10.0.0.11', tcp(40000, 80, 0x02))),
    'IP 10.0.0.10.40000 > 10.0.0.11.80: TCP [S]'],
  ['tcp syn-ack', ether(MAC_A, MAC_B, 0x0800, ipv4(6, '10.0.0.11', '10.0.0.10', tcp(80, 40000, 0x12))),
    'IP 10.0.0.11.80 > 10.0.0.10.40000: TCP [S.]'],
  ['tcp psh-ack', ether(MAC_A, MAC_B, 0x0800, ipv4(6, '10.0.0.11', '10.0.0.10', tcp(80, 40000, 0x18))),
    'IP 10.0.0.11.80 > 10.0.0.10.40000: TCP [P.]'],
  ['udp dhcp', ether('ff:ff:ff:ff:ff:ff', MAC_A, 0x0800, ipv4(17, '0.0.0.0', '255.255.255.255', ports(68, 67, Buffer.alloc(4)))),
    'IP 0.0.0.0.68 > 255.255.255.255.67: UDP'],
  ['ipv4 fragment', ether(MAC_B, MAC_A, 0x0800, ipv4(17, '10.0.0.10', '10.0.0.11', Buffer.alloc(8), 185)),
    'IP 10.0.0.10 > 10.0.0.11: UDP fragment at 1480'],
  ['other ip protocol', ether(MAC_B, MAC_A, 0x0800, ipv4(47, '10.0.0.10', '10.0.0.11', Buffer.alloc(4))),
    'IP 10.0.0.10 > 10.0.0.11: ip-proto-47'],
  ['icmp6 echo', ether(MAC_B, MAC_A, 0x86dd, ipv6(58, V6_A, V6_B, icmpEcho(128, 1, 2))),
    'IP6 fe80::5054:ff:fe00:a > fd00::1: ICMP6 echo request, id 1, seq 2'],
  ['icmp6 neighbor solicitation', ether('33:33:ff:00:00:01', MAC_A, 0x86dd, ipv6(58, V6_A, hex('ff02 0000 0000 0000 0000 0001 ff00 0001'),
    Buffer.concat([hex('8700 0000 0000 0000'), V6_B]))),
  'IP6 fe80::5054:ff:fe00:a > ff02::1:ff00:1: ICMP6 neighbor solicitation, who has fd00::1'],
  ['icmp6 after hop-by-hop', ether('33:33:00:00:00:16', MAC_A, 0x86dd, ipv6(0, V6_A, hex('ff02 0000 0000 0000 0000 0000 0000 0016'),
    Buffer.concat([hex('3a00 0502 0000 0100'), hex('8f00 0000 0000 0000')]))),
  'IP6 fe80::5054:ff:fe00:a > ff02::16: ICMP6 type 143, code 0'],
  ['tcp over ipv6', ether(MAC_B, MAC_A, 0x86dd, ipv6(6, V6_B, V6_A, tcp(22, 50000, 0x11))),
    'IP6 fd00::1.22 > fe80::5054:ff:fe00:a.50000: TCP [F.]'],
  ['vlan', ether(MAC_B, MAC_A, 0x8100, Buffer.concat([hex('0005 0800'), ipv4(1, '10.0.0.10', '10.0.0.11', icmpEcho(8, 1, 1))])),
    'vlan 5 IP 10.0.0.10 > 10.0.0.11: ICMP echo request, id 1, seq 1'],
  ['lldp', ether('01:80:c2:00:00:0e', MAC_A, 0x88cc, Buffer.alloc(30)), `${MAC_A} > 01:80:c2:00:00:0e: ethertype 0x88cc`],
];

function pcapFile(records: Array<{ sec: number; frac: number; data: Buffer; orig?: number }>, opts: { be?: boolean; nanos?: boolean; snaplen?: number } = {}): Buffer {
  const h = Buffer.alloc(24);
  const w32 = (b: Buffer, v: number, o: number): void => { if (opts.be) b.writeUInt32BE(v, o); else b.writeUInt32LE(v, o); };
  const w16 = (b: Buffer, v: number, o: number): void => { if (opts.be) b.writeUInt16BE(v, o); else b.writeUInt16LE(v, o); };
  w32(h, opts.nanos ? 0xa1b23c4d : 0xa1b2c3d4, 0);
  w16(h, 2, 4);
  w16(h, 4, 6);
  w32(h, opts.snaplen ?? 262144, 16);
  w32(h, 1, 20);
  const parts: Buffer[] = [h];
  for (const r of records) {
    const rh = Buffer.alloc(16);
    w32(rh, r.sec, 0);
    w32(rh, r.frac, 4);
    w32(rh, r.data.length, 8);
    w32(rh, r.orig ?? r.data.length, 12);
    parts.push(rh, Buffer.from(r.data));
  }
  return Buffer.concat(parts);
}

const T0 = Date.UTC(2026, 10, 23, 1, 2, 3) / 1000;

t.test('summaries of every kind of frame', async (t) => {
  for (const [name, frame, want] of FRAMES) t.equal(packetSummary(frame, 1), want, name);
  t.equal(packetSummary(Buffer.alloc(10), 1), 'ethernet [truncated]');
  t.equal(packetSummary(Buffer.alloc(40), 113), 'link-type 113', 'not Ethernet: no guessing');
});

t.test('frames cut by the snapshot length say what they had', async (t) => {
  const echo = FRAMES[2]![1];
  t.equal(packetSummary(echo.subarray(0, 20), 1), 'IP [truncated]', 'inside the IP header');
  t.equal(packetSummary(echo.subarray(0, 36), 1), 'IP 10.0.0.10 > 10.0.0.11: ICMP [truncated]', 'inside the ICMP header');
  const syn = FRAMES[5]![1];
  t.equal(packetSummary(syn.subarray(0, 38), 1), 'IP 10.0.0.10 > 10.0.0.11: TCP [truncated]', 'inside the TCP header');
  t.equal(packetSummary(FRAMES[0]![1].subarray(0, 30), 1), `${MAC_A} > ff:ff:ff:ff:ff:ff: ARP [truncated]`);
  t.equal(packetSummary(FRAMES[11]![1].subarray(0, 40), 1), 'IP6 [truncated]');
  t.equal(packetSummary(FRAMES[15]![1].subarray(0, 16), 1), `${MAC_A} > ${MAC_B}: vlan [truncated]`);
});

t.test('IPv6 text is RFC 5952', async (t) => {
  t.equal(ip6(hex('0000 0000 0000 0000 0000 0000 0000 0000'), 0), '::');
  t.equal(ip6(hex('0000 0000 0000 0000 0000 0000 0000 0001'), 0), '::1');
  t.equal(ip6(hex('2001 0db8 0000 0000 0001 0000 0000 0001'), 0), '2001:db8::1:0:0:1', 'the first of two equal runs');
  t.equal(ip6(hex('2001 0db8 0000 0001 0001 0001 0001 0001'), 0), '2001:db8:0:1:1:1:1:1', 'a single zero group stays');
  t.equal(ip6(hex('2001 0db8 0000 0000 0000 0000 0000 0000'), 0), '2001:db8::');
});

t.test('timestamps: microseconds and nanoseconds, UTC on request', async (t) => {
  t.equal(formatTimestamp({ tsSec: T0, tsFrac: 42, nanos: false }, true), '01:02:03.000042');
  t.equal(formatTimestamp({ tsSec: T0, tsFrac: 123_456_789, nanos: true }, true), '01:02:03.123456');
  const rec: PcapRecord = { tsSec: T0, tsFrac: 5, nanos: false, origLen: 98, data: FRAMES[2]![1] };
  t.equal(summaryLine(rec, 1, true), '01:02:03.000005 IP 10.0.0.10 > 10.0.0.11: ICMP echo request, id 77, seq 3, length 98');
});

t.test('the reader: one record per frame, whatever the chunking, any byte order and precision', async (t) => {
  const records = FRAMES.map(([, data], i) => ({ sec: T0 + i, frac: i * 1000, data }));
  for (const variant of [{}, { be: true }, { nanos: true }, { be: true, nanos: true }]) {
    const file = pcapFile(records, variant);
    for (const size of [1, 3, 16, 24, 25, 100, file.length]) {
      const r = new PcapStreamReader();
      const got: PcapRecord[] = [];
      for (let o = 0; o < file.length; o += size) got.push(...r.push(file.subarray(o, o + size)));
      t.equal(got.length, FRAMES.length, `${JSON.stringify(variant)} in chunks of ${size}`);
      t.ok(got.every((g, i) => g.data.equals(FRAMES[i]![1]) && g.tsSec === T0 + i && g.tsFrac === i * 1000), 'records intact');
      t.equal(r.header?.nanos, variant.nanos === true);
      t.equal(r.header?.linktype, 1);
      t.equal(r.end(), undefined, 'nothing left over');
    }
  }
});

t.test('the reader: bad and cut streams', async (t) => {
  t.throws(() => new PcapStreamReader().push(Buffer.from('{"type":"error","id":1,"error":{}}')), PcapError, 'JSON is not pcap');
  t.throws(() => new PcapStreamReader().push(hex('0a0d0d0a 1c000000 4d3c2b1a 01000000 ffffffffffffffff')), /not a pcap stream/, 'pcapng is refused by name');
  const v1 = pcapFile([]);
  v1.writeUInt16LE(1, 4);
  t.throws(() => new PcapStreamReader().push(v1), /pcap version 1\.4 not supported/);
  const huge = pcapFile([{ sec: 0, frac: 0, data: Buffer.alloc(10) }], { snaplen: 100 });
  huge.writeUInt32LE(70_000, 24 + 8);
  t.throws(() => new PcapStreamReader().push(huge), /record 1: 70000 bytes exceeds the snapshot length 100/, 'a record beyond the snaplen');
  const file = pcapFile([{ sec: 0, frac: 0, data: FRAMES[2]![1] }, { sec: 1, frac: 0, data: FRAMES[3]![1] }]);
  const r = new PcapStreamReader();
  t.equal(r.push(file.subarray(0, file.length - 5)).length, 1);
  t.match(r.end()?.message, /stream ended inside record 2/);
  const h = new PcapStreamReader();
  h.push(file.subarray(0, 10));
  t.match(h.end()?.message, /inside the file header/);
  const snapped = new PcapStreamReader().push(pcapFile([{ sec: 0, frac: 0, data: FRAMES[2]![1].subarray(0, 20), orig: 98 }], { snaplen: 20 }));
  t.equal(snapped[0]?.origLen, 98, 'the length on the wire survives a small snaplen');
});

t.test('tcpdump reads the file these tests build, and agrees on what it holds', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-pcap-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'frames.pcap');
  writeFileSync(path, pcapFile(FRAMES.map(([, data], i) => ({ sec: T0 + i, frac: 0, data }))));
  const r = await execa('tcpdump', ['-n', '-r', path], { reject: false, all: true });
  t.equal(r.exitCode, 0, String(r.all));
  const lines = String(r.stdout).split('\n');
  t.equal(lines.length, FRAMES.length, 'one line per frame');
  t.match(lines[2], /IP 10\.0\.0\.10 > 10\.0\.0\.11: ICMP echo request, id 77, seq 3/);
  t.match(lines[6], /IP 10\.0\.0\.11\.80 > 10\.0\.0\.10\.40000: Flags \[S\.\]/);
  t.match(lines[0], /ARP, Request who-has 10\.0\.0\.11 tell 10\.0\.0\.10/);
});
