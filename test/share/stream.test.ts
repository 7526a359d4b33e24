// Tests for share/stream: the send stream's header, chunking and configuration reader. Each way a stream can be
// wrong (magic, version, truncated header, truncated body, corrupt chunk, bad config) has its own message.

import t, { type Test } from 'tap';
import {
  chunkPrefix, encodeStreamError, encodeStreamHeader, MAX_CHUNK, readStreamConfig, STREAM_END, STREAM_HEADER_BYTES,
  STREAM_MAGIC, STREAM_VERSION, StreamDecoder, StreamError, type StreamConfig, type StreamEvent,
} from '../../share/stream.js';

const config: StreamConfig = {
  name: 'web', memory: 256 * 1024 * 1024, cpus: 1, boot: '/k', initrd: '/i', cmdline: 'console=ttyS0', cdrom: null,
  disks: [{ path: '/var/vm/web.qcow2', format: 'qcow2' }],
  interfaces: [{
    local: true, switch: null, lladdr: 'fe:e1:bb:01:02:03', locked: false, group: null, rdomain: null,
    forwards: [{ proto: 'tcp', hostPort: 2222, guestPort: 22 }], rules: [],
  }],
  owner: null,
};

/** A whole stream: header, the body in chunks, the end marker. */
function stream(body: Buffer, chunk = 1000): Buffer {
  const parts = [encodeStreamHeader(config)];
  for (let i = 0; i < body.length; i += chunk) {
    const piece = body.subarray(i, i + chunk);
    parts.push(chunkPrefix(piece.length), piece);
  }
  parts.push(STREAM_END);
  return Buffer.concat(parts);
}

const body = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7) & 0xff));

/** Feeds bytes in pieces of `step`; returns the events and the decoder. */
function feed(bytes: Buffer, step: number, options?: { body?: boolean }): { events: StreamEvent[]; decoder: StreamDecoder } {
  const decoder = new StreamDecoder(options);
  const events: StreamEvent[] = [];
  for (let i = 0; i < bytes.length; i += step) events.push(...decoder.push(bytes.subarray(i, i + step)));
  return { events, decoder };
}

function throwsStream(t: Test, fn: () => unknown, reason: string, message: RegExp, name: string): void {
  try {
    fn();
    t.fail(`${name}: no error`);
  } catch (err) {
    t.ok(err instanceof StreamError, `${name}: StreamError`);
    t.equal((err as StreamError).reason, reason, `${name}: reason ${reason}`);
    t.equal((err as StreamError).code, 'ERR_STREAM', `${name}: ERR_STREAM`);
    t.match((err as Error).message, message, `${name}: message`);
    t.equal(`stream: ${(err as StreamError).detail}`, (err as Error).message, `${name}: the detail is the message after "stream: "`);
  }
}

t.test('a whole stream decodes the same whatever the read sizes', async (t) => {
  const bytes = stream(body);
  for (const step of [1, 3, 16, 17, 999, 4096, bytes.length]) {
    const { events, decoder } = feed(bytes, step);
    const header = events.filter((e) => e.kind === 'header');
    t.equal(header.length, 1, `step ${step}: one header`);
    t.same(header[0]?.kind === 'header' ? header[0].config : null, config, `step ${step}: config round-trips`);
    const data = Buffer.concat(events.flatMap((e) => (e.kind === 'data' ? [e.data] : [])));
    t.ok(data.equals(body), `step ${step}: body round-trips`);
    t.equal(events[events.length - 1]?.kind, 'end', `step ${step}: ends`);
    t.ok(decoder.done);
    t.doesNotThrow(() => decoder.finish(), `step ${step}: finish after end is fine`);
    t.equal(decoder.bodyBytes, body.length);
  }
});

t.test('the header event says where the body starts', async (t) => {
  const bytes = stream(body);
  const { events } = feed(bytes, bytes.length);
  const h = events[0];
  t.equal(h?.kind, 'header');
  const at = h?.kind === 'header' ? h.bytes : 0;
  // What a client forwards to vmd: the body alone, read by a decoder that starts at the first chunk.
  const rest = feed(bytes.subarray(at), 100, { body: true });
  t.ok(Buffer.concat(rest.events.flatMap((e) => (e.kind === 'data' ? [e.data] : []))).equals(body));
  t.ok(rest.decoder.done);
});

