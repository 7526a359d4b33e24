// Benchmark of the network part of a guest's start and stop (tap, bridge port, rules, fixed lease) with 1 to
// 1,000 links already there: Network.vmUp/vmDown timed in a namespace of the bench's own (net-child.ts).

import { spawnSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { BenchSection, Measurement } from './bench.js';

/** Issue target: the network part of a start, and flat from 1 to 1,000 existing links. */
const TARGET_MS = 10;
const TARGET_FLAT = 1.5;

export const netBench: BenchSection = {
  name: 'net',
  async run(): Promise<Measurement[]> {
    if (process.getuid?.() !== 0) throw new Error('needs root (taps, bridges, nftables in a namespace of its own)');
    const ns = `vmdb-net-${process.pid}`;
    spawnSync('ip', ['netns', 'add', ns]);
    try {
      spawnSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      const child = fileURLToPath(new URL('./net-child.js', import.meta.url));
      const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, child], { encoding: 'utf8', timeout: 1_800_000, maxBuffer: 1 << 20 });
      if (r.status !== 0) throw new Error(`net-child exited ${r.status}: ${r.stderr.trim().split('\n').slice(-3).join('; ')}`);
      const rows = JSON.parse(r.stdout) as Array<{ links: number; up: number; down: number; cpu: number }>;
      const out: Measurement[] = [{ name: 'machine load average (1 min) at the start, for reading the numbers', value: loadavg()[0]!, unit: '' }];
      for (const row of rows) {
        out.push({ name: `vmUp of a guest with one NIC on a dhcp switch, ${row.links} links there (median)`, value: row.up, unit: 'ms', target: TARGET_MS });
        out.push({ name: `vmDown of it, ${row.links} links there (median)`, value: row.down, unit: 'ms', target: TARGET_MS });
        out.push({ name: `CPU time of one vmUp + vmDown, vmd and its ip/nft processes, ${row.links} links there (mean)`, value: row.cpu, unit: 'ms' });
      }
      const first = rows[0]!;
      const last = rows.at(-1)!;
      out.push({ name: `vmUp with ${last.links} links / with ${first.links} (absolute +${(last.up - first.up).toFixed(2)} ms)`, value: last.up / first.up, unit: 'x', target: TARGET_FLAT });
      out.push({ name: `CPU of up + down with ${last.links} links / with ${first.links} (absolute +${(last.cpu - first.cpu).toFixed(2)} ms)`, value: last.cpu / first.cpu, unit: 'x', target: TARGET_FLAT });
      return out;
    } finally {
      spawnSync('ip', ['netns', 'del', ns]);
    }
  },
};
