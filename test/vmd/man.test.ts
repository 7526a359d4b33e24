// Keeps vmd(8) in step with vmd: every flag of the usage line, every signal the parent handles, every VMD_ environment
// variable the daemon reads and every file it keeps is documented in share/man/man8/vmd.8, and mandoc lints the page clean.

import t from 'tap';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { DEFAULT_CONFIG, DEFAULT_SOCKET, DEFAULT_STATE_DIR, packageRoot } from '../../share/paths.js';
import { USAGE } from '../../vmd/args.js';

const manPage = join(packageRoot, 'share', 'man', 'man8', 'vmd.8');
const distVmd = join(packageRoot, 'dist', 'vmd');

/** What the brief and OpenBSD's page promise, whatever the code scan below finds. */
const FLAGS = ['d', 'D', 'f', 'n', 'v'];
const SIGNALS = ['SIGHUP', 'SIGTERM', 'SIGINT'];
const ENVIRONMENT = ['VMD_SOCKET', 'VMD_STATE_DIR', 'VMD_USER', 'VMD_STOP_TIMEOUT'];
const RUN_FILES = ['qmp.sock', 'console'];
const FILES = [
  DEFAULT_CONFIG,
  DEFAULT_SOCKET,
  `${DEFAULT_STATE_DIR}/vmd.db`,
  `${DEFAULT_STATE_DIR}/vmd.log`,
  `${DEFAULT_STATE_DIR}/log/id/qemu.log`,
  ...RUN_FILES.map((f) => `${DEFAULT_STATE_DIR}/run/id/${f}`),
];
const SECTIONS = ['NAME', 'SYNOPSIS', 'DESCRIPTION', 'OPTIONS', 'SIGNALS', 'ENVIRONMENT', 'FILES', 'CONTROL PROTOCOL', 'SEE ALSO',
  'STANDARDS', 'HISTORY', 'CAVEATS'];

const source = existsSync(manPage) ? readFileSync(manPage, 'utf8') : '';

