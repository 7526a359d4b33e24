// `vmctl create [-b base | -i disk] [-s size] disk`: OpenBSD's ctl_create()/ctl_convert() rules and messages, made
// with qemu-img run directly as the calling user (no daemon, no shell); a failed create never leaves a file behind.

import { closeSync, constants, fstatSync, openSync, readSync, unlinkSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { ResultPromise } from 'execa';
import { getopt, warnx, type CommandSpec, type Context } from './command.js';
import { CliError, sysMessage, UsageError } from './errors.js';
import { parseSize } from './start.js';
import { COMMAND_USAGE } from './usage.js';
import { diskFormatOf, QCOW2_MAGIC } from '../share/diskformat.js';

/** The usage text after `vmctl [-v] create `, OpenBSD's; the lead adds it to usage.ts when registering the command. */
export const CREATE_USAGE = COMMAND_USAGE.create;

/** The image formats vmd's guests use, as parse_disktype() knows them. */
export type DiskFormat = 'raw' | 'qcow2';

/** What `vmctl create` was asked to make: paths as typed (the caller's cwd applies), sizes in bytes. */
export interface CreateArgs {
  /** The target path, without any `raw:`/`qcow2:` prefix. */
  readonly disk: string;
  readonly format: DiskFormat;
  /** `-b`: the backing image, as it will be recorded in the overlay (relative to the overlay's directory). */
  readonly base: string | undefined;
  /** `-i`: the image to copy and convert. */
  readonly input: string | undefined;
  /** `-s`, rounded down to MiB; undefined when not given. */
  readonly size: number | undefined;
}

/** Where parsing looks and complains: the caller's cwd, and warnx for warnings that do not stop it. */
export interface CreateEnv {
  readonly cwd: string;
  readonly warn: (message: string) => void;
}

/** OpenBSD prints `could not create DISK: missing size argument` (no `vmctl:` prefix) and then the usage. */
export class MissingSizeError extends UsageError {
  readonly disk: string;
  constructor(disk: string) {
    super();
    this.name = 'MissingSizeError';
    this.disk = disk;
  }
}

const MIB = 1024 * 1024;

/**
 * parse_disktype(): a `raw:`/`qcow2:` prefix names the format; otherwise an existing file's qcow2 signature, then the
 * `.raw`/`.qcow2` extension (any case), else raw. `path` is the operand without the prefix; `cwd` is where it is read.
 */
export function parseDiskType(word: string, cwd: string): { path: string; format: DiskFormat } {
  const m = /^(raw|qcow2):/.exec(word);
  if (m !== null) return { path: word.slice(m[0].length), format: m[1] as DiskFormat };
  return { path: word, format: word.length > 0 ? diskFormatOf(resolve(cwd, word)) : 'raw' };
}

/** ctl_create()'s option parsing and checks, in its order; throws CliError, UsageError or MissingSizeError. */
export function parseCreate(args: readonly string[], env: CreateEnv): CreateArgs {
  const { events, operands } = getopt(args, ['-b <base>', '-i <disk>', '-s <size>']);
  let base: string | undefined;
  let input: string | undefined;
  let size: number | undefined;
  for (const { name, value } of events) {
    const v = value ?? '';
    if (name === 'b') base = v;
    else if (name === 'i') input = v;
    else if (name === 's') size = parseSize(v, 'disk', env.warn);
    else throw new UsageError();
  }
  if (operands.length !== 1) throw new UsageError();
  const { path, format } = parseDiskType(operands[0] as string, env.cwd);
  if (input !== undefined) {
    if (base !== undefined) throw new CliError('conflicting -b and -i arguments');
    return { disk: path, format, base: undefined, input, size };
  }
  if (base !== undefined && format !== 'qcow2') throw new CliError('base images require qcow2 disk format');
  if (size === undefined && base === undefined) throw new MissingSizeError(path);
  return { disk: path, format, base, input: undefined, size };
}

/** An image's virtual size: the qcow2 header's size field, or a raw file's length. */
function virtualSize(path: string, format: DiskFormat): number {
  const fd = openSync(path, 'r');
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
    if (format === 'raw') return st.size;
    const head = Buffer.alloc(32);
    if (readSync(fd, head, 0, 32, 0) !== 32 || !head.subarray(0, 4).equals(QCOW2_MAGIC)) {
      throw new CliError(`${path}: not a qcow2 image`);
    }
    return Number(head.readBigUInt64BE(24));
  } finally {
    closeSync(fd);
  }
}

