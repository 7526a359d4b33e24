// `npm run bench`: runs every benchmark section in order and prints one line per measurement.
// Sections live in *.bench.ts files next to this one; add yours to SECTIONS.

import { parseBench } from './parse.bench.js';

/** One number a section measured. */
export interface Measurement {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
}

/** A named group of measurements, run once per `npm run bench`. */
export interface BenchSection {
  readonly name: string;
  run(): Promise<readonly Measurement[]>;
}

const SECTIONS: readonly BenchSection[] = [parseBench];

async function main(): Promise<number> {
  let failed = 0;
  for (const section of SECTIONS) {
    try {
      for (const m of await section.run()) {
        const value = Number.isInteger(m.value) ? String(m.value) : m.value.toFixed(3);
        process.stdout.write(`${section.name}: ${m.name}: ${value} ${m.unit}\n`);
      }
    } catch (err) {
      failed++;
      process.stdout.write(`${section.name}: failed: ${err instanceof Error ? err.message : String(err)}\n`);
    }
  }
  return failed === 0 ? 0 : 1;
}

main().then((code) => { process.exitCode = code; });
