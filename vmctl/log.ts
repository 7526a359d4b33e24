// `vmctl log brief | verbose`: sets vmd's log level for every role and guest (root only); `vmctl log id`: QEMU's log.
// Any case-insensitive prefix of brief or verbose selects the level, as ctl_log() compares with strncasecmp.

import { getopt, parseVmid, requestListing, requestOk, warnx, type CommandSpec, type Context } from './command.js';
import { CliError, UsageError } from './errors.js';
import { COMMAND_USAGE } from './usage.js';

/** The log level a word selects: 0 for brief, 2 for verbose (OpenBSD's values); undefined for anything else. */
export function parseLogLevel(word: string): number | undefined {
  const w = word.toLowerCase();
  if ('brief'.startsWith(w)) return 0;
  if ('verbose'.startsWith(w)) return 2;
  return undefined;
}

/** The log level of `vmctl log brief|verbose`; a usage error for anything else. */
export function parseLog(args: readonly string[]): number {
  if (args.length !== 1) throw new UsageError();
  const level = parseLogLevel(args[0] as string);
  if (level === undefined) throw new UsageError();
  return level;
}

async function runLog(args: readonly string[], ctx: Context): Promise<number> {
  const { operands } = getopt(args, []);
  if (operands.length !== 1) throw new UsageError();
  const word = operands[0] as string;
  const level = parseLogLevel(word);
  // A word that is no prefix of brief or verbose names a VM: OpenBSD's meaning of the command stays first.
  if (level !== undefined) return requestOk(ctx, 'log', { type: 'log.verbose.request', level });
  const ref = parseVmid(word, (m) => warnx(ctx, m));
  if (ref === undefined) throw new CliError(`invalid id: ${word}`);
  return requestListing(ctx, { type: 'vm.log.request', target: ref.target }, 'vm.log.response', (response) => {
    if (response.lines.length > 0) ctx.stdout.write(`${response.lines.join('\n')}\n`);
    return 0;
  });
}

/** `vmctl log brief | verbose | id`. */
export const logCommand: CommandSpec = { name: 'log', usage: COMMAND_USAGE.log, run: runLog };
