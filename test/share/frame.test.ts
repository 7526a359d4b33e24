// Tests for share/frame: the control socket's length-prefixed JSON framing and its raw-stream hand-off.
// The decoder faces untrusted clients, so malformed input is tested as hard as well-formed input.

import t, { type Test } from 'tap';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DEFAULT_MAX_FRAME_BYTES,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  FrameError,
  encodeFrame,
  readFrames,
} from '../../share/frame.js';
import { VmdError } from '../../share/errors.js';

// A frame with an arbitrary body, valid or not, for feeding the decoder what encodeFrame would never make.
function rawFrame(body: Buffer | string, length?: number): Buffer {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  const header = Buffer.alloc(FRAME_HEADER_BYTES);
  header.writeUInt32BE(length ?? bytes.length, 0);
  return Buffer.concat([header, bytes]);
}

// Deterministic PRNG (mulberry32), so a fuzz failure can be replayed from its seed.
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const samples: unknown[] = [
  { type: 'vm.start.request', version: 1, peer: 7, name: 'web' },
  { nested: { deeper: [1, 2, { x: null }] }, text: 'ünïcødé ✓ 🐡', empty: '' },
  [],
  'a string',
  0,
  -1.5e300,
  true,
  null,
  { big: 'x'.repeat(100_000) },
];

t.test('round trips through encodeFrame and FrameDecoder', async (t) => {
  for (const sample of samples) {
    const frame = encodeFrame(sample);
    t.equal(frame.readUInt32BE(0), frame.length - FRAME_HEADER_BYTES, 'length prefix matches the body');
    const { messages, error } = new FrameDecoder().decode(frame);
    t.equal(error, undefined);
    t.same(messages, [sample]);
  }
});

t.test('several frames in one chunk come out in order', async (t) => {
  const decoder = new FrameDecoder();
  const { messages, error } = decoder.decode(Buffer.concat(samples.map((s) => encodeFrame(s))));
  t.equal(error, undefined);
  t.same(messages, samples);
  t.equal(decoder.buffered, 0);
  t.same(decoder.read(), { kind: 'more' });
});

t.test('frames split at every byte boundary, fed byte by byte', async (t) => {
  const stream = Buffer.concat(samples.map((s) => encodeFrame(s)));
  const decoder = new FrameDecoder();
  const messages: unknown[] = [];
  for (let i = 0; i < stream.length; i++) {
    const { messages: got, error } = decoder.decode(stream.subarray(i, i + 1));
    if (error !== undefined) t.fail(`error at byte ${i}: ${error.message}`);
    messages.push(...got);
  }
  t.same(messages, samples);
  t.equal(decoder.state, 'frames');

  // Every single split point of one frame, as two chunks.
  const one = encodeFrame(samples[1]);
  for (let cut = 0; cut <= one.length; cut++) {
    const d = new FrameDecoder();
    const first = d.decode(one.subarray(0, cut));
    const second = d.decode(one.subarray(cut));
    t.same([...first.messages, ...second.messages], [samples[1]], `cut at ${cut}`);
  }
});

t.test('a partial frame waits for more', async (t) => {
  const decoder = new FrameDecoder();
  const frame = encodeFrame({ a: 1 });
  t.same(decoder.decode(frame.subarray(0, 2)).messages, []);
  t.same(decoder.read(), { kind: 'more' });
  t.same(decoder.decode(frame.subarray(2, 6)).messages, []);
  t.equal(decoder.buffered, 6);
  t.same(decoder.decode(frame.subarray(6)).messages, [{ a: 1 }]);
});

t.test('oversized frames are refused from the header alone', async (t) => {
  const decoder = new FrameDecoder();
  const header = rawFrame(Buffer.alloc(0), DEFAULT_MAX_FRAME_BYTES + 1);
  const { messages, error } = decoder.decode(header);
  t.same(messages, []);
  t.ok(error instanceof FrameError);
  t.ok(error instanceof VmdError, 'a FrameError is a VmdError the socket can carry');
  t.equal(error?.code, 'ERR_PROTOCOL');
  t.equal(error?.reason, 'oversized');
  t.same(error?.toJSON(), { code: 'ERR_PROTOCOL', message: error?.message });
  t.equal(decoder.state, 'failed');

  // The largest 32-bit length is refused too, without allocating anything.
  t.equal(new FrameDecoder().decode(rawFrame(Buffer.alloc(0), 0xffffffff)).error?.reason, 'oversized');

  // Exactly the limit passes; one more fails; the limit is configurable.
  const small = new FrameDecoder({ maxFrameBytes: 16 });
  t.equal(small.maxFrameBytes, 16);
  const exact = JSON.stringify('x'.repeat(14));
  t.equal(Buffer.byteLength(exact), 16);
  t.same(small.decode(rawFrame(exact)).messages, ['x'.repeat(14)]);
  t.equal(small.decode(rawFrame(JSON.stringify('x'.repeat(15)))).error?.reason, 'oversized');

  t.throws(() => encodeFrame('x'.repeat(15), { maxFrameBytes: 16 }), FrameError);
  t.ok(encodeFrame('x'.repeat(14), { maxFrameBytes: 16 }));
  for (const bad of [0, -1, 1.5, Number.NaN, 2 ** 32]) {
    t.throws(() => new FrameDecoder({ maxFrameBytes: bad }), RangeError, `maxFrameBytes ${bad}`);
  }
});

