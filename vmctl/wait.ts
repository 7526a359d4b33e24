// `vmctl wait id`: blocks until the VM stops, printing OpenBSD's `waiting for vm NAME: terminated vm N` on stderr.
// vmd holds the reply until the guest is gone, so one request and one reply are the whole exchange.

import { parseVmid, printJson, reportDetail, requestAfterPrefix, warnx, type CommandSpec, type Context, type VmRef } from './command.js';
import { CliError, errorMessage, UsageError } from './errors.js';
import { COMMAND_USAGE } from './usage.js';

/** Reads the single `id` operand, as ctl_waitfor() does: no getopt, so `-x` is an invalid id, not an option. */
export function parseWait(args: readonly string[], warn: (message: string) => void): { ref: VmRef } {
  if (args.length !== 1) throw new UsageError();
  const word = args[0] as string;
  const ref = parseVmid(word, warn);
  if (ref === undefined) throw new CliError(`invalid id: ${word}`);
  return { ref };
}

async function runWait(args: readonly string[], ctx: Context): Promise<number> {
  const { ref } = parseWait(args, (m) => warnx(ctx, m));
  const client = await ctx.connect();
  try {
    const prefix = ref.name !== undefined ? `waiting for vm ${ref.name}: ` : 'waiting for vm: ';
    const { response, raw } = await requestAfterPrefix(ctx, client, prefix, { type: 'vm.wait.request', target: ref.target });
    if (ctx.json) {
      printJson(ctx, raw);
      return response.type === 'vm.wait.response' ? 0 : 1;
    }
    if (response.type === 'vm.wait.response') {
      ctx.stderr.write(`terminated vm ${response.vmId}\n`);
      return 0;
    }
    if (response.type === 'error') {
      ctx.stderr.write(`${errorMessage('wait', response.error)}\n`);
      reportDetail(ctx, 'wait', response.error);
      return 1;
    }
    ctx.stderr.write('unexpected response received from vmd\n');
    return 1;
  } finally {
    client.close();
  }
}

/** `vmctl wait id`. */
export const waitCommand: CommandSpec = { name: 'wait', usage: COMMAND_USAGE.wait, run: runWait };
