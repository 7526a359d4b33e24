// `vmctl inspect id`: the VM's effective configuration as vm.conf text that `vmd -n` accepts (like `virsh dumpxml`);
// with --json vmd's reply, which also carries the configuration as an object. `show` stays OpenBSD's alias of status.

import { getopt, parseVmid, requestListing, warnx, type CommandSpec, type Context } from './command.js';
import { CliError, UsageError } from './errors.js';
import { COMMAND_USAGE } from './usage.js';

async function runInspect(args: readonly string[], ctx: Context): Promise<number> {
  const { operands } = getopt(args, []);
  if (operands.length !== 1) throw new UsageError();
  const word = operands[0] as string;
  const ref = parseVmid(word, (m) => warnx(ctx, m));
  if (ref === undefined) throw new CliError(`invalid id: ${word}`);
  return requestListing(ctx, { type: 'vm.inspect.request', target: ref.target }, 'vm.inspect.response', (response) => {
    ctx.stdout.write(response.text);
    return 0;
  });
}

/** `vmctl inspect id`. */
export const inspectCommand: CommandSpec = { name: 'inspect', usage: COMMAND_USAGE.inspect, run: runInspect };