t.test('a wrong magic is told at once, not at EOF', async (t) => {
  const d = new StreamDecoder();
  throwsStream(t, () => d.push(Buffer.from('#!/bin/sh\n')), 'magic', /^stream: not a vmd send stream \(bad magic\)$/, 'text file');
  throwsStream(t, () => new StreamDecoder().push(Buffer.from('X')), 'magic', /bad magic/, 'first byte');
  const e = new StreamDecoder();
  e.push(Buffer.from('VMD'));
  throwsStream(t, () => e.finish(), 'truncated-header', /^stream: truncated in the header \(3 of 16 bytes\)$/, 'a magic prefix then EOF');
  throwsStream(t, () => new StreamDecoder().finish(), 'truncated-header', /^stream: empty input$/, 'empty');
});

t.test('a newer version is refused by name; version 0 is corrupt', async (t) => {
  const bytes = stream(body);
  const newer = Buffer.from(bytes);
  newer.writeUInt32BE(STREAM_VERSION + 1, STREAM_MAGIC.length);
  throwsStream(t, () => feed(newer, 64), 'version', new RegExp(`^stream: version ${STREAM_VERSION + 1} is newer than this vmd understands \\(${STREAM_VERSION}\\)$`), 'newer');
  const zero = Buffer.from(bytes);
  zero.writeUInt32BE(0, STREAM_MAGIC.length);
  throwsStream(t, () => feed(zero, 64), 'corrupt', /invalid version 0/, 'zero');
});

t.test('truncation: in the header, in the configuration, in the body, before the end marker', async (t) => {
  const bytes = stream(body);
  const headerLen = encodeStreamHeader(config).length;
  const cases: Array<[number, string, RegExp]> = [
    [10, 'truncated-header', /^stream: truncated in the header \(10 of 16 bytes\)$/],
    [STREAM_HEADER_BYTES + 5, 'truncated-header', /^stream: truncated in the configuration \(5 of \d+ bytes\)$/],
    [headerLen + 2, 'truncated-body', /^stream: truncated after 0 bytes of guest state$/],
    [headerLen + 4 + 500, 'truncated-body', /^stream: truncated after 500 bytes of guest state$/],
    [bytes.length - 4, 'truncated-body', /^stream: truncated after 5000 bytes of guest state$/],
  ];
  for (const [cut, reason, message] of cases) {
    const { decoder } = feed(bytes.subarray(0, cut), 7);
    throwsStream(t, () => decoder.finish(), reason, message, `cut at ${cut}`);
  }
});

t.test('corrupt bodies: a huge chunk length, bytes after the end', async (t) => {
  const head = encodeStreamHeader(config);
  const huge = Buffer.alloc(4);
  huge.writeUInt32BE(MAX_CHUNK + 1);
  throwsStream(t, () => feed(Buffer.concat([head, huge]), 3), 'corrupt', /invalid chunk length/, 'huge chunk');
  throwsStream(t, () => feed(Buffer.concat([stream(body), Buffer.from('x')]), 5000), 'corrupt', /1 unexpected bytes after the end/, 'trailing');
  const d = new StreamDecoder();
  throwsStream(t, () => d.push(Buffer.from('nope')), 'magic', /bad magic/, 'the first failure');
  throwsStream(t, () => d.push(Buffer.from('more')), 'corrupt', /read after an error/, 'sticky');
});

t.test('a sender failure travels as an error event', async (t) => {
  const bytes = Buffer.concat([encodeStreamHeader(config), chunkPrefix(3), Buffer.from('abc'), encodeStreamError({ code: 'ERR_QEMU', message: 'vm "web": send: migration failed', hint: 'h' })]);
  const { events, decoder } = feed(bytes, 2);
  const last = events[events.length - 1];
  t.same(last, { kind: 'error', error: { code: 'ERR_STREAM', message: 'vm "web": send: migration failed', hint: 'h' } });
  t.ok(decoder.done);
});

