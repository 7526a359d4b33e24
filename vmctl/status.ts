// `vmctl status [-r] [id]` and its alias `show`: the table of VMs, OpenBSD's columns and exit status.
// The whole list is fetched and filtered here, so "no VM passed -r" (exit 1) and "no VM matched the id" (exit 0) differ.

import type { StatusResponse } from '../share/protocol.js';
import { getopt, parseVmid, printJson, reportError, requestOnce, warnx, type CommandSpec, type Context, type VmRef } from './command.js';
import { CliError, UsageError } from './errors.js';
import { formatStatus } from './format.js';
import { COMMAND_USAGE } from './usage.js';

/** Parsed `status` arguments. */
export interface StatusArgs {
  readonly running: boolean;
  readonly ref: VmRef | undefined;
}

/** Reads `[-r] [id]` as ctl_status() does. */
export function parseStatus(args: readonly string[], warn: (message: string) => void): StatusArgs {
  const { events, operands } = getopt(args, ['-r']);
  const running = events.some((e) => e.name === 'r');
  if (operands.length > 1) throw new UsageError();
  if (operands.length === 0) return { running, ref: undefined };
  const word = operands[0] as string;
  const ref = parseVmid(word, warn);
  if (ref === undefined) throw new CliError(`invalid id: ${word}`);
  return { running, ref };
}

async function runStatus(args: readonly string[], ctx: Context): Promise<number> {
  const parsed = parseStatus(args, (m) => warnx(ctx, m));
  // For --json the daemon filters, so the printed reply holds exactly the VMs asked for.
  const filters = ctx.json
    ? { ...(parsed.ref === undefined ? {} : { target: parsed.ref.target }), ...(parsed.running ? { running: true } : {}) }
    : {};
  const { response, raw } = await requestOnce(ctx, { type: 'vm.status.request', ...filters });
  if (response.type === 'error') {
    reportError(ctx, 'status', response.error, raw);
    return 1;
  }
  if (response.type !== 'vm.status.response') throw new CliError('unexpected response received from vmd');
  return printStatus(ctx, response, raw, parsed);
}

function printStatus(ctx: Context, response: StatusResponse, raw: unknown, parsed: StatusArgs): number {
  if (ctx.json) {
    printJson(ctx, raw);
    return response.vms.length === 0 && parsed.ref === undefined ? 1 : 0;
  }
  for (const w of response.warnings) warnx(ctx, `warning: ${w}`);
  const { text, found } = formatStatus(response.vms, { running: parsed.running, ref: parsed.ref });
  ctx.stdout.write(text);
  return found === 0 ? 1 : 0;
}

/** `vmctl status [-r] [id]`. */
export const statusCommand: CommandSpec = { name: 'status', usage: COMMAND_USAGE.status, run: runStatus };

/** `vmctl show`: OpenBSD's alias of status, with its shorter usage line. */
export const showCommand: CommandSpec = { name: 'show', usage: COMMAND_USAGE.show, run: runStatus };
