// Progress of a byte stream (send, receive) on stderr, only when stderr is a terminal: a pipe gets no redraws.
// A bar when the total is known (a file on stdin), else a running count; redrawn at most ten times a second.

import { fmtScaled } from '../share/scaled.js';
import type { Context } from './command.js';

export interface Progress {
  update(bytes: number): void;
  /** Draws the final state and ends the line. */
  finish(): void;
}

const NONE: Progress = { update: () => undefined, finish: () => undefined };

/** A progress line for `label`, or a no-op when stderr is not a terminal or --json is on. */
export function byteProgress(ctx: Pick<Context, 'stderr' | 'json'>, label: string, total: number | null): Progress {
  if (ctx.stderr.isTTY !== true || ctx.json) return NONE;
  let last = 0;
  let bytes = 0;
  let drawn = false;
  const draw = (): void => {
    const size = fmtScaled(bytes);
    if (total !== null && total > 0) {
      const percent = Math.min(100, (100 * bytes) / total);
      const width = 30;
      const filled = Math.round((width * percent) / 100);
      ctx.stderr.write(`\r${label} |${'='.repeat(filled)}${' '.repeat(width - filled)}| ${String(Math.floor(percent)).padStart(3)}% ${size}  `);
    } else {
      ctx.stderr.write(`\r${label} ${size}  `);
    }
    drawn = true;
  };
  return {
    update(n: number): void {
      bytes = n;
      const now = Date.now();
      if (now - last < 100) return;
      last = now;
      draw();
    },
    finish(): void {
      draw();
      if (drawn) ctx.stderr.write('\n');
    },
  };
}