t.test('the configuration reader is strict and names the field', async (t) => {
  t.same(readStreamConfig(JSON.parse(JSON.stringify(config))), config);
  for (const group of ['web', 'web-servers', 'a', 'db_2x', 'x.y']) {
    const c = { ...config, interfaces: [{ ...config.interfaces[0]!, group }] };
    t.same(readStreamConfig(c), c, `group ${group}`);
  }
  const router = { ...config, interfaces: [{ ...config.interfaces[0]!, allow: ['dhcp', 'router'] }] };
  t.same(readStreamConfig(JSON.parse(JSON.stringify(router))), router, 'a NIC\'s allow dhcp / allow router travel with it');
  const bad: Array<[string, unknown, RegExp]> = [
    ['not an object', [], /configuration: must be an object/],
    ['unknown key', { ...config, x: 1 }, /unknown field "x"/],
    ['memory', { ...config, memory: 1000 }, /memory must be an integer/],
    ['memory not MiB', { ...config, memory: 1024 * 1024 + 1 }, /whole number of megabytes/],
    ['cpus', { ...config, cpus: 0 }, /cpus must be an integer from 1/],
    ['relative boot', { ...config, boot: 'k' }, /boot must be an absolute path/],
    ['newline in a path', { ...config, disks: [{ path: '/a\nb', format: 'raw' }] }, /disk 0 path must be an absolute path/],
    ['disk format', { ...config, disks: [{ path: '/a', format: 'vmdk' }] }, /disk 0 format must be raw or qcow2/],
    ['too many disks', { ...config, disks: Array(5).fill({ path: '/a', format: 'raw' }) }, /disks must be a list of at most 4/],
    ['name', { ...config, name: '../x' }, /name is invalid/],
    ['mac', { ...config, interfaces: [{ ...config.interfaces[0], lladdr: 'FE:E1:BB:01:02:03' }] }, /interface 0 lladdr is invalid/],
    ['multicast mac', { ...config, interfaces: [{ ...config.interfaces[0], lladdr: '01:00:5e:00:00:01' }] }, /multicast/],
    ['switch name', { ...config, interfaces: [{ ...config.interfaces[0], switch: 'a\nb' }] }, /interface 0 switch is invalid/],
    ['group name', { ...config, interfaces: [{ ...config.interfaces[0], group: 'g;flush ruleset' }] }, /interface 0 group is invalid/],
    ['group ending in a digit', { ...config, interfaces: [{ ...config.interfaces[0], group: 'web1' }] }, /interface 0 group is invalid/],
    ['group too long', { ...config, interfaces: [{ ...config.interfaces[0], group: 'g'.repeat(16) }] }, /interface 0 group is invalid/],
    ['forward port', { ...config, interfaces: [{ ...config.interfaces[0], forwards: [{ proto: 'tcp', hostPort: 0, guestPort: 1 }] }] }, /forward port/],
    ['rule address', { ...config, interfaces: [{ ...config.interfaces[0], rules: [{ action: 'pass', direction: null, quick: false, protos: [], from: { addresses: ['10.0.0.0/33'], ports: [] }, to: { addresses: [], ports: [] }, text: 'pass' }] }] }, /address\/prefix/],
    ['cmdline control char', { ...config, cmdline: 'a\u0007' }, /cmdline must be one line/],
    ['owner', { ...config, owner: { uid: -1, gid: null } }, /owner uid/],
    ['allow word', { ...config, interfaces: [{ ...config.interfaces[0], allow: ['everything'] }] }, /interface 0 allow must be dhcp or router/],
    ['allow twice', { ...config, interfaces: [{ ...config.interfaces[0], allow: ['dhcp', 'dhcp'] }] }, /interface 0 allow names one twice/],
  ];
  for (const [name, value, message] of bad) {
    throwsStream(t, () => readStreamConfig(value), 'config', message, name);
  }
});

t.test('a configuration that is not JSON is a config error of the stream', async (t) => {
  const head = Buffer.alloc(STREAM_HEADER_BYTES);
  STREAM_MAGIC.copy(head);
  head.writeUInt32BE(STREAM_VERSION, 8);
  head.writeUInt32BE(3, 12);
  throwsStream(t, () => feed(Buffer.concat([head, Buffer.from('{x}')]), 4), 'config', /not valid JSON/, 'json');
  head.writeUInt32BE(0, 12);
  throwsStream(t, () => feed(head, 16), 'config', /invalid configuration length 0/, 'empty config');
});

t.test('property: random corruption of a stream yields StreamError or a clean decode, nothing else', async (t) => {
  const bytes = stream(body, 700);
  let seed = 1;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const others: string[] = [];
  for (let run = 0; run < 2000; run++) {
    const copy = Buffer.from(bytes.subarray(0, rand(bytes.length + 1)));
    for (let k = rand(4); k > 0 && copy.length > 0; k--) copy[rand(copy.length)] = rand(256);
    try {
      const { decoder } = feed(copy, 1 + rand(300));
      decoder.finish();
    } catch (err) {
      if (!(err instanceof StreamError)) others.push(String(err));
    }
  }
  t.same(others.slice(0, 5), [], 'only StreamError escapes');
});
