// What every vmctl command module shares: the command shape, the run context, getopt-style option parsing on commander.
// Options are parsed as getopt(3) does (in order, bundled flags), but may also follow the operands, as GNU getopt allows.

import { createRequire } from 'node:module';
import type * as Commander from 'commander';
import type { VmdErrorData } from '../share/errors.js';
import type { ControlResponse } from '../share/protocol.js';
import type { ControlClient, Reply, RequestBody } from './client.js';
import { CliError, errorMessage, isMapped, UsageError, type ErrorContext } from './errors.js';

/** How a command runs: its streams, flags that apply to every command, and the way to reach vmd. */
export interface Context {
  readonly json: boolean;
  readonly verbose: number;
  readonly cwd: string;
  readonly env: NodeJS.ProcessEnv;
  readonly stdin: NodeJS.ReadStream;
  readonly stdout: NodeJS.WriteStream;
  readonly stderr: NodeJS.WriteStream;
  /** The `[user@]host[:port]` of -H or VMCTL_HOST when vmd is reached over ssh; paths then name that host's files. */
  readonly remote?: string | undefined;
  connect(): Promise<ControlClient>;
  /** One request on a connection of its own (vmctl/oneshot.ts); where absent, through connect(). */
  readonly request?: (body: RequestBody) => Promise<Reply>;
}

/** The streams and environment a run has (vmctl.ts's Io). */
interface RunIo {
  readonly stdin: NodeJS.ReadStream;
  readonly stdout: NodeJS.WriteStream;
  readonly stderr: NodeJS.WriteStream;
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
}

/** A command's context from the run's streams and the way it reaches vmd. */
export function runContext(
  io: RunIo,
  flags: { readonly json: boolean; readonly verbose: number; readonly remote: string | undefined },
  reach: Pick<Context, 'connect' | 'request'>,
): Context {
  return {
    json: flags.json,
    verbose: flags.verbose,
    cwd: io.cwd,
    env: io.env,
    // A getter: process.stdin is made on first access (for /dev/null, with fs streams: ~3 ms), and only console reads it.
    get stdin() { return io.stdin; },
    stdout: io.stdout,
    stderr: io.stderr,
    remote: flags.remote,
    connect: reach.connect,
    ...(reach.request === undefined ? {} : { request: reach.request }),
  };
}

/** One request and its reply, for commands that need nothing else from the connection. */
export async function requestOnce(ctx: Context, body: RequestBody): Promise<Reply> {
  if (ctx.request !== undefined) return ctx.request(body);
  const client = await ctx.connect();
  try {
    return await client.request(body);
  } finally {
    client.close();
  }
}

/** One vmctl command: the name matched by prefix, the usage text after it, and its body (resolves to the exit status). */
export interface CommandSpec {
  readonly name: string;
  readonly usage: string;
  run(args: readonly string[], ctx: Context): Promise<number>;
}

/** warnx(3): a diagnostic on stderr, prefixed with the program name. */
export function warnx(ctx: Pick<Context, 'stderr'>, message: string): void {
  ctx.stderr.write(`vmctl: ${message}\n`);
}

/** `--json` output: the reply object exactly as the socket carried it, one per line. */
export function printJson(ctx: Pick<Context, 'stdout'>, raw: unknown): void {
  ctx.stdout.write(`${JSON.stringify(raw)}\n`);
}

/** Reports a daemon error reply in a command's words, then the daemon's hint; `-v` also shows what vmd said. */
export function reportError(ctx: Context, context: ErrorContext, error: VmdErrorData, raw?: unknown): void {
  if (ctx.json) {
    printJson(ctx, raw ?? { type: 'error', error });
    return;
  }
  warnx(ctx, errorMessage(context, error));
  reportDetail(ctx, context, error);
}

/** The lines after an error: `-v` detail when the wording was replaced, and the daemon's hint. */
export function reportDetail(ctx: Context, context: ErrorContext, error: VmdErrorData): void {
  if (ctx.verbose > 0 && isMapped(context, error)) warnx(ctx, `vmd: ${error.message} (${error.code})`);
  if (error.hint !== undefined && error.hint.length > 0) warnx(ctx, `hint: ${error.hint}`);
}

/** One option occurrence, in command-line order; `value` is undefined for flags. */
export interface OptionEvent {
  readonly name: string;
  readonly value: string | undefined;
}

let commander: typeof Commander | undefined;

/** commander on first use: loading it is a measurable share of vmctl's start-up, and `vmctl status` needs no options. */
function loadCommander(): typeof Commander {
  commander ??= createRequire(import.meta.url)('commander') as typeof Commander;
  return commander;
}

/**
 * getopt(3) on commander: `defs` are commander flag strings (`-m <size>`, `-c`, `--forward <spec>`). Returns the
 * options in the order given and the operands; anything getopt would reject becomes a UsageError. Unlike OpenBSD,
 * options after the name are accepted too (`vmctl start web -m 1G`), the order people type; `--` ends options.
 */
