#!/usr/bin/env node
// vmctl(8): the command-line client of vmd. Global flags, OpenBSD's command-prefix abbreviation, usage, dispatch.
// Each command lives in its own module; this file only decides which one runs and how vmctl exits.

import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { socketPath } from '../share/paths.js';
import { runContext, type CommandSpec, type Context } from './command.js';
import type { RequestBody } from './client.js';
import { extractJson, parseGlobal, remoteHost, resolveName } from './argv.js';
import { COMMAND_USAGE, GLOBAL_USAGE } from './usage.js';
import { commandUsage, reportFailure } from './failure.js';
import { exitWhenWritten, processStdio } from './stdio.js';

/** The command table in alphabetical order (which decides nothing but the order of the checks). */
export const COMMANDS: readonly CommandSpec[] = (
  [
    ['capture', () => import('./capture.js').then((m) => m.captureCommand)],
    ['console', () => import('./console.js').then((m) => m.consoleCommand)],
    ['create', () => import('./create.js').then((m) => m.createCommand)],
    ['display', () => import('./display.js').then((m) => m.displayCommand)],
    ['events', () => import('./events.js').then((m) => m.eventsCommand)],
    ['firewall', () => import('./firewall.js').then((m) => m.firewallCommand)],
    ['grow', () => import('./grow.js').then((m) => m.growCommand)],
    ['help', () => import('./help-command.js').then((m) => m.helpCommand)],
    ['inspect', () => import('./inspect.js').then((m) => m.inspectCommand)],
    ['links', () => import('./links.js').then((m) => m.linksCommand)],
    ['load', () => import('./load.js').then((m) => m.loadCommand)],
    ['log', () => import('./log.js').then((m) => m.logCommand)],
    ['migrate', () => import('./migrate.js').then((m) => m.migrateCommand)],
    ['pause', () => import('./pause.js').then((m) => m.pauseCommand)],
    ['receive', () => import('./receive.js').then((m) => m.receiveCommand)],
    ['reload', () => import('./reload.js').then((m) => m.reloadCommand)],
    ['reset', () => import('./reset.js').then((m) => m.resetCommand)],
    ['send', () => import('./send.js').then((m) => m.sendCommand)],
    ['show', () => import('./status.js').then((m) => m.showCommand)],
    ['snapshot', () => import('./snapshot.js').then((m) => m.snapshotCommand)],
    ['start', () => import('./start.js').then((m) => m.startCommand)],
    ['status', () => import('./status.js').then((m) => m.statusCommand)],
    ['stop', () => import('./stop.js').then((m) => m.stopCommand)],
    ['unpause', () => import('./pause.js').then((m) => m.unpauseCommand)],
    ['wait', () => import('./wait.js').then((m) => m.waitCommand)],
  ] as const
).map(([name, load]) => ({
  name,
  usage: COMMAND_USAGE[name],
  // Only the command being run is loaded: vmctl's start-up is most of `vmctl status`'s time.
  run: async (args: readonly string[], ctx: Context) => (await load()).run(args, ctx),
}));

/** The global usage line, exactly OpenBSD's. */
export const USAGE = GLOBAL_USAGE;

/** Commands that work on this host's files without vmd (qemu-img): they have no remote form. */
const LOCAL_ONLY = new Set(['create', 'grow']);

/** OpenBSD's abbreviation rule: any prefix of exactly one command selects it. */
export function resolveCommand(word: string): { command: CommandSpec } | { error: string } {
  const found = resolveName(word);
  return 'error' in found ? found : { command: COMMANDS.find((c) => c.name === found.name) as CommandSpec };
}

export { commandUsage, extractJson, parseGlobal };

/** The streams and environment a run uses; tests pass their own. */
export interface Io {
  readonly stdin: NodeJS.ReadStream;
  readonly stdout: NodeJS.WriteStream;
  readonly stderr: NodeJS.WriteStream;
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
}

