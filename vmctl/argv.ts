// vmctl's words before a command runs: `--json` taken out, getopt's "vH:" globals, the command by OpenBSD's prefix
// rule, and which host is meant. Shared by the whole program (vmctl.ts) and the listing fast path (listing.ts).

import { COMMAND_USAGE } from './usage.js';

/** Every command's name, alphabetical (the order decides nothing but the order of the checks). */
export const COMMAND_NAMES: readonly (keyof typeof COMMAND_USAGE)[] = (Object.keys(COMMAND_USAGE) as (keyof typeof COMMAND_USAGE)[]).sort();

/** OpenBSD's abbreviation rule: any prefix of exactly one command selects it. */
export function resolveName(word: string): { name: keyof typeof COMMAND_USAGE } | { error: string } {
  const matches = COMMAND_NAMES.filter((n) => n.startsWith(word));
  if (matches.length > 1) return { error: `ambiguous argument: ${word}` };
  if (matches.length === 0) return { error: `unknown argument: ${word}` };
  return { name: matches[0]! };
}

/** Options whose next word is their value, so a `--json` right after one is that value and not the flag. */
const TAKES_VALUE = new Set(['-b', '-B', '-d', '-i', '-m', '-n', '-r', '-s', '-t', '-w', '--initrd', '--cmdline', '--forward']);

/** `--json` may appear anywhere before `--`; it is taken out before any other parsing sees the arguments. */
export function extractJson(argv: readonly string[]): { json: boolean; rest: string[] } {
  let json = false;
  let ended = false;
  const rest: string[] = [];
  argv.forEach((arg, i) => {
    if (arg === '--') ended = true;
    if (!ended && arg === '--json' && !(i > 0 && TAKES_VALUE.has(argv[i - 1] as string))) json = true;
    else rest.push(arg);
  });
  return { json, rest };
}

/** getopt(argc, argv, "vH:") before the command: `-v`, `-vv`, `-H host`, `-Hhost`, `--`; anything else is a usage error. */
export function parseGlobal(argv: readonly string[]): { verbose: number; host?: string; rest: string[] } | undefined {
  let verbose = 0;
  let host: string | undefined;
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--') {
      i++;
      break;
    }
    if (!a.startsWith('-') || a === '-') break;
    if (a.startsWith('-H')) {
      host = a.length > 2 ? a.slice(2) : argv[++i];
      if (host === undefined) return undefined;
      continue;
    }
    if (!/^-v+$/.test(a)) return undefined;
    verbose += a.length - 1;
  }
  return host === undefined ? { verbose, rest: argv.slice(i) } : { verbose, host, rest: argv.slice(i) };
}

/** The host vmd is reached on: -H wins over VMCTL_HOST; an empty VMCTL_HOST means this host, as an unset one does. */
export function remoteHost(flag: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  return flag ?? (env.VMCTL_HOST !== undefined && env.VMCTL_HOST !== '' ? env.VMCTL_HOST : undefined);
}
