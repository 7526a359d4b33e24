// Two vmds whose namespaces reach each other over a veth, as two hosts on one network: for migration tests and the
// bench. The caller tears both harnesses down (the veth goes with the namespaces).

import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { vmctlEntry } from '../../share/paths.js';
import { VmdHarness, type HarnessOptions } from './vmd-harness.js';

/** The addresses of the first and second host on the veth. */
export const HOST_ADDRS = ['10.96.43.1', '10.96.43.2'] as const;

/**
 * Starts two harnesses and joins their namespaces; the second is started even if joining fails, so both come back.
 * `first`: the first host's options (its vm.conf).
 */
export async function twoHostsStart(first: HarnessOptions = {}): Promise<[VmdHarness, VmdHarness]> {
  const a = await VmdHarness.start(first);
  let b: VmdHarness;
  try {
    b = await VmdHarness.start();
  } catch (err) {
    await a.teardown();
    throw err;
  }
  try {
    await execa('ip', ['-n', a.netns, 'link', 'add', 'mig0', 'type', 'veth', 'peer', 'name', 'mig0', 'netns', b.netns]);
    for (const [h, addr] of [[a, HOST_ADDRS[0]], [b, HOST_ADDRS[1]]] as const) {
      await execa('ip', ['-n', h.netns, 'addr', 'add', `${addr}/24`, 'dev', 'mig0']);
      await execa('ip', ['-n', h.netns, 'link', 'set', 'mig0', 'up']);
    }
  } catch (err) {
    await a.teardown();
    await b.teardown();
    throw err;
  }
  return [a, b];
}

/** A `vmctl migrate` running in the background from `a`'s side: its exit status once it ends, and its stderr so far. */
export interface BackgroundMigration {
  readonly exited: Promise<number>;
  /** Whether vmctl still runs. */
  running(): boolean;
  err(): string;
}

/** Starts `vmctl migrate ARGS…` as `a`'s operator would, without waiting for it (tests that catch it mid-way). */
export function migrateInBackground(a: VmdHarness, args: readonly string[]): BackgroundMigration {
  const mig = spawn('/usr/bin/env', [process.execPath, vmctlEntry, 'migrate', ...args], { env: a.env, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  mig.stderr!.on('data', (c: Buffer) => { err += c.toString(); });
  const exited = new Promise<number>((r) => mig.on('close', (code) => r(code ?? 1)));
  return { exited, running: () => mig.exitCode === null && mig.signalCode === null, err: () => err };
}

/** The migration key files a host's vmd holds now (vmd/parent/migrate-tls.ts writes them under its run directory). */
export function migrationKeys(h: VmdHarness): string[] {
  const base = join(h.stateDir, 'run', 'migrate-keys');
  let dirs: string[];
  try {
    dirs = readdirSync(base);
  } catch {
    return [];
  }
  return dirs.flatMap((d) => readdirSync(join(base, d)).map((f) => join(base, d, f)));
}
