// `vmctl send id`: the guest's configuration and state as a stream on stdout (share/stream.ts); vmd then stops it.
// vmctl checks the stream as it passes, so a short or failed transfer is an error here, not a file that looks whole.

import type { Duplex } from 'node:stream';
import { StreamDecoder, throttle, type StreamEvent } from '../share/stream.js';
import { getopt, parseVmid, printJson, reportError, warnx, type CommandSpec, type Context } from './command.js';
import { CliError, UsageError } from './errors.js';
import { byteProgress } from './progress.js';
import { COMMAND_USAGE } from './usage.js';

/** Copies the stream to stdout while decoding it; resolves to the exit status once it ended or broke. */
function pumpOut(ctx: Context, socket: Duplex, remainder: Buffer, name: string): Promise<number> {
  const decoder = new StreamDecoder();
  const progress = byteProgress(ctx, `send ${name}:`, null);
  return new Promise((done) => {
    let finished = false;
    const finish = (code: number, message?: string, hint?: string): void => {
      if (finished) return;
      finished = true;
      socket.off('data', onData);
      socket.destroy();
      progress.finish();
      if (message !== undefined) warnx(ctx, message);
      if (hint !== undefined) warnx(ctx, `hint: ${hint}`);
      ctx.stdout.write('', () => done(code));
    };
    const onData = (chunk: Buffer): void => {
      let events: StreamEvent[];
      try {
        events = decoder.push(chunk);
      } catch (err) {
        finish(1, `send: vm ${name}: ${err instanceof Error ? err.message : String(err)}`);
        return;
      }
      // The stream goes out as it came, the error trailer too: a `vmctl receive` at the other end of a pipe reports it.
      ctx.stdout.write(chunk);
      throttle(ctx.stdout, socket);
      progress.update(decoder.totalBytes);
      for (const ev of events) {
        if (ev.kind === 'end') finish(0);
        else if (ev.kind === 'error') finish(1, `send: ${ev.error.message}`, ev.error.hint);
      }
    };
    const onEnd = (): void => {
      if (finished) return;
      try {
        decoder.finish();
        finish(0);
      } catch (err) {
        finish(1, `send: vm ${name}: ${err instanceof Error ? err.message : String(err)}: vmd closed the connection`);
      }
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    socket.on('error', () => onEnd());
    if (remainder.length > 0) onData(remainder);
    socket.resume();
  });
}

async function runSend(args: readonly string[], ctx: Context): Promise<number> {
  const { operands } = getopt(args, []);
  if (operands.length !== 1) throw new UsageError();
  const word = operands[0] as string;
  const ref = parseVmid(word, (m) => warnx(ctx, m));
  if (ref === undefined) throw new CliError(`invalid id: ${word}`);
  // Binary on a terminal helps nobody and the guest would be gone.
  if (ctx.stdout.isTTY === true) throw new CliError('send: standard output is a terminal; redirect it: vmctl send VM > FILE');
  const client = await ctx.connect();
  try {
    const result = await client.stream({ type: 'vm.send.request', target: ref.target }, 'vm.send.response');
    if (!('socket' in result)) {
      if (result.response.type === 'error') {
        // --json: stdout is for the stream, so the error object goes to stderr too.
        reportError(ctx.json ? { ...ctx, stdout: ctx.stderr } : ctx, 'send', result.response.error, result.raw);
        return 1;
      }
      throw new CliError('unexpected response received from vmd');
    }
    // --json: the reply goes to stderr, since stdout carries the stream.
    if (ctx.json) printJson({ stdout: ctx.stderr }, result.raw);
    const name = result.response.type === 'vm.send.response' ? result.response.name : ref.target;
    return await pumpOut(ctx, result.socket, result.remainder, name);
  } finally {
    client.close();
  }
}

/** `vmctl send id`. */
export const sendCommand: CommandSpec = { name: 'send', usage: COMMAND_USAGE.send, run: runSend };
