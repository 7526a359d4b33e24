// Tests for vmctl/progress: send and receive draw progress only on a terminal, and end their line.
import t from 'tap';
import { byteProgress } from '../../vmctl/progress.js';
import { captureStream } from './harness.js';

function stderrOf(tty: boolean) {
  const c = captureStream();
  (c.stream as { isTTY?: boolean }).isTTY = tty;
  return c;
}

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

t.test('a pipe gets nothing', async (t) => {
  const err = stderrOf(false);
  const p = byteProgress({ stderr: err.stream, json: false }, 'send web:', null);
  p.update(1024 * 1024);
  p.finish();
  await flush();
  t.equal(err.text(), '');
});

t.test('--json gets nothing, even on a terminal', async (t) => {
  const err = stderrOf(true);
  const p = byteProgress({ stderr: err.stream, json: true }, 'send web:', null);
  p.update(5);
  p.finish();
  await flush();
  t.equal(err.text(), '');
});

t.test('a terminal gets a running count, redrawn in place, and a final line', async (t) => {
  const err = stderrOf(true);
  const p = byteProgress({ stderr: err.stream, json: false }, 'send web:', null);
  p.update(10 * 1024 * 1024);
  p.update(20 * 1024 * 1024);
  p.finish();
  await flush();
  const text = err.text();
  t.match(text, /^\rsend web: 10\.0M {2}/, 'first redraw');
  t.match(text, /\rsend web: 20\.0M {2}\n$/, 'the final state ends the line');
  t.equal(text.split('\r').length - 1, 2, 'the second update within 100 ms is not drawn, the final state is');
});

t.test('with a known total, a bar and a percentage', async (t) => {
  const err = stderrOf(true);
  const p = byteProgress({ stderr: err.stream, json: false }, 'receive web:', 200);
  p.update(100);
  p.finish();
  await flush();
  t.match(err.text(), /\rreceive web: \|={15} {15}\| {2}50% 100B? {2}\n$/);
});
