// Keeps vm.conf(5) in step with the grammar: every reserved and extension word is documented, mandoc lints clean,
// and the example configuration in share/examples/vm.conf passes `vmd -n`.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { KEYWORDS, EXTENSION_WORDS } from '../../grammar/keywords.js';
import { packageRoot, vmdEntry } from '../../share/paths.js';

const manPage = join(packageRoot, 'share', 'man', 'man5', 'vm.conf.5');
const example = join(packageRoot, 'share', 'examples', 'vm.conf');
const guestKernel = join(packageRoot, 'build', 'guest', 'kernel');

/** mdoc macros that may be called on a macro line after the first one; they end the arguments of the one before. */
const CALLABLE = new Set(
  ('Ac Ad An Ao Ap Aq Ar At Bc Bo Bq Brc Bro Brq Bsx Bx Cd Cm Dc Do Dq Dv Dx Ec Em En Eo Er Es Ev Fa Fc Fl Fn Fo ' +
    'Fr Ft Fx Ic In Li Lk Ms Mt Nm No Ns Nx Oc Oo Op Ot Ox Pa Pc Pf Po Pq Qc Ql Qo Qq Sc So Sq St Sx Sy Ta Tn Ux ' +
    'Va Vt Xc Xo Xr').split(' '),
);
/** The semantic macros for keywords: `.Ic` (commands, top-level words) and `.Cm` (their modifiers). */
const KEYWORD_MACROS = new Set(['Ic', 'Cm']);

/** Split a macro line into arguments as mdoc does: spaces separate, double quotes group. */
function mdocArgs(line: string): string[] {
  const args: string[] = [];
  const re = /"((?:[^"]|"")*)"|(\S+)/g;
  for (let m = re.exec(line); m !== null; m = re.exec(line)) args.push(m[1] !== undefined ? m[1].replace(/""/g, '"') : m[2]!);
  return args;
}

/** Every word a page marks up as a keyword, with `.Ic` or `.Cm`, on its own macro line or called from another. */
function mdocKeywords(source: string): Set<string> {
  const words = new Set<string>();
  for (const raw of source.split('\n')) {
    if (!raw.startsWith('.') || raw.startsWith('.\\"')) continue;
    const args = mdocArgs(raw.slice(1).trim());
    let macro = args.shift() ?? '';
    for (const arg of args) {
      if (CALLABLE.has(arg)) {
        macro = arg;
        continue;
      }
      if (!KEYWORD_MACROS.has(macro)) continue;
      const word = arg.replace(/\\&/g, '');
      if (/^[A-Za-z0-9_][A-Za-z0-9_-]*$/.test(word)) words.add(word);
    }
  }
  return words;
}

t.test('the keyword extractor reads mdoc', async (t) => {
  const words = mdocKeywords(
    ['.It Ic local prefix Ar address', '.Cm pass | block', '.Op Cm in | out', '.Ic add ,', '.Ar notakeyword', '.\\" .Ic comment'].join('\n'),
  );
  t.same([...words].sort(), ['add', 'block', 'in', 'local', 'out', 'pass', 'prefix']);
});

t.test('every reserved and extension word is documented in vm.conf.5', async (t) => {
  t.ok(existsSync(manPage), `${manPage} exists`);
  const documented = mdocKeywords(readFileSync(manPage, 'utf8'));
  t.ok(KEYWORDS.length > 0, 'KEYWORDS is not empty');
  for (const [list, words] of [['KEYWORDS', KEYWORDS], ['EXTENSION_WORDS', EXTENSION_WORDS]] as const) {
    const missing = words.filter((w) => !documented.has(w));
    t.same(missing, [], `every word of ${list} appears in vm.conf.5 as .Ic or .Cm (missing: ${missing.join(' ') || 'none'})`);
  }
});

t.test('mandoc -T lint reports no warnings or errors', async (t) => {
  const r = await execa('mandoc', ['-T', 'lint', '-W', 'warning', manPage], { reject: false, all: true });
  if (r.code === 'ENOENT') {
    t.fail('mandoc is not installed: run share/setup (or apt-get install mandoc)');
    return;
  }
  // Only messages about the page count: mandoc also complains about its own whatis database.
  const problems = (r.all ?? '').split('\n').filter((l) => l.includes('vm.conf.5:'));
  t.same(problems, [], 'no WARNING, ERROR or UNSUPP messages');
  const text = await execa('mandoc', ['-T', 'utf8', manPage], { reject: false });
  t.equal(text.exitCode, 0, 'mandoc -T utf8 renders the page');
  // Strip the overstrikes (X\bX for bold, _\bX for underline) of terminal output.
  const plain = text.stdout.replace(/.\x08/g, '');
  for (const section of ['GLOBAL CONFIGURATION', 'VM CONFIGURATION', 'FILTER RULES', 'SWITCH CONFIGURATION', 'LOCAL INTERFACES']) {
    t.match(plain, new RegExp(`^${section}$`, 'm'), `the rendered page has ${section}`);
  }
});

t.test('the example configuration passes vmd -n', async (t) => {
  t.ok(existsSync(example), `${example} exists`);
  if (!existsSync(guestKernel)) {
    t.fail(`${guestKernel} is missing; the example boots it: run share/guest/build build/guest (share/setup does)`);
    return;
  }
  // From the repository root, as the README does: the example's relative paths resolve against the cwd.
  const r = await execa(process.execPath, [vmdEntry, '-n', '-f', 'share/examples/vm.conf'], {
    cwd: packageRoot,
    reject: false,
    all: true,
  });
  t.equal((r.all ?? '').trim(), 'configuration OK', 'vmd -n prints only configuration OK');
  t.equal(r.exitCode, 0, 'vmd -n exits 0');
});
