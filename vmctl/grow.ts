// `vmctl grow -s size disk`: grows a VM's disk image, never shrinks it. A stopped VM's with qemu-img as the calling
// user, as for `vmctl create`; a running VM's (QEMU holds it locked) through vmd, which has QEMU grow it live.

import { closeSync, openSync, readSync, realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { fmtScaled } from '../share/scaled.js';
import { getopt, printJson, warnx, type CommandSpec, type Context } from './command.js';
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

/** qemu-img's refusal of an image another process (a running guest's QEMU) holds locked. */
class LockedError extends CliError {}

/** Runs qemu-img as the caller; its words on failure, a LockedError when a running guest holds the image. */
async function qemuImg(ctx: Context, args: readonly string[]): Promise<string> {
  const { execa } = await import('execa');
  const r = await execa('qemu-img', args, { cwd: ctx.cwd, env: ctx.env, reject: false, stdin: 'ignore', encoding: 'utf8' });
  if (!r.failed) return String(r.stdout);
  if (r.code === 'ENOENT') throw new CliError('grow: qemu-img: No such file or directory');
  const words = String(r.stderr).split('\n').map((l) => l.replace(/^qemu-img: /, '').trim()).filter((l) => l.length > 0).join(' ');
  if (/lock/i.test(words)) throw new LockedError(`grow: ${words}`);
  throw new CliError(`grow: ${words || 'qemu-img failed'}`);
}

async function runGrow(args: readonly string[], ctx: Context): Promise<number> {
  const a = parseGrow(args, ctx.cwd, (m) => warnx(ctx, m));
  const format = formatOf(a.disk);
  // Without -U first: an image a running guest holds is refused, and then grown by its QEMU through vmd.
  let running = false;
  const infoArgs = ['info', '-f', format, '--output=json', a.disk];
  const out = await qemuImg(ctx, infoArgs).catch(async (err: unknown) => {
    if (!(err instanceof LockedError)) throw err;
    running = true;
    return qemuImg(ctx, ['info', '-U', ...infoArgs.slice(1)]);
  });
  const info = JSON.parse(out) as { 'virtual-size'?: unknown };
  const current = typeof info['virtual-size'] === 'number' ? info['virtual-size'] : NaN;
  if (!Number.isFinite(current)) throw new CliError(`grow: ${a.disk}: qemu-img did not tell its size`);
  if (a.size < current) {
    throw new CliError(`grow: ${a.disk}: ${fmtScaled(a.size)} is smaller than its ${fmtScaled(current)}: disks are never shrunk`);
  }
  if (a.size === current) {
    warnx(ctx, `${a.disk} is already ${fmtScaled(current)}`);
    return 0;
  }
  if (running) return growRunning(ctx, a, current);
  try {
    await qemuImg(ctx, ['resize', '-q', '-f', format, a.disk, String(a.size)]);
  } catch (err) {
    // A raw image's info takes only a shared lock, which a running guest leaves free: its resize is what is refused.
    if (err instanceof LockedError) return growRunning(ctx, a, current);
    throw err;
  }
  warnx(ctx, `${a.disk} grown from ${fmtScaled(current)} to ${fmtScaled(a.size)}`);
  return 0;
}

/** A running guest's disk: vmd finds the guest, checks that the caller owns it and may write the file, QEMU grows it. */
async function growRunning(ctx: Context, a: GrowArgs, current: number): Promise<number> {
  // The file the path names, as the caller sees it: vmd compares it with its guests' disks.
  const disk = realpathSync(a.disk);
  const client = await ctx.connect();
  try {
    const { response, raw } = await client.request({ type: 'vm.grow.request', disk, size: a.size });
    if (ctx.json) printJson(ctx, raw);
    if (response.type === 'error') {
      if (ctx.json) return 1;
      warnx(ctx, response.error.message);
      if (response.error.hint !== undefined && response.error.hint.length > 0) warnx(ctx, `hint: ${response.error.hint}`);
      return 1;
    }
    if (response.type !== 'vm.grow.response') throw new CliError('unexpected response received from vmd');
    if (!ctx.json) warnx(ctx, `${a.disk} grown from ${fmtScaled(current)} to ${fmtScaled(a.size)} while vm ${response.name} runs`);
    return 0;
  } finally {
    client.close();
  }
}

/** `vmctl grow -s size disk`: not `resize`, which would make OpenBSD's `vmctl res` (reset) ambiguous, and says it only grows. */
export const growCommand: CommandSpec = { name: 'grow', usage: COMMAND_USAGE.grow, run: runGrow };