t.test('text that holds U+FFFD: valid UTF-8 decodes, an invalid byte beside it is still refused', async (t) => {
  // Buffer's decoding turns invalid bytes into U+FFFD too: only the strict decoder can tell the two apart.
  const ok = new FrameDecoder().decode(rawFrame('{"s":"a\ufffdb"}'));
  t.same(ok.messages, [{ s: 'a\ufffdb' }]);
  t.equal(ok.error, undefined);
  const bad = new FrameDecoder().decode(rawFrame(Buffer.concat([Buffer.from('{"s":"\ufffd'), Buffer.from([0xff]), Buffer.from('"}')])));
  t.same(bad.messages, []);
  t.equal(bad.error?.reason, 'encoding');
});

t.test('garbage is a protocol error with a reason', async (t) => {
  const cases: [string, Buffer, string][] = [
    ['invalid UTF-8', rawFrame(Buffer.from([0x22, 0xff, 0xfe, 0x22])), 'encoding'],
    ['overlong UTF-8', rawFrame(Buffer.from([0x22, 0xc0, 0xaf, 0x22])), 'encoding'],
    ['lone surrogate', rawFrame(Buffer.from([0x22, 0xed, 0xa0, 0x80, 0x22])), 'encoding'],
    ['truncated JSON', rawFrame('{"a":'), 'json'],
    ['not JSON', rawFrame('hello'), 'json'],
    ['empty body', rawFrame(''), 'json'],
    ['byte-order mark', rawFrame('\ufeff{}'), 'json'],
    ['two values', rawFrame('{} {}'), 'json'],
    ['HTTP request', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), 'oversized'],
  ];
  for (const [name, bytes, reason] of cases) {
    const decoder = new FrameDecoder();
    const { messages, error } = decoder.decode(bytes);
    t.same(messages, [], name);
    t.equal(error?.reason, reason, name);
    t.equal(error?.code, 'ERR_PROTOCOL', name);
  }
});

t.test('after an error the decoder refuses input and keeps reporting it', async (t) => {
  const decoder = new FrameDecoder();
  const good = encodeFrame({ ok: 1 });
  const { messages, error } = decoder.decode(Buffer.concat([good, rawFrame('nope'), good]));
  t.same(messages, [{ ok: 1 }], 'messages before the bad frame are delivered');
  t.equal(error?.reason, 'json');
  t.equal(decoder.push(good), false);
  t.equal(decoder.buffered, 0, 'nothing stays buffered after a violation');
  t.same(decoder.read(), { kind: 'error', error });
  t.equal(decoder.end(), error);
  t.equal(decoder.takeRemainder().length, 0, 'no remainder is handed on after a violation');
  t.equal(decoder.state, 'failed');
});

t.test('a connection closed inside a frame is a truncated frame', async (t) => {
  const clean = new FrameDecoder();
  clean.decode(encodeFrame({ a: 1 }));
  t.equal(clean.end(), undefined);
  const cut = new FrameDecoder();
  cut.decode(encodeFrame({ a: 1 }).subarray(0, 5));
  t.equal(cut.end()?.reason, 'truncated');
  t.equal(cut.state, 'failed');
});

t.test('remainder hand-off to a raw stream', async (t) => {
  const decoder = new FrameDecoder();
  const raw = Buffer.from('\x1b[0mlogin: \x00\xff raw console bytes', 'latin1');
  decoder.push(Buffer.concat([encodeFrame({ type: 'console.request' }), encodeFrame({ type: 'console.response' }), raw]));
  t.same(decoder.read(), { kind: 'message', message: { type: 'console.request' } });
  t.same(decoder.read(), { kind: 'message', message: { type: 'console.response' } });
  const rest = decoder.takeRemainder();
  t.same(rest, raw, 'bytes past the last frame come back untouched');
  t.equal(decoder.state, 'raw');
  t.same(decoder.read(), { kind: 'raw' });
  t.equal(decoder.push(Buffer.from('more')), false, 'no input after the hand-off');
  t.equal(decoder.takeRemainder().length, 0);

  const empty = new FrameDecoder();
  empty.decode(encodeFrame(1));
  t.equal(empty.takeRemainder().length, 0);
});

