// `vmctl reset [all | switches | vms]`: vmd drops its state (stopping every VM for `all` and `vms`) without re-reading.
// The mode word is matched whole and case-insensitively, as ctl_reset() does with strcasecmp.

import { requestOk, type CommandSpec } from './command.js';
import { UsageError } from './errors.js';
import { COMMAND_USAGE } from './usage.js';

/** The reset mode named on the command line; `all` when none is. */
export function parseReset(args: readonly string[]): 'all' | 'switches' | 'vms' {
  if (args.length > 1) throw new UsageError();
  if (args.length === 0) return 'all';
  const word = (args[0] as string).toLowerCase();
  if (word === 'all' || word === 'switches' || word === 'vms') return word;
  throw new UsageError();
}

/** `vmctl reset [all | switches | vms]`. */
export const resetCommand: CommandSpec = {
  name: 'reset',
  usage: COMMAND_USAGE.reset,
  run: (args, ctx) => requestOk(ctx, 'reset', { type: 'config.reset.request', mode: parseReset(args) }),
};
