// `vmctl display [-p port] id`: a guest's screen for a VNC viewer, on a local TCP port vmctl listens on.
// Each viewer connection becomes a control connection that vmd relays to the guest's VNC socket (vmctl never opens it).

import { createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { VmdErrorData } from '../share/errors.js';
import type { ControlClient } from './client.js';
import { getopt, parseVmid, printJson, strtonum, warnx, type CommandSpec, type Context } from './command.js';
import { CliError, sysMessage, UsageError } from './errors.js';
import { COMMAND_USAGE } from './usage.js';

/** Viewers listen here only: the screen is the VM owner's, and anyone who reaches the port sees it. */
const LISTEN_HOST = '127.0.0.1';

/** What the command line asks for; port 0 lets the kernel choose one. */
export interface DisplayArgs {
  readonly target: string;
  readonly port: number;
}

/** Reads `[-p port] id`. */
export function parseDisplay(args: readonly string[], warn: (message: string) => void): DisplayArgs {
  const { events, operands } = getopt(args, ['-p <port>']);
  let port = 0;
  for (const e of events) {
    const n = strtonum(e.value ?? '', 1, 65535);
    if (n.value === undefined) {
      warn(`port is ${n.error as string}: ${e.value ?? ''}`);
      throw new CliError(`invalid port: ${e.value ?? ''}`);
    }
    port = n.value;
  }
  if (operands.length !== 1) throw new UsageError();
  const word = operands[0] as string;
  const ref = parseVmid(word, warn);
  if (ref === undefined) throw new CliError(`invalid id: ${word}`);
  return { target: ref.target, port };
}

/** Asks vmd for the display on a new connection: the raw stream, or the error reply vmd gave. */
async function displayOpen(ctx: Context, target: string): Promise<{ socket: Duplex; remainder: Buffer; name: string; raw: unknown } | { error: VmdErrorData; raw: unknown }> {
  const client: ControlClient = await ctx.connect();
  const result = await client.stream({ type: 'vm.display.request', target }, 'vm.display.response');
  if ('socket' in result && result.response.type === 'vm.display.response') {
    return { socket: result.socket, remainder: result.remainder, name: result.response.name, raw: result.raw };
  }
  client.close();
  if (result.response.type === 'error') return { error: result.response.error, raw: result.raw };
  throw new CliError('unexpected response received from vmd');
}

/** The daemon's words for a refusal, then its hint, as capture prints them (OpenBSD has no display to follow). */
function displayRefused(ctx: Context, error: VmdErrorData, raw: unknown): void {
  if (ctx.json) return printJson(ctx, raw);
  warnx(ctx, `display: ${error.message}`);
  if (error.hint !== undefined && error.hint.length > 0) warnx(ctx, `hint: ${error.hint}`);
}

/** One viewer: its own relay through vmd, or closed with the reason on stderr. */
function viewerJoin(ctx: Context, target: string, viewer: Socket): void {
  viewer.pause();
  viewer.on('error', () => viewer.destroy());
  displayOpen(ctx, target).then((opened) => {
    if ('error' in opened) {
      displayRefused(ctx, opened.error, opened.raw);
      viewer.destroy();
      return;
    }
    const { socket } = opened;
    const end = (): void => {
      socket.destroy();
      viewer.destroy();
    };
    socket.on('error', end).on('close', end);
    viewer.on('close', end);
    if (opened.remainder.length > 0) viewer.write(opened.remainder);
    viewer.pipe(socket);
    socket.pipe(viewer);
  }, (err: unknown) => {
    warnx(ctx, `display: ${err instanceof Error ? err.message : String(err)}`);
    viewer.destroy();
  });
}

/** Listens on 127.0.0.1:port; a port in use is the user's to change. */
function listen(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', (err) => reject(new CliError(sysMessage(`listen on ${LISTEN_HOST}:${port}`, err))));
    server.listen({ host: LISTEN_HOST, port }, () => {
      const address = server.address();
      resolve(typeof address === 'object' && address !== null ? address.port : port);
    });
  });
}

async function runDisplay(args: readonly string[], ctx: Context): Promise<number> {
  const { target, port } = parseDisplay(args, (m) => warnx(ctx, m));
  // Asked once before listening, so a VM that is not there, not running, without display or not the user's is said
  // at once (and vmctl exits 1) rather than at the first viewer.
  const probe = await displayOpen(ctx, target);
  if ('error' in probe) {
    displayRefused(ctx, probe.error, probe.raw);
    return 1;
  }
  probe.socket.destroy();
  const server = createServer((viewer) => viewerJoin(ctx, target, viewer));
  const bound = await listen(server, port);
  if (ctx.json) printJson(ctx, { type: 'vm.display.listen', vm: probe.name, address: LISTEN_HOST, port: bound });
  else ctx.stdout.write(`vm ${probe.name}: display on ${LISTEN_HOST}:${bound}; connect with: vncviewer ${LISTEN_HOST}::${bound}\n`);
  // Runs until interrupted, as ssh -L does; each viewer has its own connection through vmd.
  await new Promise<void>((resolve) => {
    const stop = (): void => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  server.close();
  return 0;
}

/** `vmctl display [-p port] id`. */
export const displayCommand: CommandSpec = { name: 'display', usage: COMMAND_USAGE.display, run: runDisplay };