t.test('10,000 random malformed inputs never throw out of the decoder', async (t) => {
  const seed = 0x5eed;
  const random = prng(seed);
  const int = (n: number): number => Math.floor(random() * n);
  const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256)));
  const valid = encodeFrame({ type: 'vm.status.request', peer: 1, name: 'web' });
  let errors = 0;
  let messages = 0;
  for (let i = 0; i < 10_000; i++) {
    let input: Buffer;
    switch (i % 5) {
      case 0: // pure noise
        input = bytes(int(64));
        break;
      case 1: { // a valid frame with a few flipped bytes
        input = Buffer.from(valid);
        for (let k = 0; k <= int(3); k++) input[int(input.length)] = int(256);
        break;
      }
      case 2: // plausible small length, random body
        input = rawFrame(bytes(int(32)), int(40));
        break;
      case 3: // a valid frame, then noise
        input = Buffer.concat([valid, bytes(int(16))]);
        break;
      default: { // random JSON-ish text, framed correctly
        const alphabet = '{}[]":,0123456789.eE+-truefalsnl \\u\n\t\ud800';
        const text = Array.from({ length: int(24) }, () => alphabet[int(alphabet.length)]).join('');
        input = rawFrame(text);
      }
    }
    const decoder = new FrameDecoder({ maxFrameBytes: 64 });
    try {
      // Random chunking, so the partial-frame paths are exercised as well.
      let offset = 0;
      while (offset < input.length) {
        const size = 1 + int(8);
        const result = decoder.decode(input.subarray(offset, offset + size));
        messages += result.messages.length;
        offset += size;
      }
      const error = decoder.end() ?? decoder.error;
      if (error !== undefined) {
        if (!(error instanceof FrameError)) throw new Error(`not a FrameError: ${String(error)}`);
        errors += 1;
      }
    } catch (err) {
      t.fail(`input ${i} (seed ${seed}) threw: ${String(err)} — ${input.toString('hex')}`);
      return;
    }
  }
  t.ok(errors > 5000, `most inputs were rejected (${errors})`);
  t.ok(messages > 0, `some mutated inputs still decode (${messages})`);
});

