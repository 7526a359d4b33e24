// Summary lines of `vmctl capture` from tcpdump reading the stream (`tcpdump -n -l -r -`): it decodes far more
// protocols than share/pcap.ts, whose summaries remain for --json objects and where tcpdump is not installed.

import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Writable } from 'node:stream';

/** tcpdump on PATH (vmd needs it to capture at all; a client machine may lack it), or null. */
export function tcpdumpPath(env: NodeJS.ProcessEnv): string | null {
  for (const dir of (env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(delimiter)) {
    if (dir === '') continue;
    try {
      accessSync(join(dir, 'tcpdump'), constants.X_OK);
      return join(dir, 'tcpdump');
    } catch {
      // Not here.
    }
  }
  return null;
}

/** A tcpdump reading pcap on its stdin and printing one line per packet to `out`. */
export interface Summarizer {
  readonly stdin: Writable;
  /** Ends its input; resolves once it printed everything and exited. */
  end(): Promise<void>;
}

/** Starts tcpdump as the calling user, its lines straight to `out` (line-buffered: -l), its chatter dropped. */
export function summarizerStart(path: string, out: Writable): Summarizer {
  // -n: no name lookups (slow, and they would leak the captured addresses to DNS); -r -: the stream vmd sends.
  const child: ChildProcess = spawn(path, ['-n', '-l', '-r', '-'], { stdio: ['pipe', 'pipe', 'ignore'] });
  child.stdout!.pipe(out, { end: false });
  const exited = new Promise<void>((resolve) => {
    child.once('close', () => resolve());
    child.once('error', () => resolve());
  });
  // A tcpdump that went away early must not turn the relay's writes into an EPIPE crash.
  child.stdin!.on('error', () => undefined);
  return {
    stdin: child.stdin!,
    end: async () => {
      child.stdin!.end();
      await exited;
    },
  };
}
