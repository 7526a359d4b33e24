// `vmctl firewall id [if]`: a VM's filter rules as written in vm.conf, each with the packets and bytes it
// decided, and the hypervisor's spoofing drops. vmd gathers the counters; this module asks and prints.

import type { Count, FirewallInfo } from '../share/protocol.js';
import { fmtScaled } from '../share/scaled.js';
import { getopt, parseVmid, requestListing, strtonum, warnx, type CommandSpec, type Context } from './command.js';
import { CliError, UsageError } from './errors.js';
import { COMMAND_USAGE } from './usage.js';

export const FIREWALL_COLUMNS = ['VM', 'IF', '#', 'PACKETS', 'BYTES', 'RULE'] as const;

/** The rows of one interface: its rules in order, then what the address locks dropped. */
function interfaceRows(f: FirewallInfo): string[][] {
  const count = (c: Count | null): [string, string] => (c === null ? ['-', '-'] : [String(c.packets), fmtScaled(c.bytes)]);
  const rows: string[][] = [];
  const row = (n: string, c: Count | null, text: string): void => {
    rows.push([f.vm, String(f.index), n, ...count(c), text]);
  };
  if (f.rules.length === 0) row('-', null, '(no rules: everything passes)');
  for (const r of f.rules) row(String(r.n), r.count, r.text);
  if (f.lockedLladdr) row('-', f.macSpoof, '(dropped: source lladdr not the guest\'s)');
  if (f.lockedIp !== null) row('-', f.ipSpoof, `(dropped: source address not ${f.lockedIp})`);
  if (f.vlan !== null) row('-', f.vlan, '(dropped: vlan-tagged frames)');
  if (f.guard !== null) {
    const what = f.guarded.map((g) => (g === 'dhcp' ? 'DHCP replies' : 'router advertisements and redirects')).join(' and ');
    row('-', f.guard, `(dropped: ${what} from the guest)`);
  }
  return rows;
}

/** What `vmctl firewall` prints: one table, an interface after the other, counters right-aligned. */
export function formatFirewall(interfaces: readonly FirewallInfo[]): string {
  const rows: string[][] = [[...FIREWALL_COLUMNS], ...interfaces.flatMap(interfaceRows)];
  const widths = FIREWALL_COLUMNS.map((_, i) => Math.max(...rows.map((r) => [...(r[i] as string)].length)));
  const line = (r: readonly string[]): string =>
    r.map((c, i) => {
      if (i === r.length - 1) return c;
      const w = widths[i] as number;
      return i === 0 ? c.padEnd(w) : c.padStart(w);
    }).join(' ');
  return `${rows.map(line).join('\n')}\n`;
}

/** Reads `id [if]`: a VM as parse_vmid() reads it and an optional interface number. */
export function parseFirewall(args: readonly string[], warn: (message: string) => void): { target: string; index: number | undefined } {
  const { operands } = getopt(args, []);
  if (operands.length < 1 || operands.length > 2) throw new UsageError();
  const word = operands[0] as string;
  const ref = parseVmid(word, warn);
  if (ref === undefined) throw new CliError(`invalid id: ${word}`);
  if (operands.length === 1) return { target: ref.target, index: undefined };
  const n = strtonum(operands[1] as string, 0, 1023);
  if (n.value === undefined) throw new CliError(`interface number is ${n.error}: ${operands[1] as string}`);
  return { target: ref.target, index: n.value };
}

async function runFirewall(args: readonly string[], ctx: Context): Promise<number> {
  const { target, index } = parseFirewall(args, (m) => warnx(ctx, m));
  const body = { type: 'vm.firewall.request' as const, target, ...(index === undefined ? {} : { index }) };
  return requestListing(ctx, body, 'vm.firewall.response', (response) => {
    if (response.interfaces.length === 0) {
      warnx(ctx, `vm ${target}: no interfaces`);
      return 1;
    }
    ctx.stdout.write(formatFirewall(response.interfaces));
    return 0;
  });
}

/** `vmctl firewall id [if]`. */
export const firewallCommand: CommandSpec = { name: 'firewall', usage: COMMAND_USAGE.firewall, run: runFirewall };
