// Tests for vmm's console RingBuffer: it keeps exactly the last `capacity` bytes in order, whatever the chunk sizes,
// and its store grows from a small start to the capacity only as output arrives.

import t from 'tap';
import { RingBuffer } from '../../../vmd/vmm/ring.js';

/** Bytes 0,1,2,… (mod 251, so no period divides the sizes used below) as chunks of the given sizes. */
function chunks(sizes: readonly number[]): { parts: Buffer[]; all: Buffer } {
  let n = 0;
  const parts = sizes.map((size) => Buffer.from(Array.from({ length: size }, () => n++ % 251)));
  return { parts, all: Buffer.concat(parts) };
}

t.test('keeps the last capacity bytes in order, across growth and wrap-around', async (t) => {
  const cases: Array<{ name: string; capacity: number; initial: number; sizes: number[] }> = [
    { name: 'small writes, no wrap', capacity: 64, initial: 8, sizes: [3, 5, 7, 11] },
    { name: 'small writes that wrap many times', capacity: 64, initial: 8, sizes: Array.from({ length: 100 }, (_, i) => 1 + (i % 13)) },
    { name: 'one write larger than the capacity', capacity: 64, initial: 8, sizes: [5, 200] },
    { name: 'a write of exactly the capacity', capacity: 64, initial: 8, sizes: [10, 64, 3] },
    { name: 'growth in the middle of a wrapped store', capacity: 1024, initial: 16, sizes: [10, 10, 10, 500, 700, 20] },
    { name: 'initial store already the capacity', capacity: 32, initial: 4096, sizes: [20, 20, 20] },
  ];
  for (const c of cases) {
    const ring = new RingBuffer(c.capacity, c.initial);
    const { parts, all } = chunks(c.sizes);
    for (const p of parts) ring.write(p);
    const want = all.subarray(Math.max(0, all.length - c.capacity));
    t.same([...ring.contents()], [...want], c.name);
    t.equal(ring.size, want.length, `${c.name}: size`);
  }
});

t.test('the store grows only as output arrives, and never past the capacity', async (t) => {
  const ring = new RingBuffer(64 * 1024);
  const store = (): number => (ring as unknown as { buf: Buffer }).buf.length;
  t.equal(store(), 4096, 'a guest that printed nothing costs 4 KiB');
  ring.write(Buffer.alloc(3000, 1));
  t.equal(store(), 4096, 'a short boot log fits the first store');
  ring.write(Buffer.alloc(3000, 2));
  t.equal(store(), 8192, 'doubled when it no longer fits');
  for (let i = 0; i < 100; i++) ring.write(Buffer.alloc(1000, i));
  t.equal(store(), 64 * 1024, 'capped at the capacity');
  t.equal(ring.size, 64 * 1024);
});
