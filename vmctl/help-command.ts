// `vmctl help [command]`: the global usage and the command list, or one command's usage line.
// Kept apart from help.ts, which main() loads for its error paths, so the command table stays lazy.

import type { CommandSpec } from './command.js';
import { UsageError } from './errors.js';
import { commandList } from './help.js';
import { COMMAND_USAGE, GLOBAL_USAGE } from './usage.js';

/** `vmctl help [command]`: prints to stdout and exits 0, as a help asked for is no error. */
export const helpCommand: CommandSpec = {
  name: 'help',
  usage: COMMAND_USAGE.help,
  run: async (args, ctx) => {
    if (args.length > 1) throw new UsageError();
    if (args.length === 0) {
      ctx.stdout.write(`${GLOBAL_USAGE}commands:\n${commandList()}`);
      return 0;
    }
    // The same abbreviation rule as the command word itself: a prefix of exactly one command.
    const matches = Object.entries(COMMAND_USAGE).filter(([name]) => name.startsWith(args[0] as string));
    if (matches.length !== 1) throw new UsageError();
    const [name, usage] = matches[0]!;
    ctx.stdout.write(`usage:\tvmctl [-v] ${name} ${usage}\n`);
    return 0;
  },
};
