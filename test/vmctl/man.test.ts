// Keeps vmctl.8 in step with vmctl: every command, every flag of every usage line, the global flags and variables are documented,
// and mandoc lints the page clean.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { packageRoot } from '../../share/paths.js';
import { COMMANDS } from '../../vmctl/vmctl.js';

const manPage = join(packageRoot, 'share', 'man', 'man8', 'vmctl.8');

/** The macro lines of an mdoc page, split into words (quotes group, escapes `\-` and `\&` removed). */
function macroWords(source: string): string[][] {
  return source
    .split('\n')
    .filter((l) => l.startsWith('.') && !l.startsWith('.\\"'))
    .map((l) => (l.slice(1).match(/"[^"]*"|\S+/g) ?? []).map((w) => w.replace(/^"|"$/g, '').replace(/\\-/g, '-').replace(/\\&/g, '')));
}

/** Words that follow a given macro anywhere on a macro line (`.Ic start`, `.It Xo Ic start`, `.Op Fl cL`). */
function wordsAfter(lines: string[][], macro: string): Set<string> {
  const out = new Set<string>();
  for (const words of lines) {
    words.forEach((w, i) => {
      if (w === macro && words[i + 1] !== undefined) out.add(words[i + 1] as string);
    });
  }
  return out;
}

/** The flags a usage line names: each letter of `-cL`, `-B`, and long options such as `--forward`. */
function usageFlags(usage: string): string[] {
  const flags: string[] = [];
  for (const m of usage.matchAll(/(?<![\w-])-(-?[A-Za-z][\w-]*)/g)) {
    const f = m[1] as string;
    if (f.startsWith('-')) flags.push(f);
    else flags.push(...f.split(''));
  }
  return flags;
}

t.test('usageFlags reads usage lines', async (t) => {
  t.same(usageFlags('[-cL] [-B device] [--forward proto:hostport:guestport] id | name'), ['c', 'L', 'B', '-forward']);
  t.same(usageFlags('[-fw] [id | -a]'), ['f', 'w', 'a']);
});

t.test('every command and flag is in vmctl.8', async (t) => {
  t.ok(existsSync(manPage), `${manPage} exists`);
  const source = readFileSync(manPage, 'utf8');
  const lines = macroWords(source);
  const commands = wordsAfter(lines, 'Ic');
  const flags = new Set<string>();
  for (const f of wordsAfter(lines, 'Fl')) {
    flags.add(f);
    if (!f.startsWith('-')) for (const c of f) flags.add(c);
  }
  for (const c of COMMANDS) {
    t.ok(commands.has(c.name), `command ${c.name} is documented with .Ic`);
    for (const f of usageFlags(c.usage)) t.ok(flags.has(f), `flag -${f} of ${c.name} is documented with .Fl`);
  }
  for (const f of ['v', '-json', 'H']) t.ok(flags.has(f), `global flag -${f} is documented`);
  for (const e of ['VMD_SOCKET', 'VMCTL_HOST', 'VMCTL_SSH', 'VMCTL_RELAY']) t.ok(wordsAfter(lines, 'Ev').has(e), `${e} is documented with .Ev`);
  t.ok(commands.has('relay'), 'the hidden relay command is documented with .Ic');
  t.match(source, /^\.Sh EXIT STATUS$/m);
  t.match(source, /^\.Sh EXAMPLES$/m);
  t.match(source, /~\.\\&/, 'the console escape is documented');
});

t.test('mandoc -T lint reports no warnings or errors', async (t) => {
  const r = await execa('mandoc', ['-T', 'lint', '-W', 'warning', manPage], { reject: false, all: true });
  if (r.code === 'ENOENT') {
    t.fail('mandoc is not installed: run share/setup (or apt-get install mandoc)');
    return;
  }
  const problems = (r.all ?? '').split('\n').filter((l) => l.includes('vmctl.8:'));
  t.same(problems, [], 'no WARNING, ERROR or UNSUPP messages');
});