/** vmctl from argv (without node and the script) to exit status. */
export async function main(argv: readonly string[], io: Io): Promise<number> {
  const { json, rest } = extractJson(argv);
  const global = parseGlobal(rest);
  const help = await import('./help.js');
  if (global === undefined || global.rest.length === 0) {
    if (json) io.stdout.write(help.jsonError('ERR_USAGE', 'no command given'));
    // OpenBSD's usage byte for byte; the command list is `vmctl help`'s.
    io.stderr.write(USAGE);
    return 1;
  }
  const [word, ...args] = global.rest as [string, ...string[]];
  // The relay is what a remote vmctl runs under ssh: hidden from the command list, only its full name selects it,
  // and it always speaks to this host's vmd (a VMCTL_HOST in the remote user's environment must not send it on).
  if (word === 'relay') {
    if (global.host === undefined) return (await import('./relay.js')).runRelay(args, io);
    io.stderr.write('vmctl: relay: -H does not apply: the relay speaks to the vmd of the host it runs on\n');
    return 1;
  }
  const found = resolveCommand(word);
  if ('error' in found) {
    // Only for a word that names nothing: an ambiguous prefix already names its candidates' start.
    const near = found.error.startsWith('unknown') ? help.suggestCommand(word) : undefined;
    const hint = near === undefined ? undefined : `did you mean "${near}"?`;
    if (json) io.stdout.write(help.jsonError('ERR_USAGE', found.error, hint));
    io.stderr.write(`${found.error}\n${hint === undefined ? '' : `vmctl: ${hint}\n`}${USAGE}`);
    return 1;
  }
  const host = remoteHost(global.host, io.env);
  if (host !== undefined && LOCAL_ONLY.has(found.command.name)) {
    const why = `${found.command.name}: works on files of this host and does not go through vmd, so it cannot run on host "${host}"`;
    const hint = `run vmctl ${found.command.name} on that host itself${global.host === undefined ? ', or unset VMCTL_HOST for this one' : ''}`;
    if (json) io.stdout.write(help.jsonError('ERR_USAGE', why, hint));
    io.stderr.write(`vmctl: ${why}\nvmctl: hint: ${hint}\n`);
    return 1;
  }
  // `-h` before any other operand asks for the command's usage, not for its running.
  if (args[0] === '-h') {
    io.stdout.write(commandUsage(found.command));
    return 0;
  }
  const connect = host === undefined
    ? async () => (await import('./client.js')).ControlClient.connect(socketPath(io.env))
    : async () => (await import('./ssh.js')).sshConnect(host, io.env, io.stderr, global.verbose);
  const ctx = runContext(io, { json, verbose: global.verbose, remote: host }, {
    connect,
    // Without node:net where vmd's addon is built: most of a listing's time is vmctl's own start-up. Over ssh,
    // the connection above serves one request as well as many.
    ...(host === undefined
      ? {
        request: async (body: RequestBody) => {
          const [oneshot, { readResponse }] = await Promise.all([import('./oneshot.js'), import('../share/read-response.js')]);
          return oneshot.exchangeOnce(socketPath(io.env), body, connect, oneshot.loadExchange(), readResponse);
        },
      }
      : {}),
  });

  try {
    return await found.command.run(args, ctx);
  } catch (err) {
    return reportFailure(err, json, found.command, io);
  }
}

/** True when this file is the program being run (also through the npm bin symlink), not a module a test imported. */
function isEntry(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

/** vmctl as a program: process.argv and the process's own streams, then exit with main's status. */
export function runProgram(): void {
  // Plain write(2) until a command needs Node's streams (vmctl/stdio.ts); a vanished reader (EPIPE) exits 1.
  const { stdout, stderr } = processStdio();
  exitWhenWritten(main(process.argv.slice(2), {
    get stdin() { return process.stdin; }, stdout: stdout.stream, stderr: stderr.stream, env: process.env, cwd: process.cwd(),
  }), stdout.stream, stderr.stream);
}

// The installed vmctl runs the bundle through share/vmctl-entry.cjs, which calls runProgram() itself.
// No top-level await: the bundle is CommonJS (share/build.mjs), which has none.
if (isEntry()) runProgram();