// A connected pair of unix sockets, for the socket helper.
async function socketPair(t: Test): Promise<{ server: Socket; client: Socket }> {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-frame-'));
  const path = join(dir, 's');
  const listener = createServer();
  listener.listen(path);
  await once(listener, 'listening');
  const accepted = once(listener, 'connection') as Promise<[Socket]>;
  const client = connect(path);
  await once(client, 'connect');
  const [server] = await accepted;
  t.teardown(() => {
    client.destroy();
    server.destroy();
    listener.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { server, client };
}

t.test('readFrames emits messages from a socket, across writes', async (t) => {
  const { server, client } = await socketPair(t);
  const reader = readFrames(server);
  const got: unknown[] = [];
  reader.on('message', (m) => got.push(m));
  const stream = Buffer.concat(samples.map((s) => encodeFrame(s)));
  client.write(stream.subarray(0, 3));
  client.write(stream.subarray(3, 50_000));
  client.write(stream.subarray(50_000));
  while (got.length < samples.length) await once(reader, 'message');
  t.same(got, samples);
});

t.test('readFrames reports a protocol error once and stops reading', async (t) => {
  const { server, client } = await socketPair(t);
  const reader = readFrames(server, { maxFrameBytes: 100 });
  const got: unknown[] = [];
  reader.on('message', (m) => got.push(m));
  const errorSeen = once(reader, 'protocol-error') as Promise<[FrameError]>;
  client.write(Buffer.concat([encodeFrame('first'), rawFrame('x'.repeat(101)), encodeFrame('never')]));
  const [error] = await errorSeen;
  t.equal(error.reason, 'oversized');
  t.same(got, ['first']);
  // The connection can still be answered with the error before it is closed.
  server.end(encodeFrame({ error: error.toJSON() }));
  const answer = readFrames(client);
  const [reply] = (await once(answer, 'message')) as [unknown];
  t.same(reply, { error: { code: 'ERR_PROTOCOL', message: error.message } });
});

t.test('readFrames closes the connection when nobody handles a protocol error', async (t) => {
  const { server, client } = await socketPair(t);
  readFrames(server);
  client.write(rawFrame('garbage'));
  await once(server, 'close');
  t.ok(server.destroyed);
});

t.test('readFrames reports a frame cut off by the peer closing', async (t) => {
  const { server, client } = await socketPair(t);
  const reader = readFrames(server);
  const errorSeen = once(reader, 'protocol-error') as Promise<[FrameError]>;
  client.end(encodeFrame({ a: 1 }).subarray(0, 7));
  const [error] = await errorSeen;
  t.equal(error.reason, 'truncated');
});

t.test('switchToRaw hands the connection over without losing or reordering bytes', async (t) => {
  const { server, client } = await socketPair(t);
  const reader = readFrames(server);
  const before: unknown[] = [];
  const switched = new Promise<Buffer>((resolve) => {
    reader.on('message', (m) => {
      before.push(m);
      if ((m as { type?: string }).type === 'console.request') resolve(reader.switchToRaw());
    });
  });
  // The request and the first raw bytes arrive in one write, as a fast client would send them.
  client.write(Buffer.concat([encodeFrame({ type: 'hello' }), encodeFrame({ type: 'console.request' }), Buffer.from('ab')]));
  const remainder = await switched;
  t.same(before, [{ type: 'hello' }, { type: 'console.request' }]);
  t.ok(server.isPaused(), 'the socket is left paused for the new owner');
  client.end(Buffer.concat([Buffer.from('cd'), encodeFrame({ looks: 'like a frame but is raw' })]));
  const chunks: Buffer[] = [remainder];
  server.on('data', (c: Buffer) => chunks.push(c));
  server.resume();
  await once(server, 'end');
  t.same(
    Buffer.concat(chunks),
    Buffer.concat([Buffer.from('abcd'), encodeFrame({ looks: 'like a frame but is raw' })]),
  );
  t.same(before.length, 2, 'no message was emitted after the switch');
});

t.test('a declared 1 MiB frame holds memory for the bytes that came, not for its length', async (t) => {
  const decoder = new FrameDecoder();
  const body = Buffer.from(JSON.stringify('y'.repeat(DEFAULT_MAX_FRAME_BYTES - 2)));
  const frame = rawFrame(body);
  t.same(decoder.decode(frame.subarray(0, 14)).messages, []);
  t.equal(decoder.buffered, 14);
  t.ok(decoder.held <= 256, `14 bytes of a 1 MiB frame hold ${decoder.held} bytes`);
  // Fed in uneven pieces, the buffer grows by doubling: never more than twice what came, never past the frame.
  let sent = 14;
  for (const step of [1000, 70_000, 3, 200_000, 65_536, 400_000]) {
    decoder.decode(frame.subarray(sent, sent + step));
    sent += step;
    t.equal(decoder.buffered, sent);
    t.ok(decoder.held >= sent && decoder.held <= Math.max(2 * sent, 256), `after ${sent} bytes: ${decoder.held} held`);
  }
  t.same(decoder.decode(frame.subarray(sent)).messages, [JSON.parse(body.toString())]);
  t.equal(decoder.held, 0, 'nothing is held once the frame is read');
  t.ok(decoder.decode(frame).messages.length === 1 && decoder.held === 0, 'a whole frame in one chunk is never copied or kept');
});

t.test('a partial frame is copied out of the chunk it came in, so the chunk is not kept', async (t) => {
  const decoder = new FrameDecoder();
  const chunk = Buffer.concat([encodeFrame({ a: 1 }), encodeFrame({ b: 2 }).subarray(0, 5)]);
  const big = Buffer.concat([chunk, Buffer.alloc(60_000)]).subarray(0, chunk.length);
  t.same(decoder.decode(big).messages, [{ a: 1 }]);
  t.equal(decoder.buffered, 5);
  t.ok(decoder.held < 1000, `the 5 pending bytes hold ${decoder.held} bytes`);
  big.fill(0);
  t.same(decoder.decode(encodeFrame({ b: 2 }).subarray(5)).messages, [{ b: 2 }], 'the caller may reuse its chunk');
});

t.test('a 1 MiB frame byte by byte stays linear and within twice its size', async (t) => {
  const decoder = new FrameDecoder();
  const frame = encodeFrame('z'.repeat(DEFAULT_MAX_FRAME_BYTES - 2));
  const started = performance.now();
  let most = 0;
  for (let i = 0; i < frame.length - 1; i++) {
    decoder.push(frame.subarray(i, i + 1));
    decoder.read();
    most = Math.max(most, decoder.held);
  }
  t.ok(most <= frame.length, `at most ${most} bytes held for a ${frame.length}-byte frame`);
  t.same(decoder.decode(frame.subarray(frame.length - 1)).messages.length, 1);
  t.ok(performance.now() - started < 10_000, 'done in well under ten seconds');
});

t.test('readFrames reports what it holds after each chunk, and detach drops it', async (t) => {
  const { server, client } = await socketPair(t);
  const reader = readFrames(server);
  const held: number[] = [];
  reader.on('held', (n) => held.push(n));
  client.write(encodeFrame('x'.repeat(1000)).subarray(0, 500));
  while (held.length === 0) await once(reader, 'held');
  t.ok((held.at(-1) ?? 0) >= 500, `500 bytes of a frame hold ${held.at(-1)}`);
  t.ok(reader.attached);
  reader.detach();
  t.notOk(reader.attached);
  t.equal(reader.decoder.held, 0, 'a detached reader keeps no bytes');
});
