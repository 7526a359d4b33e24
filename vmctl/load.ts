// `vmctl load filename`: vmd reads another configuration file in addition to the loaded one (root only).
// The path is made absolute here, against the caller's cwd, because vmd runs elsewhere (OpenBSD leaves it to vmd).

import { resolve } from 'node:path';
import { requestOk, type CommandSpec, type Context } from './command.js';
import { UsageError } from './errors.js';
import { COMMAND_USAGE } from './usage.js';

/** The absolute path `load` sends. */
export function parseLoad(args: readonly string[], cwd: string): string {
  if (args.length !== 1 || (args[0] as string).length === 0) throw new UsageError();
  return resolve(cwd, args[0] as string);
}

/** `vmctl load filename`. */
export const loadCommand: CommandSpec = {
  name: 'load',
  usage: COMMAND_USAGE.load,
  run: (args, ctx: Context) => {
    const path = parseLoad(args, ctx.cwd);
    return requestOk(ctx, 'load', { type: 'config.load.request', path });
  },
};
