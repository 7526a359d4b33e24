// `vmctl pause id` and `vmctl unpause id`: stop and resume a guest's vCPUs; one module as the two differ in one word.
// Success and failure read as OpenBSD's pause_vm_complete(): `paused vm N successfully`, `pause vm command failed: …`.

import { parseVmid, printJson, reportError, warnx, type CommandSpec, type Context, type VmRef } from './command.js';
import { CliError, UsageError } from './errors.js';
import { COMMAND_USAGE } from './usage.js';

/** Reads the single `id` operand (no getopt in OpenBSD's ctl_pause, so `-x` is an invalid id). */
export function parsePauseTarget(args: readonly string[], warn: (message: string) => void): VmRef {
  if (args.length !== 1) throw new UsageError();
  const word = args[0] as string;
  const ref = parseVmid(word, warn);
  if (ref === undefined) throw new CliError(`invalid id: ${word}`);
  return ref;
}

function pauseRunner(verb: 'pause' | 'unpause'): CommandSpec['run'] {
  return async (args, ctx: Context) => {
    const ref = parsePauseTarget(args, (m) => warnx(ctx, m));
    const client = await ctx.connect();
    try {
      const type = verb === 'pause' ? 'vm.pause.request' : 'vm.unpause.request';
      const { response, raw } = await client.request({ type, target: ref.target });
      if (response.type === 'error') {
        reportError(ctx, verb, response.error, raw);
        return 1;
      }
      if (response.type !== (verb === 'pause' ? 'vm.pause.response' : 'vm.unpause.response')) {
        throw new CliError('unexpected response received from vmd');
      }
      if (ctx.json) printJson(ctx, raw);
      else if ('vmId' in response) warnx(ctx, `${verb}d vm ${response.vmId} successfully`);
      return 0;
    } finally {
      client.close();
    }
  };
}

/** `vmctl pause id`. */
export const pauseCommand: CommandSpec = { name: 'pause', usage: COMMAND_USAGE.pause, run: pauseRunner('pause') };

/** `vmctl unpause id`. */
export const unpauseCommand: CommandSpec = { name: 'unpause', usage: COMMAND_USAGE.unpause, run: pauseRunner('unpause') };
