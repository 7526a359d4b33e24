// The Debian test disk (share/guest/debian) for end-to-end tests: its cached path, throwaway overlays on it, and
// a root login and commands on its serial console, each wait for something the previous input caused.

import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { execa } from 'execa';
import { packageRoot, vmctlEntry } from '../../share/paths.js';
import type { VmdHarness } from './vmd-harness.js';

let baseDiskPath: string | null = null;

/** The cached disk; the builder prints its path, building it first when the cache has none (minutes). */
export function debianDisk(): string {
  baseDiskPath ??= execFileSync(join(packageRoot, 'share', 'guest', 'debian'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  return baseDiskPath;
}

/** A throwaway overlay on the shared base, so the cached disk is never written. */
export async function debianOverlay(h: VmdHarness, name: string): Promise<string> {
  const path = join(h.dir, `${name}.qcow2`);
  await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', debianDisk(), '-F', 'qcow2', path]);
  return path;
}

/** Types `text` on the console once (a short attach in pipe mode). */
async function typeOnce(h: VmdHarness, name: string, text: string): Promise<void> {
  const r = await h.vmctl(['console', '-t', '1', name], { input: text });
  if (r.exitCode !== 0) throw new Error(`console failed: ${r.stderr}`);
}

/**
 * Logs in as root on the serial console (the image's test password) and leaves a shell prompt; returns what the
 * console showed up to the login prompt. h.console sends its input at every attach, so only the first wait types.
 */
export async function consoleLogin(h: VmdHarness, name: string, login: RegExp, timeoutSec: number): Promise<string> {
  const boot = await h.console(name, '\n', login, timeoutSec);
  await typeOnce(h, name, 'root\n');
  await h.console(name, '', /Password:/, 120);
  await typeOnce(h, name, 'vmd\n');
  await h.console(name, '', /root@[\w-]+:~# /, 300);
  return boot;
}

let runs = 0;

/**
 * Runs a shell command on the console and returns what it printed between two markers. The markers are new for
 * every run and only the shell's arithmetic writes them, so neither the echoed command nor an earlier run matches.
 */
export async function consoleRun(h: VmdHarness, name: string, cmd: string, timeoutSec = 120): Promise<string> {
  const n = 1000 + runs++;
  const line = `echo BEGIN-$((${n}+0)); ${cmd}; echo END-$((${n}+0))\n`;
  const done = new RegExp(`BEGIN-${n}[\\s\\S]*END-${n}`);
  await typeOnce(h, name, line);
  // The tty echoes what was typed within seconds. A guest that has just been received once showed nothing for two
  // minutes (CI, 1 run in 5): keys lost in its serial port, or its output stalled until the next interrupt. Typing
  // again covers both: a new key's interrupt restarts the output, and a lost line is run this time.
  try {
    await h.console(name, '', new RegExp(`BEGIN-\\$\\(\\(${n}\\+0\\)\\)|${done.source}`), 20);
  } catch {
    await typeOnce(h, name, `\n${line}`);
  }
  const out = await h.console(name, '', done, timeoutSec);
  const m = new RegExp(`BEGIN-${n}\\r?\\n([\\s\\S]*?)END-${n}`).exec(out);
  return m === null ? '' : m[1]!;
}

/** Collects console output in the background until the VM's console goes away (its QEMU exits) or `sec` pass. */
export function consoleTap(h: VmdHarness, name: string, sec = 120): { readonly done: Promise<string> } {
  const p = execa(process.execPath, [vmctlEntry, 'console', '-t', String(sec), name], {
    env: h.env, extendEnv: false, reject: false, stdin: 'pipe', timeout: (sec + 30) * 1000,
  });
  return { done: p.then((r) => String(r.stdout)) };
}
