// A full garbage collection soon after a guest or a connection is gone, at most one per period, so what a start
// or a request left in V8's old generation is returned instead of accumulating until V8 decides to collect it.

/** A trim runs this long after the event that asked for it (a burst of events is one trim). */
const TRIM_DELAY_MS = 2000;
/** At most one trim per this period, however busy the process (a full collection costs milliseconds, below). */
const TRIM_MIN_INTERVAL_MS = 10_000;

/*
 * Why: garbage that outlives two young-generation collections (a guest's QMP client, console socket and backlog, a
 * connection's reader) moves to the old generation, which V8 only collects when its limit is reached or the process
 * idles after an earlier full collection. 500 start/stop cycles of a guest with a NIC (test/bench/churn.bench.ts)
 * took vmm from 43.8 to 48.4 MB RSS and control from 43.2 to 47.8 MB this way, the three roles from 146 to 161 MB,
 * while their live heaps stayed flat (heap snapshots after 100 and 400 cycles). With these trims: 146 to 144 MB.
 * Tried first, each changing the total after the churn by less than the parent's own GC noise (+-3 MB):
 * --max-old-space-size=32 (roles) / 64 (parent), --initial-old-space-size=4/8, --heap-growing-percent=20,
 * MALLOC_ARENA_MAX=2. A trim of the parent's ~11 MB heap took 11.5 ms (--trace-gc, during the churn).
 * State is per process because the heap is: one pending timer and the time of the last trim.
 */
let pending: NodeJS.Timeout | null = null;
let lastTrim = 0;

/** Schedules one full collection (only where Node runs with --expose-gc: vmd's own processes); never keeps Node alive. */
export function heapTrimSoon(now: () => number = Date.now): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined || pending !== null) return;
  const wait = Math.max(TRIM_DELAY_MS, lastTrim + TRIM_MIN_INTERVAL_MS - now());
  pending = setTimeout(() => {
    pending = null;
    lastTrim = now();
    gc();
  }, wait);
  pending.unref();
}
