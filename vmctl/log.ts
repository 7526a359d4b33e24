// `vmctl log brief | verbose`: sets vmd's log level for every role and guest (root only).
// Any case-insensitive prefix of the word will do, as ctl_log() compares with strncasecmp.

import { requestOk, type CommandSpec } from './command.js';
import { UsageError } from './errors.js';
import { COMMAND_USAGE } from './usage.js';

/** The log level a word selects: 0 for brief, 2 for verbose (OpenBSD's values). */
export function parseLog(args: readonly string[]): number {
  if (args.length !== 1) throw new UsageError();
  const word = (args[0] as string).toLowerCase();
  if ('brief'.startsWith(word)) return 0;
  if ('verbose'.startsWith(word)) return 2;
  throw new UsageError();
}

/** `vmctl log brief | verbose`. */
export const logCommand: CommandSpec = {
  name: 'log',
  usage: COMMAND_USAGE.log,
  run: (args, ctx) => requestOk(ctx, 'log', { type: 'log.verbose.request', level: parseLog(args) }),
};
