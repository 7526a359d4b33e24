// `vmctl reload`: vmd forgets every VM that is not running and re-reads its configuration file (root only).
// Takes no arguments; success is silent, as in OpenBSD.

import { requestOk, type CommandSpec } from './command.js';
import { UsageError } from './errors.js';
import { COMMAND_USAGE } from './usage.js';

/** `vmctl reload`. */
export const reloadCommand: CommandSpec = {
  name: 'reload',
  usage: COMMAND_USAGE.reload,
  run: (args, ctx) => {
    if (args.length !== 0) throw new UsageError();
    return requestOk(ctx, 'reload', { type: 'config.reload.request' });
  },
};
