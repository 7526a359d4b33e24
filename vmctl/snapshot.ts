// `vmctl snapshot [-l | -r name | -d name] id [name]`: take, list, revert to and delete snapshots of a VM's qcow2
// disks; a running guest's include its RAM, so a revert resumes it where it was.

import type { SnapshotInfo, SnapshotRequest } from '../share/protocol.js';
import { fmtScaled } from '../share/scaled.js';
import { getopt, parseVmid, printJson, warnx, type CommandSpec, type Context } from './command.js';
import { CliError, UsageError } from './errors.js';
import { COMMAND_USAGE } from './usage.js';

export interface SnapshotArgs {
  readonly target: string;
  readonly op: SnapshotRequest['op'];
  readonly name: string | undefined;
}

/** One of -l, -r name, -d name, or none (take one, named by the optional second operand). */
export function parseSnapshot(args: readonly string[], warn: (message: string) => void): SnapshotArgs {
  const { events, operands } = getopt(args, ['-l', '-r <name>', '-d <name>']);
  if (events.length > 1 || operands.length < 1 || operands.length > (events.length === 0 ? 2 : 1)) throw new UsageError();
  const ref = parseVmid(operands[0] as string, warn);
  if (ref === undefined) throw new CliError(`invalid id: ${operands[0]}`);
  const ev = events[0];
  if (ev === undefined) return { target: ref.target, op: 'create', name: operands[1] };
  if (ev.name === 'l') return { target: ref.target, op: 'list', name: undefined };
  return { target: ref.target, op: ev.name === 'r' ? 'revert' : 'delete', name: ev.value };
}

/** The listing: one row per snapshot of each disk, oldest first. */
export function formatSnapshots(list: readonly SnapshotInfo[]): string {
  const rows = [['NAME', 'VMSTATE', 'DATE', 'DISK'], ...[...list].sort((a, b) => a.date.localeCompare(b.date))
    .map((s) => [s.name, s.vmStateBytes === 0 ? '-' : fmtScaled(s.vmStateBytes), s.date.replace(/\.\d+Z$/, 'Z'), s.disk])];
  const widths = [0, 1, 2].map((i) => Math.max(...rows.map((r) => (r[i] as string).length)));
  return rows.map((r) => r.map((c, i) => (i === 3 ? c : i === 1 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

async function runSnapshot(args: readonly string[], ctx: Context): Promise<number> {
  const a = parseSnapshot(args, (m) => warnx(ctx, m));
  const client = await ctx.connect();
  try {
    const { response, raw } = await client.request({ type: 'vm.snapshot.request', target: a.target, op: a.op, ...(a.name === undefined ? {} : { name: a.name }) });
    if (response.type === 'error') {
      if (ctx.json) printJson(ctx, raw);
      else {
        warnx(ctx, response.error.message);
        if (response.error.hint !== undefined) warnx(ctx, `hint: ${response.error.hint}`);
      }
      return 1;
    }
    if (response.type !== 'vm.snapshot.response') throw new CliError('unexpected response received from vmd');
    if (ctx.json) printJson(ctx, raw);
    else if (a.op === 'list') ctx.stdout.write(formatSnapshots(response.snapshots));
    else if (a.op === 'create') warnx(ctx, `took snapshot ${response.name} of vm ${response.vmId}`);
    else if (a.op === 'revert') warnx(ctx, `reverted vm ${response.vmId} to snapshot ${response.name}`);
    else warnx(ctx, `deleted snapshot ${response.name} of vm ${response.vmId}`);
    return 0;
  } finally {
    client.close();
  }
}

/** `vmctl snapshot`. */
export const snapshotCommand: CommandSpec = { name: 'snapshot', usage: COMMAND_USAGE.snapshot, run: runSnapshot };
