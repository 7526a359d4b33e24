// `vmctl capture [-w file] [-c count] [-s snaplen] id [if] [expression]`: packets on a VM's link, captured by vmd on the host.
// vmd streams pcap; vmctl writes it to FILE as the calling user (`-w -`: stdout) or prints tcpdump's line per packet.

import { createWriteStream } from 'node:fs';
import type { Duplex } from 'node:stream';
import { resolve } from 'node:path';
import type { Writable } from 'node:stream';
import { MAX_CAPTURE_INTERFACE, MAX_SNAPLEN, MAX_STRING } from '../share/protocol.js';
import { formatTimestamp, PcapError, PcapStreamReader, packetSummary, summaryLine, type PcapRecord } from '../share/pcap.js';
import { summarizerStart, tcpdumpPath } from './capture-summary.js';
import { getopt, parseVmid, printJson, strtonum, warnx, type CommandSpec, type Context } from './command.js';
import { CliError, sysMessage, UsageError } from './errors.js';
import { COMMAND_USAGE } from './usage.js';

/** What the command line asks for. */
export interface CaptureArgs {
  readonly target: string;
  readonly interface: number;
  readonly count?: number;
  readonly snaplen?: number;
  readonly filter?: string;
  /** `-w`: a file name, or `-` for standard output; absent: summary lines. */
  readonly write?: string;
}

/** A number option as OpenBSD's vmctl checks one: strtonum(3), a warning naming the error, then `invalid WHAT: X`. */
function number(v: string, what: string, min: number, max: number, warn: (m: string) => void): number {
  const n = strtonum(v, min, max);
  if (n.value === undefined) {
    warn(`${what} is ${n.error as string}: ${v}`);
    throw new CliError(`invalid ${what}: ${v}`);
  }
  return n.value;
}

/**
 * Reads `[-w file] [-c count] [-s snaplen] id [if] [expression]`. The operand after the id is the interface number
 * when it is all digits; every word after that (or after the id) is the tcpdump filter expression, joined by spaces.
 */
export function parseCapture(args: readonly string[], warn: (message: string) => void): CaptureArgs {
  const { events, operands } = getopt(args, ['-w <file>', '-c <count>', '-s <snaplen>']);
  let write: string | undefined;
  let count: number | undefined;
  let snaplen: number | undefined;
  for (const e of events) {
    const v = e.value ?? '';
    switch (e.name) {
      case 'w':
        if (write !== undefined) throw new CliError('output file specified multiple times');
        if (v === '') throw new CliError('invalid output file: empty name');
        write = v;
        break;
      case 'c':
        if (count !== undefined) throw new CliError('count specified multiple times');
        count = number(v, 'count', 1, 2 ** 31 - 1, warn);
        break;
      case 's':
        if (snaplen !== undefined) throw new CliError('snaplen specified multiple times');
        snaplen = number(v, 'snaplen', 1, MAX_SNAPLEN, warn);
        break;
    }
  }
  if (operands.length === 0) throw new UsageError();
  const word = operands[0] as string;
  const ref = parseVmid(word, warn);
  if (ref === undefined) throw new CliError(`invalid id: ${word}`);
  let rest = operands.slice(1);
  let iface = 0;
  if (rest.length > 0 && /^[0-9]+$/.test(rest[0] as string)) {
    iface = number(rest[0] as string, 'interface', 0, MAX_CAPTURE_INTERFACE, warn);
    rest = rest.slice(1);
  }
  const filter = rest.join(' ').trim();
  if (filter.length > MAX_STRING) throw new CliError(`filter expression too long: at most ${MAX_STRING} characters`);
  return {
    target: ref.target, interface: iface,
    ...(count === undefined ? {} : { count }),
    ...(snaplen === undefined ? {} : { snaplen }),
    ...(filter === '' ? {} : { filter }),
    ...(write === undefined ? {} : { write }),
  };
}

/** `--json` without -w: one object per packet, the summary without its time. */
export function packetJson(rec: PcapRecord, linktype: number): Record<string, unknown> {
  const iso = new Date(rec.tsSec * 1000).toISOString();
  return {
    type: 'capture.packet',
    time: `${iso.slice(0, 19)}.${formatTimestamp(rec, true).slice(9)}Z`,
    length: rec.origLen,
    captured: rec.data.length,
    summary: packetSummary(rec.data, linktype),
  };
}

/** Writes a chunk, and holds the socket while the writer's buffer is full, so a slow disk or pipe slows tcpdump, not our memory. */
function writeHeld(out: Writable, socket: Duplex, chunk: Buffer | string): void {
  if (!out.write(chunk)) {
    socket.pause();
    out.once('drain', () => socket.resume());
  }
}

