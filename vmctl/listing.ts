// `vmctl status` and `show` for this host's vmd, bundled apart from the rest of vmctl (share/build.mjs) so that a
// listing, whose run is mostly vmctl's start-up, loads only what it uses; anything else goes to the whole program.

import { socketPath } from '../share/paths.js';
import { readListingResponse } from '../share/read-status.js';
import { extractJson, parseGlobal, remoteHost, resolveName } from './argv.js';
import { runContext } from './command.js';
import type { Io } from './vmctl.js';
import { reportFailure } from './failure.js';
import { exchangeOnce, loadExchange } from './oneshot.js';
import { showCommand, statusCommand } from './status.js';
import { exitWhenWritten, processStdio } from './stdio.js';

/**
 * Runs argv as vmctl's main() would when it is a listing of this host's VMs through vmd's addon: returns its exit
 * status, or undefined, having done nothing, for any other command line (another command, -H, -h, usage errors).
 */
export function listingRun(argv: readonly string[], io: Io): Promise<number> | undefined {
  const { json, rest } = extractJson(argv);
  const global = parseGlobal(rest);
  if (global === undefined || global.rest.length === 0) return undefined;
  const [word, ...args] = global.rest as [string, ...string[]];
  const found = resolveName(word);
  if ('error' in found || (found.name !== 'status' && found.name !== 'show')) return undefined;
  if (remoteHost(global.host, io.env) !== undefined || args[0] === '-h') return undefined;
  const exchange = loadExchange();
  if (exchange === null) return undefined;
  const command = found.name === 'status' ? statusCommand : showCommand;
  const path = socketPath(io.env);
  // Every request goes through the addon, which loaded: a connection through node:net (vmctl/client.ts, and the whole
  // reply reader with it) is never needed here, and is left out of this bundle.
  const connect = (): Promise<never> => Promise.reject(new Error('vmctl: the listing has no node:net connection'));
  const ctx = runContext(io, { json, verbose: global.verbose, remote: undefined }, {
    connect,
    request: (body) => exchangeOnce(path, body, connect, exchange, readListingResponse),
  });

  return command.run(args, ctx).catch((err: unknown) => reportFailure(err, json, command, io));
}

/** The installed vmctl's first try (share/vmctl-entry.cjs): true when it runs the command line as a listing. */
export function runListing(): boolean {
  const { stdout, stderr } = processStdio();
  const run = listingRun(process.argv.slice(2), {
    get stdin() { return process.stdin; }, stdout: stdout.stream, stderr: stderr.stream, env: process.env, cwd: process.cwd(),
  });
  if (run === undefined) return false;
  exitWhenWritten(run, stdout.stream, stderr.stream);
  return true;
}
