// A guest's console backlog: the last bytes it printed, so a late `vmctl console` still sees the boot.
// Pure and synchronous; vmm keeps one per guest (vmd/vmm/guests.ts).

/**
 * The last N bytes a guest printed, so a late `vmctl console` still sees the boot. The store starts small and
 * doubles up to the capacity as output arrives: most guests print a few KiB at boot, and vmm keeps one per guest.
 */
export class RingBuffer {
  private buf: Buffer;
  private start = 0;
  private length = 0;

  constructor(readonly capacity: number, initial = 4096) {
    this.buf = Buffer.alloc(Math.min(capacity, initial));
  }

  /** Bytes held now (at most the capacity). */
  get size(): number {
    return this.length;
  }

  write(chunk: Buffer): void {
    if (chunk.length >= this.capacity) {
      if (this.buf.length < this.capacity) this.buf = Buffer.alloc(this.capacity);
      chunk.copy(this.buf, 0, chunk.length - this.capacity);
      this.start = 0;
      this.length = this.capacity;
      return;
    }
    const needed = this.length + chunk.length;
    if (needed > this.buf.length && this.buf.length < this.capacity) {
      let size = this.buf.length;
      while (size < needed && size < this.capacity) size *= 2;
      const grown = Buffer.alloc(Math.min(size, this.capacity));
      this.contents().copy(grown);
      this.buf = grown;
      this.start = 0;
    }
    const cap = this.buf.length;
    const end = (this.start + this.length) % cap;
    const first = Math.min(chunk.length, cap - end);
    chunk.copy(this.buf, end, 0, first);
    chunk.copy(this.buf, 0, first);
    if (needed > cap) {
      this.start = (this.start + needed - cap) % cap;
      this.length = cap;
    } else this.length = needed;
  }

  contents(): Buffer {
    const cap = this.buf.length;
    const end = this.start + this.length;
    if (end <= cap) return Buffer.from(this.buf.subarray(this.start, end));
    return Buffer.concat([this.buf.subarray(this.start), this.buf.subarray(0, end - cap)]);
  }
}
