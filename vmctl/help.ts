// vmctl's own help: `vmctl help [command]`, `vmctl command -h`, the command list, "did you mean" for a typo,
// and the JSON form of the errors vmctl prints itself (usage, connection, local checks) under --json.

import type { ErrorCode } from '../share/errors.js';
import { COMMAND_USAGE } from './usage.js';

/** The command list after the global usage line: one `\tNAME\tUSAGE` line per command, as completion reads it. */
export function commandList(): string {
  return Object.entries(COMMAND_USAGE)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, usage]) => `\t${name}\t${usage.replace(/\n\t\t/g, '\n\t\t\t')}\n`)
    .join('');
}

/** Edit distance counting a swap of neighbours as one edit (`stauts` is one from `status`), for command names. */
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cell = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      const swapped = i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1];
      d[i]![j] = swapped ? Math.min(cell, d[i - 2]![j - 2]! + 1) : cell;
    }
  }
  return d[a.length]![b.length]!;
}

/** The command a mistyped word most likely meant: within two edits, or undefined when none is that close. */
export function suggestCommand(word: string, names: readonly string[] = Object.keys(COMMAND_USAGE)): string | undefined {
  let best: { name: string; d: number } | undefined;
  for (const name of names) {
    const d = distance(word.toLowerCase(), name);
    if (d <= 2 && (best === undefined || d < best.d)) best = { name, d };
  }
  return best?.name;
}

/** An error vmctl found itself, as `--json` prints it: the same shape as vmd's error replies. */
export function jsonError(code: ErrorCode, message: string, hint?: string): string {
  return `${JSON.stringify({ type: 'error', id: 0, error: { code, message, ...(hint === undefined ? {} : { hint }) } })}\n`;
}