/** qemu-img reads `proto:rest` as a protocol unless a `/` comes first: relative names with a colon get `./`. */
function qemuPath(path: string): string {
  const colon = path.indexOf(':');
  return colon !== -1 && !path.startsWith('/') && !path.slice(0, colon).includes('/') ? `./${path}` : path;
}

/** qemu-img's complaint, without its own prefix, on one line. */
function qemuMessage(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.replace(/^qemu-img: /, '').trim()).filter((l) => l.length > 0);
  return lines.length > 0 ? lines.join(' ') : 'qemu-img failed';
}

/** A progress bar on the terminal, redrawn from qemu-img's `(12.34/100%)` updates; finish() ends its line. */
function progressBar(ctx: Context, label: string): { feed(chunk: string): void; finish(): void } {
  let drawn = false;
  let last = -1;
  let pending = '';
  const draw = (percent: number): void => {
    const shown = Math.floor(percent);
    if (shown === last) return;
    last = shown;
    const columns = Math.max(40, ctx.stderr.columns ?? 80);
    const text = `${label} `;
    const width = Math.max(10, Math.min(50, columns - text.length - 8));
    const filled = Math.round((width * Math.min(100, percent)) / 100);
    ctx.stderr.write(`\r${text}|${'='.repeat(filled)}${' '.repeat(width - filled)}| ${String(shown).padStart(3)}%`);
    drawn = true;
  };
  return {
    feed(chunk: string): void {
      pending += chunk;
      let m: RegExpExecArray | null;
      const re = /\(([\d.]+)\/100%\)/g;
      let end = 0;
      while ((m = re.exec(pending)) !== null) {
        draw(Number(m[1]));
        end = re.lastIndex;
      }
      pending = pending.slice(end).slice(-64);
    },
    finish(): void {
      if (drawn) ctx.stderr.write('\n');
    },
  };
}

/** The fatal signals that would otherwise leave a half-written image: caught while qemu-img runs, then re-raised. */
const FATAL_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** Runs qemu-img as the caller; a failure becomes `context: qemu-img's words`. Returns its stdout. */
async function qemuImg(
  ctx: Context, args: readonly string[], context: string, track: (child: ResultPromise | undefined) => void,
  onStdout?: (chunk: string) => void,
): Promise<string> {
  // Loaded here, not at the top: vmctl's bundle leaves execa out, so no other command pays for it.
  const { execa } = await import('execa');
  const child = execa('qemu-img', args, { cwd: ctx.cwd, env: ctx.env, reject: false, stdin: 'ignore', encoding: 'utf8' });
  track(child);
  if (onStdout !== undefined) child.stdout?.on('data', (c: Buffer | string) => onStdout(String(c)));
  const r = await child;
  track(undefined);
  if (r.failed) {
    if (r.code === 'ENOENT') throw new CliError(`${context}: qemu-img: No such file or directory`);
    throw new CliError(`${context}: ${qemuMessage(String(r.stderr))}`);
  }
  return String(r.stdout);
}

/** The image `-i` copies, read before the destination exists, and the size to resize the copy to, if any. */
interface ConvertSource {
  readonly path: string;
  readonly format: DiskFormat;
  readonly resize: number | undefined;
}

/** ctl_convert(): the source is opened and sized before the destination exists. */
function sizeConvertSource(ctx: Context, input: string, size: number | undefined): ConvertSource {
  const src = parseDiskType(input, ctx.cwd);
  const path = resolve(ctx.cwd, src.path);
  let srcSize: number;
  try {
    srcSize = virtualSize(path, src.format);
  } catch (err) {
    if (err instanceof CliError) throw new CliError(`failed to open source image file: ${err.message}`);
    throw new CliError(sysMessage('failed to open source image file', err));
  }
  const wanted = size ?? srcSize;
  if (wanted < srcSize) throw new CliError('size cannot be smaller than input disk size');
  // ALIGNSZ: the destination is a whole number of megabytes, rounded up.
  const dstSize = Math.ceil(wanted / MIB) * MIB;
  if (dstSize > wanted) warnx(ctx, `destination size rounded to ${dstSize / MIB} megabytes`);
  return { path, format: src.format, resize: dstSize === srcSize ? undefined : dstSize };
}

