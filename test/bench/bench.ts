// `npm run bench`: runs every benchmark section in order and prints one line per measurement.
// Sections live in *.bench.ts files next to this one; add yours to SECTIONS. `bench.js NAME…` runs only those.

import { churnBench } from './churn.bench.js';
import { concurrentBench } from './concurrent.bench.js';
import { firewallBench } from './firewall.bench.js';
import { fleetBench } from './fleet.bench.js';
import { migrateBench } from './migrate.bench.js';
import { netBench } from './net.bench.js';
import { parseBench } from './parse.bench.js';
import { peerBench } from './peer.bench.js';
import { sendBench } from './send.bench.js';
import { startBench } from './start.bench.js';
import { throughputBench } from './throughput.bench.js';

/** One number a section measured; with `target`, the line says whether it is within it (ok) or not (MISS). */
export interface Measurement {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  /** Upper bound the value should stay at or below. */
  readonly target?: number;
  /** Lower bound the value should stay at or above (for ratios where higher is better). */
  readonly atLeast?: number;
}

/** A named group of measurements, run once per `npm run bench`. */
export interface BenchSection {
  readonly name: string;
  run(): Promise<readonly Measurement[]>;
}

const SECTIONS: readonly BenchSection[] = [parseBench, startBench, netBench, concurrentBench, fleetBench, churnBench, firewallBench, sendBench, migrateBench, throughputBench, peerBench];

function format(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(3);
}

async function main(): Promise<number> {
  const wanted = process.argv.slice(2);
  const unknown = wanted.filter((w) => !SECTIONS.some((s) => s.name === w));
  if (unknown.length > 0) {
    process.stderr.write(`bench: unknown section(s) ${unknown.join(', ')}; sections: ${SECTIONS.map((s) => s.name).join(', ')}\n`);
    return 2;
  }
  let failed = 0;
  const missed: string[] = [];
  for (const section of SECTIONS) {
    if (wanted.length > 0 && !wanted.includes(section.name)) continue;
    try {
      for (const m of await section.run()) {
        let line = `${section.name}: ${m.name}: ${format(m.value)} ${m.unit}`;
        if (m.target !== undefined) {
          const ok = m.value <= m.target;
          line += ` (target <= ${format(m.target)}: ${ok ? 'ok' : 'MISS'})`;
          if (!ok) missed.push(`${section.name}: ${m.name}`);
        }
        if (m.atLeast !== undefined) {
          const ok = m.value >= m.atLeast;
          line += ` (target >= ${format(m.atLeast)}: ${ok ? 'ok' : 'MISS'})`;
          if (!ok) missed.push(`${section.name}: ${m.name}`);
        }
        process.stdout.write(`${line}\n`);
      }
    } catch (err) {
      failed++;
      process.stdout.write(`${section.name}: failed: ${err instanceof Error ? err.message : String(err)}\n`);
    }
  }
  // A missed target is a finding to read, not a failure of the run; a section that could not measure is.
  if (missed.length > 0) process.stdout.write(`bench: ${missed.length} target(s) MISSED:\n${missed.map((m) => `  ${m}\n`).join('')}`);
  return failed === 0 ? 0 : 1;
}

main().then((code) => { process.exitCode = code; });
