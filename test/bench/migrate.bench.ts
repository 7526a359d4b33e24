// Benchmark of `vmctl migrate` between two vmds on two namespaces joined by a veth, for a 256 MB and a 1 GB guest:
// total time, the downtime QEMU measured and how long the guest was paused in all; for comparison, send/receive;
// and --copy-storage with a disk of its own.

import { existsSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { HOST_ADDRS, twoHostsStart } from '../lib/two-hosts.js';
import { guestInitrd, guestKernel, type VmdHarness } from '../lib/vmd-harness.js';
import type { BenchSection, Measurement } from './bench.js';

/** The target for this machine: QEMU's default downtime limit. */
const TARGET_DOWNTIME_MS = 300;

/** `vmctl --json migrate` from `a` to `b`; QEMU's numbers and the command's wall time. */
async function migrateTimed(a: VmdHarness, b: VmdHarness, name: string, more: string[] = []): Promise<{ wallMs: number; totalMs: number; downtimeMs: number; resumeMs: number }> {
  const t0 = performance.now();
  const r = await a.vmctl(['--json', 'migrate', ...more, '-s', b.socket, name, HOST_ADDRS[1]], { timeoutMs: 600_000 });
  const wallMs = performance.now() - t0;
  if (r.exitCode !== 0) throw new Error(`migrate ${name}: ${r.stderr}`);
  const done = JSON.parse(r.stdout) as { totalMs: number | null; downtimeMs: number | null; resumeMs: number };
  // QEMU may report no downtime (null): NaN then shows on the line (and misses), where null + resumeMs printed a
  // plausible-looking number.
  return { wallMs, totalMs: done.totalMs ?? NaN, downtimeMs: done.downtimeMs ?? NaN, resumeMs: done.resumeMs };
}

/** One size: start on `a`, migrate to `b`, then send from `b` through a file and receive on `a`. */
async function measureSize(a: VmdHarness, b: VmdHarness, label: string, memory: string): Promise<Measurement[]> {
  const name = `m${memory}`;
  const started = await a.vmctl(['start', name, '-b', guestKernel, '--initrd', guestInitrd, '-m', memory, '-L']);
  if (started.exitCode !== 0) throw new Error(`start: ${started.stderr}`);
  await a.console(name, '\n', /vmd-guest: ready/, 90);
  const m = await migrateTimed(a, b, name);
  // The guest answers on the target: the state loaded, not just the command returned.
  await b.console(name, 'echo MOVED-$((40+2))\n', /MOVED-42/, 30);
  const file = join(b.dir, `${name}.vmstate`);
  const sent = await b.vmctlFiles(['send', name], { stdout: file }, 600_000);
  if (sent.exitCode !== 0) throw new Error(`send: ${sent.stderr}`);
  const received = await a.vmctlFiles(['receive', name], { stdin: file }, 600_000);
  if (received.exitCode !== 0) throw new Error(`receive: ${received.stderr}`);
  rmSync(file, { force: true });
  await a.vmctl(['stop', '-f', '-w', name]);
  return [
    { name: `migrate ${label} guest: total`, value: m.wallMs / 1000, unit: 's' },
    { name: `migrate ${label} guest: QEMU's total time`, value: m.totalMs / 1000, unit: 's' },
    { name: `migrate ${label} guest: downtime (QEMU's)`, value: m.downtimeMs, unit: 'ms' },
    // The target resumes the guest only on vmctl's commit, once the source reported completion.
    { name: `migrate ${label} guest: paused (QEMU's downtime and until the target resumed it)`, value: m.downtimeMs + m.resumeMs, unit: 'ms', target: TARGET_DOWNTIME_MS },
    { name: `send + receive ${label} guest (paused throughout)`, value: (sent.ms + received.ms) / 1000, unit: 's' },
  ];
}

/** --copy-storage: a 256 MB guest with a 256 MiB disk of random data (no holes to skip), mirrored first. */
async function measureCopyStorage(a: VmdHarness, b: VmdHarness): Promise<Measurement[]> {
  const name = 'mcopy';
  const disk = join(a.dir, 'copy-storage.raw');
  writeFileSync(disk, randomBytes(256 * 1024 * 1024));
  const started = await a.vmctl(['start', name, '-b', guestKernel, '--initrd', guestInitrd, '-m', '256M', '-d', disk]);
  if (started.exitCode !== 0) throw new Error(`start: ${started.stderr}`);
  await a.console(name, '\n', /vmd-guest: ready/, 90);
  // Both hosts share this filesystem: the source's QEMU keeps its image open, the target makes the path anew.
  unlinkSync(disk);
  const m = await migrateTimed(a, b, name, ['--copy-storage']);
  await b.console(name, 'echo MOVED-$((40+2))\n', /MOVED-42/, 30);
  await b.vmctl(['stop', '-f', '-w', name]);
  rmSync(disk, { force: true });
  return [
    { name: 'migrate --copy-storage 256 MB guest, 256 MiB disk: total', value: m.wallMs / 1000, unit: 's' },
    { name: 'migrate --copy-storage 256 MB guest, 256 MiB disk: paused (downtime and until resumed)', value: m.downtimeMs + m.resumeMs, unit: 'ms', target: TARGET_DOWNTIME_MS },
  ];
}

export const migrateBench: BenchSection = {
  name: 'migrate',
  async run(): Promise<readonly Measurement[]> {
    if (!existsSync(guestKernel)) throw new Error(`test guest missing: run share/guest/build (${guestKernel})`);
    const [a, b] = await twoHostsStart();
    try {
      return [...await measureSize(a, b, '256 MB', '256M'), ...await measureSize(a, b, '1 GB', '1G'), ...await measureCopyStorage(a, b)];
    } finally {
      await a.teardown();
      await b.teardown();
    }
  },
};
