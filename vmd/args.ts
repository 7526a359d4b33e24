// vmd(8)'s command line: `vmd [-dnv] [-D macro=value] [-f file]`, parsed as getopt(3) would.
// Kept apart from the entry point so it can be tested without starting anything.

import { DEFAULT_CONFIG } from '../share/paths.js';

/** The parsed command line of vmd(8). */
export interface VmdOptions {
  readonly debug: boolean;
  readonly configTest: boolean;
  readonly verbose: number;
  readonly macros: Record<string, string>;
  readonly file: string;
  readonly role: string | null;
}

export const USAGE = 'usage: vmd [-dnv] [-D macro=value] [-f file]';

/** getopt(3)-style parsing of `-dnv -D m=v -f file`, bundled flags included (`-dvv`, `-fFILE`). */
export function parseVmdArgs(argv: readonly string[]): VmdOptions | string {
  let debug = false;
  let test = false;
  let verbose = 0;
  let file = DEFAULT_CONFIG;
  let role: string | null = null;
  const macros: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--role') {
      role = argv[++i] ?? null;
      if (role === null) return USAGE;
      continue;
    }
    if (arg === '--') {
      if (i + 1 < argv.length) return USAGE;
      break;
    }
    if (!arg.startsWith('-') || arg === '-') return USAGE;
    for (let j = 1; j < arg.length; j++) {
      const c = arg[j];
      if (c === 'd') debug = true;
      else if (c === 'n') test = true;
      else if (c === 'v') verbose++;
      else if (c === 'D' || c === 'f') {
        const value = j + 1 < arg.length ? arg.slice(j + 1) : argv[++i];
        if (value === undefined) return USAGE;
        if (c === 'f') file = value;
        else {
          // Split at the last '=' as vmd's symset does (strrchr).
          const eq = value.lastIndexOf('=');
          if (eq <= 0) process.stderr.write(`vmd: could not parse macro definition ${value}\n`);
          else macros[value.slice(0, eq)] = value.slice(eq + 1);
        }
        break;
      } else return USAGE;
    }
  }
  return { debug, configTest: test, verbose, macros, file, role };
}