/** -b: the base is read where qemu-img will look for it, next to the overlay; its size must match -s. */
function checkBaseImage(target: string, baseWord: string, size: number | undefined): { name: string; format: DiskFormat } {
  const base = parseDiskType(baseWord, dirname(target));
  const basePath = resolve(dirname(target), base.path);
  let baseSize: number;
  try {
    baseSize = virtualSize(basePath, base.format);
  } catch (err) {
    if (err instanceof CliError) throw new CliError(`base image ${err.message}`);
    throw new CliError(sysMessage(`could not open base image ${basePath}`, err));
  }
  if (size !== undefined && size !== baseSize) throw new CliError('base size does not match requested size');
  return { name: base.path, format: base.format };
}

/** O_CREAT|O_EXCL reserves the name: an existing file is never touched, and qemu-img writes into ours. */
function reserveTarget(target: string, converting: boolean): void {
  let fd: number;
  try {
    fd = openSync(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  } catch (err) {
    throw new CliError(sysMessage(converting ? 'failed to create destination image file' : 'create imagefile operation failed', err));
  }
  closeSync(fd);
}

/** The qemu-img steps for one create: convert (then resize unless interrupted), overlay, or blank image. */
async function writeImage(
  ctx: Context, args: CreateArgs, target: string, source: ConvertSource | undefined,
  base: { name: string; format: DiskFormat } | undefined, track: (child: ResultPromise | undefined) => void,
  interrupted: () => boolean,
): Promise<void> {
  if (source !== undefined) {
    const tty = ctx.stderr.isTTY === true;
    const bar = tty ? progressBar(ctx, args.input as string) : undefined;
    try {
      await qemuImg(
        ctx,
        ['convert', ...(tty ? ['-p'] : []), '-f', source.format, '-O', args.format, source.path, target],
        'failed to convert image', track, bar?.feed,
      );
    } finally {
      bar?.finish();
    }
    if (!interrupted() && source.resize !== undefined) {
      await qemuImg(ctx, ['resize', '-q', '-f', args.format, target, String(source.resize)], 'failed to resize image', track);
    }
  } else if (base !== undefined) {
    await qemuImg(ctx, ['create', '-q', '-f', 'qcow2', '-b', qemuPath(base.name), '-F', base.format, target], 'create imagefile operation failed', track);
  } else {
    await qemuImg(ctx, ['create', '-q', '-f', args.format, target, String(args.size)], 'create imagefile operation failed', track);
  }
}

/**
 * Makes the image: the target is created first with O_CREAT|O_EXCL (mode 0600, as OpenBSD), so an existing file is
 * never touched and the name is reserved before qemu-img writes into it; on any failure the file is removed.
 * Returns the format created, for `raw imagefile created`.
 */
export async function createImage(ctx: Context, args: CreateArgs): Promise<DiskFormat> {
  const target = resolve(ctx.cwd, args.disk);
  const source = args.input !== undefined ? sizeConvertSource(ctx, args.input, args.size) : undefined;
  const base = args.base !== undefined ? checkBaseImage(target, args.base, args.size) : undefined;
  reserveTarget(target, args.input !== undefined);

  let child: ResultPromise | undefined;
  let caught: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    caught ??= signal;
    child?.kill(signal);
  };
  for (const s of FATAL_SIGNALS) process.on(s, onSignal);
  const track = (c: ResultPromise | undefined): void => {
    child = c;
  };
  let ok = false;
  try {
    await writeImage(ctx, args, target, source, base, track, () => caught !== undefined);
    if (caught !== undefined) throw new CliError('interrupted');
    ok = true;
  } finally {
    for (const s of FATAL_SIGNALS) process.off(s, onSignal);
    if (!ok) {
      try {
        unlinkSync(target);
      } catch {
        // Already gone: nothing to clean up.
      }
    }
    // Die of the signal, as vmctl would have without the handler, now that the partial image is gone.
    if (caught !== undefined && process.listenerCount(caught) === 0) process.kill(process.pid, caught);
  }
  return args.format;
}

/** `vmctl create`: parse, make the image, and say which format it got, as OpenBSD's warnx does. */
export const createCommand: CommandSpec = {
  name: 'create',
  usage: CREATE_USAGE,
  run: async (args, ctx) => {
    let parsed: CreateArgs;
    try {
      parsed = parseCreate(args, { cwd: ctx.cwd, warn: (m) => warnx(ctx, m) });
    } catch (err) {
      if (err instanceof MissingSizeError) ctx.stderr.write(`could not create ${err.disk}: missing size argument\n`);
      throw err;
    }
    const format = await createImage(ctx, parsed);
    warnx(ctx, `${format} imagefile created`);
    return 0;
  },
};
