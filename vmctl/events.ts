// `vmctl events [id]`: follows vmd's lifecycle events as they happen, one line each (`virsh event --loop`).
// Runs until interrupted or until vmd closes the connection; `--json` prints each frame as the socket carries it.

import { formatVmEvent } from '../share/events.js';
import { FrameDecoder, MAX_RESPONSE_FRAME_BYTES } from '../share/frame.js';
import type { VmdErrorData } from '../share/errors.js';
import { ProtocolError } from '../share/protocol.js';
import { readResponse } from '../share/read-response.js';
import { parseVmid, printJson, warnx, type CommandSpec, type Context } from './command.js';
import { CliError, UsageError } from './errors.js';
import { COMMAND_USAGE } from './usage.js';

/** The optional `id` operand; no options. */
export function parseEvents(args: readonly string[], warn: (message: string) => void): { target: string | undefined } {
  if (args.length > 1) throw new UsageError();
  if (args.length === 0) return { target: undefined };
  const word = args[0] as string;
  const ref = parseVmid(word, warn);
  if (ref === undefined) throw new CliError(`invalid id: ${word}`);
  return { target: ref.target };
}

async function runEvents(args: readonly string[], ctx: Context): Promise<number> {
  const { target } = parseEvents(args, (m) => warnx(ctx, m));
  const client = await ctx.connect();
  const reply = await client.stream({ type: 'vm.events.request', ...(target === undefined ? {} : { target }) }, 'vm.events.response');
  if (reply.response.type === 'error') {
    reportEventsError(ctx, reply.response.error, reply.raw);
    client.close();
    return 1;
  }
  if (!('socket' in reply)) throw new CliError('unexpected response received from vmd');
  // The acknowledgement tells a script reading --json that it follows from here on.
  if (ctx.json) printJson(ctx, reply.raw);
  const decoder = new FrameDecoder({ maxFrameBytes: MAX_RESPONSE_FRAME_BYTES });
  return new Promise<number>((resolve) => {
    const socket = reply.socket;
    let status = 0;
    const consume = (chunk: Buffer): void => {
      decoder.push(chunk);
      for (;;) {
        const next = decoder.read();
        if (next.kind === 'error') {
          warnx(ctx, `unexpected response received from vmd: ${next.error.message}`);
          status = 1;
          socket.destroy();
          return;
        }
        if (next.kind !== 'message') return;
        status = printEvent(ctx, next.message) ? status : 1;
      }
    };
    socket.on('data', consume);
    socket.on('error', () => socket.destroy());
    socket.on('close', () => resolve(status));
    consume(reply.remainder);
    socket.resume();
  });
}

/** Prints one frame of the subscription; false for an error frame (vmd dropped us) or one that is not ours. */
function printEvent(ctx: Context, raw: unknown): boolean {
  let msg;
  try {
    msg = readResponse(raw);
  } catch (err) {
    warnx(ctx, `unexpected response received from vmd: ${err instanceof ProtocolError ? err.message : String(err)}`);
    return false;
  }
  if (msg.type === 'error') {
    reportEventsError(ctx, msg.error, raw);
    return false;
  }
  if (msg.type !== 'vm.event') return true;
  if (ctx.json) printJson(ctx, raw);
  else ctx.stdout.write(`${formatVmEvent(msg.event)}\n`);
  return true;
}

/** OpenBSD has no events command, so no wording to keep: vmd's own words, then its hint. */
function reportEventsError(ctx: Context, error: VmdErrorData, raw: unknown): void {
  if (ctx.json) {
    printJson(ctx, raw);
    return;
  }
  warnx(ctx, error.message);
  if (error.hint !== undefined) warnx(ctx, `hint: ${error.hint}`);
}

/** `vmctl events [id]`. */
export const eventsCommand: CommandSpec = { name: 'events', usage: COMMAND_USAGE.events, run: runEvents };
