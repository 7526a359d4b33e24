// `vmctl grow -s size disk`: grows a stopped VM's disk image, never shrinks it; qemu-img runs as the calling user,
// as for `vmctl create`. The guest sees the new size at its next boot (its partitions and filesystems are its own).

import { closeSync, openSync, readSync } from 'node:fs';
import { resolve } from 'node:path';
import { fmtScaled } from '../share/scaled.js';
import { getopt, warnx, type CommandSpec, type Context } from './command.js';
import { CliError, UsageError } from './errors.js';
import { parseSize } from './start.js';
import { COMMAND_USAGE } from './usage.js';

const QCOW2_MAGIC = Buffer.from('QFI\xfb', 'latin1');

export interface GrowArgs {
  readonly disk: string;
  readonly size: number;
}

export function parseGrow(args: readonly string[], cwd: string, warn: (message: string) => void): GrowArgs {
  const { events, operands } = getopt(args, ['-s <size>']);
  const s = events.find((e) => e.name === 's');
  if (operands.length !== 1 || s?.value === undefined) throw new UsageError();
  return { disk: resolve(cwd, operands[0] as string), size: parseSize(s.value, 'disk', warn) };
}

/** qcow2 by its magic, raw otherwise: named to qemu-img, so it never probes. */
function formatOf(path: string): 'qcow2' | 'raw' {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new CliError(`grow: ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'No such file or directory' : (err as Error).message}`);
  }
  try {
    const head = Buffer.alloc(4);
    return readSync(fd, head, 0, 4, 0) === 4 && head.equals(QCOW2_MAGIC) ? 'qcow2' : 'raw';
  } finally {
    closeSync(fd);
  }
}

/** Runs qemu-img as the caller; its words on failure, with a hint when a running guest holds the image. */
async function qemuImg(ctx: Context, args: readonly string[]): Promise<string> {
  const { execa } = await import('execa');
  const r = await execa('qemu-img', args, { cwd: ctx.cwd, env: ctx.env, reject: false, stdin: 'ignore', encoding: 'utf8' });
  if (!r.failed) return String(r.stdout);
  if (r.code === 'ENOENT') throw new CliError('grow: qemu-img: No such file or directory');
  const words = String(r.stderr).split('\n').map((l) => l.replace(/^qemu-img: /, '').trim()).filter((l) => l.length > 0).join(' ');
  const hint = /lock/i.test(words) ? '\nvmctl: hint: a running vm uses the disk: stop it first' : '';
  throw new CliError(`grow: ${words || 'qemu-img failed'}${hint}`);
}

async function runGrow(args: readonly string[], ctx: Context): Promise<number> {
  const a = parseGrow(args, ctx.cwd, (m) => warnx(ctx, m));
  const format = formatOf(a.disk);
  // Without -U: an image a running guest holds is refused here, before anything changes.
  const info = JSON.parse(await qemuImg(ctx, ['info', '-f', format, '--output=json', a.disk])) as { 'virtual-size'?: unknown };
  const current = typeof info['virtual-size'] === 'number' ? info['virtual-size'] : NaN;
  if (!Number.isFinite(current)) throw new CliError(`grow: ${a.disk}: qemu-img did not tell its size`);
  if (a.size < current) {
    throw new CliError(`grow: ${a.disk}: ${fmtScaled(a.size)} is smaller than its ${fmtScaled(current)}: disks are never shrunk`);
  }
  if (a.size === current) {
    warnx(ctx, `${a.disk} is already ${fmtScaled(current)}`);
    return 0;
  }
  await qemuImg(ctx, ['resize', '-q', '-f', format, a.disk, String(a.size)]);
  warnx(ctx, `${a.disk} grown from ${fmtScaled(current)} to ${fmtScaled(a.size)}`);
  return 0;
}

/** `vmctl grow -s size disk`: not `resize`, which would make OpenBSD's `vmctl res` (reset) ambiguous, and says it only grows. */
export const growCommand: CommandSpec = { name: 'grow', usage: COMMAND_USAGE.grow, run: runGrow };
