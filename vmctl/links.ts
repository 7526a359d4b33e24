// `vmctl links [id]`: the host links of running guests' NICs, with their switch, address and traffic counters.
// vmd filters by the id and answers with LinkInfo rows; this module only asks and prints the table (or the reply with --json).

import type { LinkInfo } from '../share/protocol.js';
import { fmtScaled } from '../share/scaled.js';
import { getopt, parseVmid, requestListing, warnx, type CommandSpec, type Context } from './command.js';
import { CliError, UsageError } from './errors.js';
import { COMMAND_USAGE } from './usage.js';

/** The table's columns, in order. */
export const LINKS_COLUMNS = ['VM', 'IF', 'LINK', 'LLADDR', 'SWITCH', 'ADDRESS', 'FORWARDS', 'RX-PKTS', 'RX-BYTES', 'RX-DROP', 'TX-PKTS', 'TX-BYTES', 'TX-DROP', 'SPOOFED', 'BLOCKED'] as const;

/** Columns that hold text and are aligned left; the counters are aligned right. */
const LEFT = 7;

/** The cells of one link's row: sizes as fmt_scaled(3) prints them, `-` where there is nothing to show. */
export function linkCells(l: LinkInfo): string[] {
  // passt keeps no counters: `-`, not a zero that would look measured.
  const n = (v: number): string => (l.kind === 'passt' ? '-' : String(v));
  const size = (v: number): string => (l.kind === 'passt' ? '-' : fmtScaled(v));
  return [
    l.vm,
    String(l.index),
    l.link,
    l.lladdr,
    l.switch ?? (l.kind === 'passt' ? '(passt)' : l.local ? '(local)' : '-'),
    l.address ?? '-',
    l.forwards !== undefined && l.forwards.length > 0 ? l.forwards.join(',') : '-',
    n(l.rxPackets),
    size(l.rxBytes),
    n(l.rxDropped),
    n(l.txPackets),
    size(l.txBytes),
    n(l.txDropped),
    n(l.spoofDropped),
    n(l.blocked),
  ];
}

/** What `vmctl links` prints: a header and one row per link, ordered by VM id and NIC, columns as wide as their widest cell. */
export function formatLinks(links: readonly LinkInfo[]): string {
  const sorted = [...links].sort((a, b) => a.vmId - b.vmId || a.index - b.index);
  const rows: string[][] = [[...LINKS_COLUMNS], ...sorted.map(linkCells)];
  const widths = LINKS_COLUMNS.map((_, i) => Math.max(...rows.map((r) => [...(r[i] as string)].length)));
  const line = (r: readonly string[]): string =>
    r.map((c, i) => {
      const w = widths[i] as number;
      if (i === r.length - 1) return i < LEFT ? c : c.padStart(w);
      return i < LEFT ? c.padEnd(w) : c.padStart(w);
    }).join(' ');
  return `${rows.map(line).join('\n')}\n`;
}

/** Reads `[id]`: at most one VM, as parse_vmid() reads it; no options. */
export function parseLinks(args: readonly string[], warn: (message: string) => void): { target: string | undefined } {
  const { operands } = getopt(args, []);
  if (operands.length > 1) throw new UsageError();
  if (operands.length === 0) return { target: undefined };
  const word = operands[0] as string;
  const ref = parseVmid(word, warn);
  if (ref === undefined) throw new CliError(`invalid id: ${word}`);
  return { target: ref.target };
}

async function runLinks(args: readonly string[], ctx: Context): Promise<number> {
  const { target } = parseLinks(args, (m) => warnx(ctx, m));
  return requestListing(ctx, { type: 'vm.links.request', ...(target === undefined ? {} : { target }) }, 'vm.links.response', (response) => {
    ctx.stdout.write(formatLinks(response.links));
    return 0;
  });
}

/** `vmctl links [id]`. */
export const linksCommand: CommandSpec = { name: 'links', usage: COMMAND_USAGE.links, run: runLinks };
