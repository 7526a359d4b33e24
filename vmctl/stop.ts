// `vmctl stop [-fw] [id | -a]`: graceful (ACPI) or forced stop, optionally waiting, of one VM or of all running ones.
// Prints OpenBSD's one line per VM on stderr, without the program name: `stopping vm NAME: requested to shutdown vm N`.

import type { StopResponse } from '../share/protocol.js';
import type { ControlClient } from './client.js';
import { getopt, parseVmid, printJson, reportDetail, requestAfterPrefix, warnx, type CommandSpec, type Context, type VmRef } from './command.js';
import { CliError, errorMessage, UsageError } from './errors.js';
import { vmIsRunning } from './format.js';
import { COMMAND_USAGE } from './usage.js';

/** Parsed `stop` arguments: one VM, or all running ones with `-a`. */
export interface StopArgs {
  readonly all: boolean;
  readonly force: boolean;
  readonly wait: boolean;
  readonly ref: VmRef | undefined;
}

/** Reads `[-afw] [id]` as ctl_stop() does: `-a` takes no id, otherwise exactly one. */
export function parseStop(args: readonly string[], warn: (message: string) => void): StopArgs {
  const { events, operands } = getopt(args, ['-a', '-f', '-w']);
  const has = (n: string): boolean => events.some((e) => e.name === n);
  const all = has('a');
  if (all) {
    if (operands.length !== 0) throw new UsageError();
    return { all, force: has('f'), wait: has('w'), ref: undefined };
  }
  if (operands.length !== 1) throw new UsageError();
  const word = operands[0] as string;
  const ref = parseVmid(word, warn);
  if (ref === undefined) throw new CliError(`invalid id: ${word}`);
  return { all, force: has('f'), wait: has('w'), ref };
}

/** The rest of the `stopping vm NAME: ` line for a stop reply. */
export function stopResultText(response: StopResponse): string {
  return response.result === 'terminated' ? `terminated vm ${response.vmId}` : `requested to shutdown vm ${response.vmId}`;
}

/** terminate_vm() and terminate_vm_complete(): one request, one line; resolves to success. */
async function stopOne(ctx: Context, client: ControlClient, ref: VmRef, force: boolean, wait: boolean): Promise<boolean> {
  const prefix = ref.name !== undefined ? `stopping vm ${ref.name}: ` : 'stopping vm: ';
  const { response, raw } = await requestAfterPrefix(ctx, client, prefix, { type: 'vm.stop.request', target: ref.target, force, wait });
  if (ctx.json) {
    printJson(ctx, raw);
    return response.type === 'vm.stop.response';
  }
  if (response.type === 'vm.stop.response') {
    ctx.stderr.write(`${stopResultText(response)}\n`);
    return true;
  }
  if (response.type === 'error') {
    ctx.stderr.write(`${errorMessage('stop', response.error)}\n`);
    reportDetail(ctx, 'stop', response.error);
    return false;
  }
  ctx.stderr.write('unexpected response received from vmd\n');
  return false;
}

async function runStop(args: readonly string[], ctx: Context): Promise<number> {
  const parsed = parseStop(args, (m) => warnx(ctx, m));
  const client = await ctx.connect();
  try {
    if (parsed.ref !== undefined) return (await stopOne(ctx, client, parsed.ref, parsed.force, parsed.wait)) ? 0 : 1;
    // -a: the list first, then each running VM by name, one after another (terminate_all()).
    const { response, raw } = await client.request({ type: 'vm.status.request' });
    if (response.type === 'error') {
      if (ctx.json) printJson(ctx, raw);
      else {
        warnx(ctx, errorMessage('status', response.error));
        reportDetail(ctx, 'status', response.error);
      }
      return 1;
    }
    if (response.type !== 'vm.status.response') throw new CliError('unexpected response received from vmd');
    let failed = false;
    for (const vm of response.vms) {
      if (!vmIsRunning(vm)) continue;
      const ok = await stopOne(ctx, client, { id: undefined, name: vm.name, target: vm.name }, parsed.force, parsed.wait);
      failed ||= !ok;
    }
    return failed ? 1 : 0;
  } finally {
    client.close();
  }
}

/** `vmctl stop [-fw] [id | -a]`. */
export const stopCommand: CommandSpec = { name: 'stop', usage: COMMAND_USAGE.stop, run: runStop };