/** Relays the capture until the stream ends (count, VM stopped, vmd gone) or a signal ends it here; resolves with the exit status. */
function relay(ctx: Context, socket: Duplex, remainder: Buffer, out: Writable | null): Promise<number> {
  const reader = new PcapStreamReader();
  const tcpdump = out === null && !ctx.json ? tcpdumpPath(ctx.env) : null;
  const summarizer = tcpdump === null ? null : summarizerStart(tcpdump, ctx.stdout);
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGPIPE'];
  return new Promise((done) => {
    let finished = false;
    let failed: string | undefined;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      for (const s of signals) process.off(s, onSignal);
      socket.off('data', onData);
      socket.destroy();
      const truncated = failed === undefined ? reader.end() : undefined;
      const report = (): void => {
        if (failed !== undefined) warnx(ctx, `capture: ${failed}`);
        else if (truncated !== undefined) warnx(ctx, `capture: ${truncated.message}`);
        if (!ctx.json) ctx.stderr.write(`${reader.records} packet${reader.records === 1 ? '' : 's'} captured\n`);
        done(failed === undefined ? 0 : 1);
      };
      if (out !== null && out !== ctx.stdout) out.end(report);
      else if (summarizer !== null) void summarizer.end().then(() => ctx.stdout.write('', report));
      else ctx.stdout.write('', report);
    };
    const onSignal = (): void => finish();
    const onData = (chunk: Buffer): void => {
      if (out !== null) writeHeld(out, socket, chunk);
      if (summarizer !== null) writeHeld(summarizer.stdin, socket, chunk);
      let records: PcapRecord[];
      try {
        records = reader.push(chunk);
      } catch (err) {
        if (!(err instanceof PcapError)) throw err;
        failed = err.message;
        finish();
        return;
      }
      if (out !== null || summarizer !== null) return;
      const linktype = reader.header?.linktype ?? 1;
      const text = records.map((r) => (ctx.json ? JSON.stringify(packetJson(r, linktype)) : summaryLine(r, linktype))).join('\n');
      if (text !== '') writeHeld(ctx.stdout, socket, `${text}\n`);
    };
    for (const s of signals) process.on(s, onSignal);
    socket.on('data', onData);
    socket.on('end', finish);
    socket.on('close', finish);
    socket.on('error', finish);
    if (remainder.length > 0) onData(remainder);
    socket.resume();
  });
}

async function runCapture(argv: readonly string[], ctx: Context): Promise<number> {
  const args = parseCapture(argv, (m) => warnx(ctx, m));
  if (args.write === '-' && ctx.stdout.isTTY === true) {
    throw new CliError('capture: not writing pcap to a terminal: redirect standard output, or leave out -w -');
  }
  const client = await ctx.connect();
  let out: Writable | null = null;
  try {
    const result = await client.capture({
      target: args.target, interface: args.interface,
      ...(args.count === undefined ? {} : { count: args.count }),
      ...(args.snaplen === undefined ? {} : { snaplen: args.snaplen }),
      ...(args.filter === undefined ? {} : { filter: args.filter }),
    });
    if (!('socket' in result)) {
      const { response, raw } = result;
      if (ctx.json) printJson(ctx, raw);
      else if (response.type === 'error') {
        // No OpenBSD wording to follow: the daemon's own words, then its hint.
        warnx(ctx, `capture: ${response.error.message}`);
        if (response.error.hint !== undefined && response.error.hint.length > 0) warnx(ctx, `hint: ${response.error.hint}`);
      } else throw new CliError('unexpected response received from vmd');
      return 1;
    }
    const { response, raw } = result;
    if (args.write !== undefined && args.write !== '-') {
      // Opened by vmctl, as the calling user, only now that the capture runs: vmd (root) never writes user files.
      const path = resolve(ctx.cwd, args.write);
      const file = createWriteStream(path, { flags: 'w', mode: 0o644 });
      try {
        await new Promise<void>((ok, fail) => { file.once('open', () => ok()); file.once('error', fail); });
      } catch (err) {
        throw new CliError(sysMessage(`capture: ${args.write}`, err));
      }
      out = file;
    } else if (args.write === '-') out = ctx.stdout;
    // With `-w -` standard output is the pcap stream: nothing else may go there.
    if (ctx.json && args.write !== '-') printJson(ctx, raw);
    else if (!ctx.json && response.type === 'vm.capture.response') {
      warnx(ctx, `listening on ${response.link}, vm ${response.name} interface ${response.interface}`);
    }
    return await relay(ctx, result.socket, result.remainder, out);
  } finally {
    client.close();
  }
}

/** `vmctl capture [-w file] [-c count] [-s snaplen] id [if] [expression]`. */
export const captureCommand: CommandSpec = { name: 'capture', usage: COMMAND_USAGE.capture, run: runCapture };