export function getopt(args: readonly string[], defs: readonly string[]): { events: OptionEvent[]; operands: string[] } {
  // Nothing that looks like an option (`-` alone is an operand): every word is an operand, as commander would say.
  if (args.every((a) => !a.startsWith('-') || a === '-')) return { events: [], operands: [...args] };
  const { Command, CommanderError } = loadCommander();
  const events: OptionEvent[] = [];
  const cmd = new Command('vmctl')
    .exitOverride()
    .configureOutput({ writeOut: () => {}, writeErr: () => {}, outputError: () => {} })
    .helpOption(false)
    .allowExcessArguments(true)
    .argument('[operands...]')
    .action(() => {});
  for (const d of defs) cmd.option(d);
  for (const o of cmd.options) {
    const name = o.name();
    cmd.on(`option:${name}`, (value: unknown) => {
      events.push({ name, value: typeof value === 'string' ? value : undefined });
    });
  }
  try {
    cmd.parse([...args], { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) throw new UsageError();
    throw err;
  }
  return { events, operands: [...cmd.args] };
}

/** What a `id` operand names, read as OpenBSD's parse_vmid(): a number is an id, anything else a name. */
export interface VmRef {
  readonly id: number | undefined;
  readonly name: string | undefined;
  /** What goes into the request's `target`. */
  readonly target: string;
}

/** OpenBSD's VMM_MAX_NAME_LEN: names are shorter than this. */
export const VM_NAME_MAX = 64;

/**
 * parse_vmid(): a decimal number (0 to 2^32-1) is an id, else a name below 64 characters; a leading `-` is never an
 * id. Returns undefined where OpenBSD prints `invalid id: X` (after the `name too long` warning it issues itself).
 */
export function parseVmid(word: string, warn: (message: string) => void): VmRef | undefined {
  if (word.startsWith('-')) return undefined;
  const id = strtonum(word, 0, 2 ** 32 - 1);
  if (id.value !== undefined) return { id: id.value, name: undefined, target: String(id.value) };
  if (word.length >= VM_NAME_MAX) {
    warn('name too long');
    return undefined;
  }
  if (word.length === 0) return undefined;
  return { id: undefined, name: word, target: word };
}

/** strtonum(3): a whole decimal number within [min, max], or the error string OpenBSD puts after `count is`. */
export function strtonum(word: string, min: number, max: number): { value?: number; error?: 'invalid' | 'too small' | 'too large' } {
  const m = /^[ \t\n\v\f\r]*([+-]?)([0-9]+)$/.exec(word);
  if (m === null) return { error: 'invalid' };
  const n = BigInt(`${m[1] === '-' ? '-' : ''}${m[2] as string}`);
  // strtoll saturates: out-of-range input reads as LLONG_MIN/MAX, which are below/above any bound here.
  if (n < BigInt(min)) return { error: 'too small' };
  if (n > BigInt(max)) return { error: 'too large' };
  return { value: Number(n) };
}

/**
 * OpenBSD prints `stopping vm NAME: ` / `waiting for vm NAME: ` before asking, and the answer completes the line;
 * a request that fails outright ends the line first, so vmctl's own diagnostic starts on a line of its own.
 */
export async function requestAfterPrefix(
  ctx: Context, client: ControlClient, prefix: string, body: RequestBody,
): Promise<Awaited<ReturnType<ControlClient['request']>>> {
  if (!ctx.json) ctx.stderr.write(prefix);
  try {
    return await client.request(body);
  } catch (err) {
    if (!ctx.json) ctx.stderr.write('\n');
    throw err;
  }
}

/** Sends a request whose success is a bare `ok.response` (load, reload, reset, log): silent on success, as OpenBSD. */
export async function requestOk(ctx: Context, context: ErrorContext, body: RequestBody): Promise<number> {
  const client = await ctx.connect();
  try {
    const { response, raw } = await client.request(body);
    if (response.type === 'error') {
      reportError(ctx, context, response.error, raw);
      return 1;
    }
    if (response.type !== 'ok.response') throw new CliError('unexpected response received from vmd');
    if (ctx.json) printJson(ctx, raw);
    return 0;
  } finally {
    client.close();
  }
}

/**
 * Sends a request that vmd answers with a listing of type `type` (links, firewall): `--json` prints the reply
 * as it came; an error is vmd's own words and hint (no OpenBSD wording to follow); `print` shows the rest.
 */
export async function requestListing<T extends ControlResponse['type']>(
  ctx: Context, body: RequestBody, type: T, print: (response: Extract<ControlResponse, { type: T }>) => number,
): Promise<number> {
  const client = await ctx.connect();
  try {
    const { response, raw } = await client.request(body);
    if (ctx.json) {
      printJson(ctx, raw);
      return response.type === type ? 0 : 1;
    }
    if (response.type === 'error') {
      warnx(ctx, response.error.message);
      if (response.error.hint !== undefined && response.error.hint.length > 0) warnx(ctx, `hint: ${response.error.hint}`);
      return 1;
    }
    if (response.type !== type) throw new CliError('unexpected response received from vmd');
    return print(response as Extract<ControlResponse, { type: T }>);
  } finally {
    client.close();
  }
}
