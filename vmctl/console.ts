// `vmctl console [-t seconds] id`: the guest's serial console over the control socket, in place of OpenBSD's cu(1).
// On a terminal it is raw and `~.` at the start of a line detaches; from a pipe it copies both ways until quiet.

import type { Duplex } from 'node:stream';
import type { ControlClient } from './client.js';
import { getopt, parseVmid, printJson, reportError, warnx, type CommandSpec, type Context } from './command.js';
import { CliError, UsageError } from './errors.js';
import { COMMAND_USAGE } from './usage.js';

/** Pipe mode ends this long after stdin's EOF once the guest has gone quiet. */
export const QUIET_MS = 500;

/** How an attachment ends besides `~.`, EOF or the guest going away. */
export interface ConsoleOptions {
  /** `-t`: detach after this many milliseconds in any case. */
  readonly timeoutMs?: number;
}

/** cu(1)'s escape: `~` at the start of a line is held back; `~.` detaches, `~~` sends one `~`, `~x` sends both. */
export class EscapeFilter {
  #lineStart = true;
  #tilde = false;

  /** The bytes to send for this input, and whether `~.` asked to detach (bytes after it are dropped). */
  feed(input: Uint8Array): { send: Buffer; detach: boolean } {
    const out: number[] = [];
    for (const b of input) {
      if (this.#tilde) {
        this.#tilde = false;
        if (b === 0x2e) return { send: Buffer.from(out), detach: true };
        if (b !== 0x7e) out.push(0x7e);
        out.push(b);
        this.#lineStart = b === 0x0d || b === 0x0a;
        continue;
      }
      if (this.#lineStart && b === 0x7e) {
        this.#tilde = true;
        continue;
      }
      out.push(b);
      this.#lineStart = b === 0x0d || b === 0x0a;
    }
    return { send: Buffer.from(out), detach: false };
  }
}

/** Copies bytes between the terminal (or pipes) and the console stream until one of the ends says stop. */
function pump(ctx: Context, socket: Duplex, remainder: Buffer, name: string, options: ConsoleOptions): Promise<number> {
  const { stdin, stdout } = ctx;
  const interactive = stdin.isTTY === true;
  return new Promise((done) => {
    let finished = false;
    let stdinEnded = false;
    let quiet: NodeJS.Timeout | undefined;
    let total: NodeJS.Timeout | undefined;
    const escape = new EscapeFilter();

    const finish = (code: number, message?: string): void => {
      if (finished) return;
      finished = true;
      clearTimeout(quiet);
      clearTimeout(total);
      stdin.off('data', onInput);
      stdin.off('end', onInputEnd);
      if (interactive) stdin.setRawMode(false);
      stdin.pause();
      socket.off('data', onOutput);
      socket.destroy();
      if (interactive) ctx.stderr.write('\r\n[EOT]\r\n');
      if (message !== undefined) warnx(ctx, message);
      // Resolve once stdout has taken everything, so a pipe reader gets the last bytes.
      stdout.write('', () => done(code));
    };
    const armQuiet = (): void => {
      clearTimeout(quiet);
      quiet = setTimeout(() => finish(0), QUIET_MS);
    };
    const onOutput = (chunk: Buffer): void => {
      stdout.write(chunk);
      if (stdinEnded) armQuiet();
    };
    const onInput = (chunk: Buffer): void => {
      if (!interactive) {
        socket.write(chunk);
        return;
      }
      const { send, detach } = escape.feed(chunk);
      if (send.length > 0) socket.write(send);
      if (detach) finish(0);
    };
    const onInputEnd = (): void => {
      stdinEnded = true;
      armQuiet();
    };

    if (interactive) {
      stdin.setRawMode(true);
      warnx(ctx, `connected to vm ${name} (~. to detach)`);
    }
    socket.on('data', onOutput);
    socket.on('close', () => finish(0));
    socket.on('error', () => finish(0));
    if (remainder.length > 0) stdout.write(remainder);
    socket.resume();
    stdin.on('data', onInput);
    stdin.on('end', onInputEnd);
    stdin.resume();
    if (options.timeoutMs !== undefined) total = setTimeout(() => finish(0), options.timeoutMs);
  });
}

/** Asks vmd for a VM's console on an open connection and runs it; `start -c` uses it after the start reply. */
export async function attachConsole(ctx: Context, client: ControlClient, target: string, options: ConsoleOptions): Promise<number> {
  const result = await client.console(target);
  if (!('socket' in result)) {
    if (result.response.type === 'error') {
      reportError(ctx, 'console', result.response.error, result.raw);
      return 1;
    }
    throw new CliError('unexpected response received from vmd');
  }
  if (ctx.json) printJson(ctx, result.raw);
  const name = result.response.type === 'vm.console.response' ? result.response.name : target;
  return pump(ctx, result.socket, result.remainder, name, options);
}

/** Reads `[-t seconds] id`. */
export function parseConsole(args: readonly string[], warn: (message: string) => void): { target: string; options: ConsoleOptions } {
  const { events, operands } = getopt(args, ['-t <seconds>']);
  let timeoutMs: number | undefined;
  for (const e of events) {
    const v = e.value ?? '';
    const seconds = /^[0-9]+(\.[0-9]+)?$/.test(v) ? Number(v) : NaN;
    if (!(seconds > 0) || seconds > 2 ** 31 / 1000) throw new CliError(`invalid timeout: ${v}`);
    timeoutMs = Math.round(seconds * 1000);
  }
  if (operands.length !== 1) throw new UsageError();
  const word = operands[0] as string;
  const ref = parseVmid(word, warn);
  if (ref === undefined) throw new CliError(`invalid id: ${word}`);
  return { target: ref.target, options: timeoutMs === undefined ? {} : { timeoutMs } };
}

async function runConsole(args: readonly string[], ctx: Context): Promise<number> {
  const { target, options } = parseConsole(args, (m) => warnx(ctx, m));
  const client = await ctx.connect();
  try {
    return await attachConsole(ctx, client, target, options);
  } finally {
    client.close();
  }
}

/** `vmctl console [-t seconds] id`. */
export const consoleCommand: CommandSpec = { name: 'console', usage: COMMAND_USAGE.console, run: runConsole };
