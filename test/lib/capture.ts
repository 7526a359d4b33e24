// `vmctl capture` run by a test as the harness's client: the process, a promise that settles once tcpdump
// listens (or rejects if vmctl ends first), and what it wrote to stderr so far.

import { execa, type ResultPromise } from 'execa';
import { vmctlEntry } from '../../share/paths.js';
import type { VmdHarness } from './vmd-harness.js';

export function capture(h: VmdHarness, args: string[], timeout = 120_000): { proc: ResultPromise; listening: Promise<void>; stderr: () => string } {
  const proc = execa('/usr/bin/env', [process.execPath, vmctlEntry, 'capture', ...args], {
    env: h.env, extendEnv: false, reject: false, cwd: h.dir, stdin: 'ignore', timeout,
  });
  let stderr = '';
  const listening = new Promise<void>((resolve, reject) => {
    proc.stderr?.on('data', (c: Buffer) => {
      stderr += c.toString();
      if (/listening on /.test(stderr)) resolve();
    });
    void proc.then(() => reject(new Error(`vmctl capture ended before listening: ${stderr}`)));
  });
  return { proc, listening, stderr: () => stderr };
}
