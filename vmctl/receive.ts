// `vmctl receive name`: a new guest from a `vmctl send` stream on stdin, resumed where it was; vmd re-creates its links.
// The header is read and checked here first, so a file that is not a stream (or too new) is refused before vmd acts.

import { fstatSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import { FrameDecoder } from '../share/frame.js';
import { ProtocolError } from '../share/protocol.js';
import { readResponse } from '../share/read-response.js';
import { StreamDecoder, StreamError, throttle, type StreamConfig } from '../share/stream.js';
import { getopt, printJson, reportError, warnx, type CommandSpec, type Context } from './command.js';
import { CliError, UsageError } from './errors.js';
import { byteProgress, type Progress } from './progress.js';
import { validVmName } from './start.js';
import { COMMAND_USAGE } from './usage.js';

/** Reads stdin up to the end of the stream's header; returns the configuration and the bytes after it. */
export function readStreamHeader(input: NodeJS.ReadableStream): Promise<{ config: StreamConfig; rest: Buffer; bytes: number }> {
  const decoder = new StreamDecoder();
  const seen: Buffer[] = [];
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      input.off('data', onData);
      input.off('end', onEnd);
      input.off('error', onError);
      input.pause();
    };
    const fail = (err: unknown): void => {
      cleanup();
      reject(err);
    };
    const onData = (chunk: Buffer): void => {
      seen.push(chunk);
      try {
        for (const ev of decoder.push(chunk)) {
          if (ev.kind !== 'header') continue;
          cleanup();
          resolve({ config: ev.config, rest: Buffer.concat(seen).subarray(ev.bytes), bytes: decoder.totalBytes });
          return;
        }
      } catch (err) {
        fail(err);
      }
    };
    const onEnd = (): void => {
      try {
        decoder.finish();
      } catch (err) {
        fail(err);
      }
    };
    const onError = (err: Error): void => fail(err);
    input.on('data', onData);
    input.on('end', onEnd);
    input.on('error', onError);
    input.resume();
  });
}

/** The size of stdin when it is a regular file, for a progress bar with a percentage. */
function inputSize(ctx: Context): number | null {
  try {
    const fd = (ctx.stdin as unknown as { fd?: number }).fd ?? 0;
    const st = fstatSync(fd);
    return st.isFile() ? st.size : null;
  } catch {
    return null;
  }
}

/** Sends the body (rest, then stdin) and half-closes; resolves with the last reply as vmd framed it. */
function pumpIn(ctx: Context, socket: Duplex, remainder: Buffer, rest: Buffer, sent: number, progress: Progress): Promise<unknown> {
  const frames = new FrameDecoder();
  return new Promise((resolve, reject) => {
    let over = false;
    let bytes = sent;
    const end = (err: Error | null, reply?: unknown): void => {
      if (over) return;
      over = true;
      ctx.stdin.off('data', onInput);
      ctx.stdin.off('end', onInputEnd);
      ctx.stdin.pause();
      progress.finish();
      if (err !== null) reject(err);
      else resolve(reply);
    };
    const onReply = (chunk: Buffer): void => {
      frames.push(chunk);
      const next = frames.read();
      if (next.kind === 'message') end(null, next.message);
      else if (next.kind === 'error') end(new CliError(`unexpected response received from vmd: ${next.error.message}`));
    };
    const onInput = (chunk: Buffer): void => {
      bytes += chunk.length;
      progress.update(bytes);
      socket.write(chunk);
      throttle(socket, ctx.stdin);
    };
    const onInputEnd = (): void => {
      socket.end();
    };
    if (remainder.length > 0) onReply(remainder);
    socket.on('data', onReply);
    socket.on('close', () => end(new CliError('pipe closed')));
    socket.on('error', () => undefined);
    socket.resume();
    if (rest.length > 0) socket.write(rest);
    // A stream that fits in the chunk the header came in (from a pipe) has already ended: its end would never come again.
    if (ctx.stdin.readableEnded) {
      onInputEnd();
      return;
    }
    ctx.stdin.on('data', onInput);
    ctx.stdin.on('end', onInputEnd);
    ctx.stdin.resume();
  });
}

async function runReceive(args: readonly string[], ctx: Context): Promise<number> {
  const { operands } = getopt(args, []);
  if (operands.length !== 1) throw new UsageError();
  const name = operands[0] as string;
  if (name.length >= 64) throw new CliError('name too long');
  if (!validVmName(name) || /^\d+$/.test(name)) throw new CliError(`invalid name: ${name}`);
  if (ctx.stdin.isTTY === true) throw new CliError('receive: standard input is a terminal; redirect it: vmctl receive NAME < FILE');
  let header;
  try {
    header = await readStreamHeader(ctx.stdin);
  } catch (err) {
    if (err instanceof StreamError) {
      warnx(ctx, `receive: ${err.message}`);
      if (err.hint !== undefined) warnx(ctx, `hint: ${err.hint}`);
      return 1;
    }
    throw new CliError(`receive: standard input: ${err instanceof Error ? err.message : String(err)}`);
  }
  const progress = byteProgress(ctx, `receive ${name}:`, inputSize(ctx));
  const client = await ctx.connect();
  try {
    const result = await client.stream({ type: 'vm.receive.request', target: name, config: header.config }, 'vm.receive.response');
    if (!('socket' in result)) {
      if (result.response.type === 'error') {
        reportError(ctx, 'receive', result.response.error, result.raw);
        return 1;
      }
      throw new CliError('unexpected response received from vmd');
    }
    const raw = await pumpIn(ctx, result.socket, result.remainder, header.rest, header.bytes, progress);
    let response;
    try {
      response = readResponse(raw);
    } catch (err) {
      throw new CliError(`unexpected response received from vmd: ${err instanceof ProtocolError ? err.message : String(err)}`);
    }
    if (response.type === 'error') {
      reportError(ctx, 'receive', response.error, raw);
      return 1;
    }
    if (response.type !== 'vm.receive.response' || response.phase !== 'done') throw new CliError('unexpected response received from vmd');
    if (ctx.json) printJson(ctx, raw);
    // OpenBSD's vmctl answered a receive as a start (vm_start_complete).
    else warnx(ctx, `started vm ${response.vm.id} successfully, tty ${response.vm.tty ?? '-'}`);
    return 0;
  } finally {
    client.close();
  }
}

/** `vmctl receive name`. */
export const receiveCommand: CommandSpec = { name: 'receive', usage: COMMAND_USAGE.receive, run: runReceive };