/** Macro lines of one `.Sh` section, each split into words (quotes group; `\-` and `\&` unescaped). */
function sectionMacros(name: string): string[][] {
  const out: string[][] = [];
  let inside = false;
  for (const line of source.split('\n')) {
    if (!line.startsWith('.') || line.startsWith('.\\"')) continue;
    const words = (line.slice(1).match(/"[^"]*"|\S+/g) ?? []).map((w) => w.replace(/^"|"$/g, '').replace(/\\-/g, '-').replace(/\\&/g, ''));
    if (words[0] === 'Sh') {
      inside = words.slice(1).join(' ') === name;
      continue;
    }
    if (inside) out.push(words);
  }
  return out;
}

/** The words given to `macro` on the `.It` lines of a section: `.It Fl d` gives `d`, `.It Ev VMD_USER` gives VMD_USER. */
function itemsOf(section: string, macro: string): Set<string> {
  const items = new Set<string>();
  for (const words of sectionMacros(section)) {
    if (words[0] === 'It' && words[1] === macro && words[2] !== undefined) items.add(words[2]);
  }
  return items;
}

/** The flags of a usage line: each letter of `[-dnv]`, and `-D`, `-f`. */
function usageFlags(usage: string): string[] {
  const flags: string[] = [];
  for (const m of usage.matchAll(/(?<![\w-])-([A-Za-z]+)/g)) flags.push(...(m[1] as string).split(''));
  return flags;
}

/** Every string a regular expression's first group matches in the compiled daemon (dist/vmd/*.js). */
/** Every compiled daemon module, relative to dist/vmd (the parent and vmm are folders of modules). */
function daemonFiles(): string[] {
  return (readdirSync(distVmd, { recursive: true }) as string[]).filter((f) => f.endsWith('.js'));
}

function scanDaemon(re: RegExp, files: string[] = daemonFiles()): Set<string> {
  const found = new Set<string>();
  for (const f of files) {
    const text = readFileSync(join(distVmd, f), 'utf8');
    for (const m of text.matchAll(re)) found.add(m[1] as string);
  }
  return found;
}

/** The page as mandoc renders it, overstrike removed, and the text of one section of that. */
let rendered: string | null = null;
async function renderedSection(name: string): Promise<string> {
  if (rendered === null) {
    const r = await execa('mandoc', ['-T', 'ascii', manPage], { reject: false });
    rendered = r.exitCode === 0 ? r.stdout.replace(/.\x08/g, '') : '';
  }
  const lines = rendered.split('\n');
  const start = lines.indexOf(name);
  if (start < 0) return '';
  const end = lines.findIndex((l, i) => i > start && /^[A-Z][A-Z ]*$/.test(l));
  return lines.slice(start + 1, end < 0 ? undefined : end).join('\n');
}

t.test('the page exists where packageRoot says', async (t) => {
  t.ok(existsSync(manPage), manPage);
  t.match(source, /^\.Dt VMD 8$/m, '.Dt VMD 8');
  t.match(source, /^\.Nm vmd$/m, '.Nm vmd');
});

t.test('every section is there', async (t) => {
  const present = source.split('\n').filter((l) => l.startsWith('.Sh ')).map((l) => l.slice(4).replace(/"/g, '').trim());
  for (const s of SECTIONS) t.ok(present.includes(s), `.Sh ${s}`);
});

t.test('the synopsis is the usage line', async (t) => {
  const synopsis = (await renderedSection('SYNOPSIS')).replace(/\s+/g, ' ').trim();
  t.equal(synopsis, USAGE.replace(/^usage: /, ''));
});

t.test('every flag is documented under OPTIONS, and no other', async (t) => {
  const documented = itemsOf('OPTIONS', 'Fl');
  const fromUsage = usageFlags(USAGE);
  t.same([...fromUsage].sort(), [...FLAGS].sort(), `the usage line has exactly ${FLAGS.join(' ')}`);
  for (const f of new Set([...FLAGS, ...fromUsage])) t.ok(documented.has(f), `.It Fl ${f}`);
  for (const f of documented) t.ok(fromUsage.includes(f), `-${f} documented and in the usage line`);
});

t.test('every signal is documented under SIGNALS', async (t) => {
  const documented = itemsOf('SIGNALS', 'Dv');
  // The parent is where signals mean something; the child roles only ignore or forward them.
  const handled = scanDaemon(/process\.on\(\s*['"](SIG[A-Z0-9]+)['"]/g, [...daemonFiles().filter((f) => f.startsWith('parent/')), 'vmd.js']);
  t.ok(handled.size > 0, `the parent handles signals (${[...handled].join(' ')})`);
  for (const s of new Set([...SIGNALS, ...handled])) t.ok(documented.has(s), `.It Dv ${s}`);
});

t.test('every environment variable is documented under ENVIRONMENT', async (t) => {
  const documented = itemsOf('ENVIRONMENT', 'Ev');
  const read = scanDaemon(/env(?:\.|\[\s*['"])(VMD_[A-Z0-9_]+)/g);
  const paths = readFileSync(join(packageRoot, 'dist', 'share', 'paths.js'), 'utf8');
  for (const m of paths.matchAll(/env(?:\.|\[\s*['"])(VMD_[A-Z0-9_]+)/g)) read.add(m[1] as string);
  t.ok(read.size > 0, `the daemon reads VMD_ variables (${[...read].join(' ')})`);
  for (const v of new Set([...ENVIRONMENT, ...read])) t.ok(documented.has(v), `.It Ev ${v}`);
});

t.test('every file is documented under FILES', async (t) => {
  const files = (await renderedSection('FILES')).toLowerCase();
  for (const f of FILES) t.ok(files.includes(f.toLowerCase()), f);
  // The names the page gives are the names the daemon uses.
  const literals = scanDaemon(/['"]([\w.-]+\.(?:sock|log|db)|console|run)['"]/g);
  for (const f of [...RUN_FILES, 'vmd.db', 'vmd.log', 'qemu.log', 'run']) t.ok(literals.has(f), `dist/vmd uses "${f}"`);
});

t.test('SEE ALSO', async (t) => {
  const refs = sectionMacros('SEE ALSO').filter((w) => w[0] === 'Xr').map((w) => `${w[1]}(${w[2]})`);
  t.same(refs, ['qemu-system-x86_64(1)', 'setpriv(1)', 'vm.conf(5)', 'tcpdump(8)', 'vmctl(8)']);
});

t.test('mandoc -T lint reports no warnings or errors', async (t) => {
  const r = await execa('mandoc', ['-T', 'lint', '-W', 'warning', manPage], { reject: false, all: true });
  if ((r as { code?: string }).code === 'ENOENT' || r.exitCode === undefined) {
    t.fail('mandoc is not installed: run share/setup (or apt-get install mandoc)');
    return;
  }
  // Only messages about the page count: mandoc also complains about its own whatis database.
  const about = (r.all ?? '').split('\n').filter((l) => l.includes('vmd.8'));
  t.same(about, [], 'no messages');
  t.equal(r.exitCode, 0, 'exit status 0');
});
