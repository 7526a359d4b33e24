// vmctl's lazy stdout/stderr (vmctl/stdio.ts): write(2) on the descriptor while nothing else is asked of the stream,
// Node's stream from the first other use on, with every later write going through it so output keeps its order.

import t from 'tap';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lazyWriteStream } from '../../vmctl/stdio.js';
import { captureStream } from './harness.js';

t.test('writes go to the descriptor until the stream is needed, then to the stream', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmctl-stdio-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'out');
  const fd = openSync(file, 'w');
  t.teardown(() => closeSync(fd));
  const captured = captureStream();
  let makes = 0;
  let broken = 0;
  const lazy = lazyWriteStream({ fd, make: () => { makes++; return captured.stream; }, onBrokenPipe: () => { broken++; } });
  lazy.stream.write('one\n');
  lazy.stream.write(Buffer.from('two\n'));
  const called = await new Promise<boolean>((resolve) => lazy.stream.write('', () => resolve(true)));
  t.ok(called, 'the callback runs');
  t.equal(readFileSync(file, 'utf8'), 'one\ntwo\n');
  t.equal(lazy.made(), false, 'no stream made by writes');
  t.equal(lazy.stream.writable, true, 'another property makes the stream');
  t.equal(lazy.made(), true);
  lazy.stream.write('three\n');
  t.equal(readFileSync(file, 'utf8'), 'one\ntwo\n', 'later writes do not overtake the stream');
  t.equal(captured.text(), 'three\n');
  t.equal(makes, 1, 'made once');
  t.equal(broken, 0);
});

t.test('a descriptor that fails hands the bytes to the stream', async (t) => {
  const captured = captureStream();
  const lazy = lazyWriteStream({ fd: 1_000_000, make: () => captured.stream, onBrokenPipe: () => undefined });
  lazy.stream.write('kept\n');
  t.equal(captured.text(), 'kept\n');
  t.equal(lazy.made(), true);
});
