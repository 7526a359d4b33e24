// `vmctl load filename`: vmd reads another configuration file in addition to the loaded one (root only).
// The path is made absolute here, against the caller's cwd, because vmd runs elsewhere (OpenBSD leaves it to vmd).

import { isAbsolute, resolve } from 'node:path';
import { requestOk, type CommandSpec, type Context } from './command.js';
import { CliError, UsageError } from './errors.js';
import { COMMAND_USAGE } from './usage.js';

/** The absolute path `load` sends; with -H the file is that host's, which has no cwd of ours, so it must be absolute. */
export function parseLoad(args: readonly string[], cwd: string, remote?: string): string {
  if (args.length !== 1 || (args[0] as string).length === 0) throw new UsageError();
  const path = args[0] as string;
  if (remote !== undefined && !isAbsolute(path)) throw new CliError(`${path}: a path on host "${remote}" must be absolute`);
  return resolve(cwd, path);
}

/** `vmctl load filename`. */
export const loadCommand: CommandSpec = {
  name: 'load',
  usage: COMMAND_USAGE.load,
  run: (args, ctx: Context) => {
    const path = parseLoad(args, ctx.cwd, ctx.remote);
    return requestOk(ctx, 'load', { type: 'config.load.request', path });
  },
};
