// Tests for vmd/args: vmd(8)'s command line `vmd [-dnv] [-D macro=value] [-f file]`, parsed the way getopt(3) does.
// Bundled flags, attached and separate option arguments, macro definitions, the usage string, and the internal --role.

import t from 'tap';
import { parseVmdArgs, USAGE, type VmdOptions } from '../../vmd/args.js';
import { DEFAULT_CONFIG } from '../../share/paths.js';

const defaults: VmdOptions = { debug: false, configTest: false, verbose: 0, macros: {}, file: DEFAULT_CONFIG, role: null };

/** Parse, insisting on success. */
function parse(argv: string[]): VmdOptions {
  const got = parseVmdArgs(argv);
  if (typeof got === 'string') throw new Error(`unexpected usage error for ${JSON.stringify(argv)}`);
  return got;
}

/** Parse with stderr captured: `-D` without `=` warns there and goes on, as vmd's main() does. */
function parseQuiet(argv: string[]): { got: VmdOptions | string; stderr: string } {
  const write = process.stderr.write;
  let stderr = '';
  process.stderr.write = ((chunk: string | Uint8Array): boolean => {
    stderr += String(chunk);
    return true;
  }) as typeof process.stderr.write;
  try {
    return { got: parseVmdArgs(argv), stderr };
  } finally {
    process.stderr.write = write;
  }
}

t.test('no arguments: the defaults', async (t) => {
  t.same(parse([]), defaults);
  t.equal(DEFAULT_CONFIG, '/etc/vm.conf');
});

t.test('single flags', async (t) => {
  t.same(parse(['-d']), { ...defaults, debug: true });
  t.same(parse(['-n']), { ...defaults, configTest: true });
  t.same(parse(['-v']), { ...defaults, verbose: 1 });
  t.same(parse(['-d', '-n', '-v', '-v']), { ...defaults, debug: true, configTest: true, verbose: 2 });
});

t.test('bundled flags', async (t) => {
  t.same(parse(['-dvv']), { ...defaults, debug: true, verbose: 2 });
  t.same(parse(['-vvv']), { ...defaults, verbose: 3 });
  t.same(parse(['-dnv']), { ...defaults, debug: true, configTest: true, verbose: 1 });
  t.same(parse(['-vd', '-v']), { ...defaults, debug: true, verbose: 2 });
  // An option taking an argument ends the bundle: the rest of the word is its argument.
  t.same(parse(['-dfmy.conf']), { ...defaults, debug: true, file: 'my.conf' });
  t.same(parse(['-nvf', 'x.conf']), { ...defaults, configTest: true, verbose: 1, file: 'x.conf' });
  t.same(parse(['-vDa=b']), { ...defaults, verbose: 1, macros: { a: 'b' } });
  t.same(parse(['-fdv']), { ...defaults, file: 'dv' }, '-fdv is the file "dv", not more flags');
});

t.test('-f FILE and -fFILE', async (t) => {
  t.same(parse(['-f', '/tmp/vm.conf']), { ...defaults, file: '/tmp/vm.conf' });
  t.same(parse(['-f/tmp/vm.conf']), { ...defaults, file: '/tmp/vm.conf' });
  t.same(parse(['-f', 'relative.conf']), { ...defaults, file: 'relative.conf' }, 'relative paths are kept as given');
  t.same(parse(['-f', '-d']), { ...defaults, file: '-d' }, 'the next word is the argument even when it looks like a flag');
  t.same(parse(['-f', 'a', '-f', 'b']), { ...defaults, file: 'b' }, 'the last -f wins');
  t.same(parse(['-f', '']), { ...defaults, file: '' }, 'an empty argument is passed on (the config loader complains)');
  t.equal(parse(['-n', '-f', 'x']).configTest, true);
});

t.test('-D macro=value', async (t) => {
  t.same(parse(['-D', 'a=b']).macros, { a: 'b' });
  t.same(parse(['-Da=b']).macros, { a: 'b' });
  // Split at the last '=', as vmd's cmdline_symset does with strrchr.
  t.same(parse(['-D', 'a=b=c']).macros, { 'a=b': 'c' });
  t.same(parse(['-Da==']).macros, { 'a=': '' });
  t.same(parse(['-D', 'a=']).macros, { a: '' }, 'an empty value is a value');
  t.same(parse(['-D', 'ram=1G', '-D', 'cpus=2']).macros, { ram: '1G', cpus: '2' });
  t.same(parse(['-D', 'a=1', '-D', 'a=2']).macros, { a: '2' }, 'a later definition replaces an earlier one');
  t.same(parse(['-D', 'path=/a b/c']).macros, { path: '/a b/c' }, 'spaces are kept');
  t.same(parse(['-D', '-d=x']).macros, { '-d': 'x' }, 'the next word is the argument');
});

t.test('-D without a usable "=" warns and goes on', async (t) => {
  for (const bad of ['noequals', '=value']) {
    const { got, stderr } = parseQuiet(['-D', bad, '-d']);
    t.notOk(typeof got === 'string', `${bad}: not a usage error`);
    if (typeof got !== 'string') {
      t.same(got.macros, {}, `${bad}: no macro`);
      t.equal(got.debug, true, `${bad}: later flags still parsed`);
    }
    t.equal(stderr, `vmd: could not parse macro definition ${bad}\n`);
  }
});

t.test('usage string on bad input', async (t) => {
  t.equal(USAGE, 'usage: vmd [-dnv] [-D macro=value] [-f file]');
  const bad: string[][] = [
    ['-x'], ['-dx'], ['-h'], ['-V'], ['-P', 'vmm'], ['-p'],
    ['-f'], ['-d', '-f'], ['-D'], ['-vD'],
    ['file.conf'], ['-d', 'extra'], ['-'], ['--role'], ['--help'], ['--verbose'], ['--', 'x'],
  ];
  for (const argv of bad) t.equal(parseVmdArgs(argv), USAGE, JSON.stringify(argv));
});

t.test('-- ends the options', async (t) => {
  t.same(parse(['--']), defaults);
  t.same(parse(['-d', '--']), { ...defaults, debug: true });
  t.equal(parseVmdArgs(['-d', '--', '-v']), USAGE, 'operands after -- are still not allowed');
});

t.test('--role for the re-executed children', async (t) => {
  t.same(parse(['--role', 'vmm']), { ...defaults, role: 'vmm' });
  t.same(parse(['--role', 'control', '-v']), { ...defaults, role: 'control', verbose: 1 });
  t.same(parse(['-dvv', '--role', 'vmm', '-f', '/x.conf']), { ...defaults, debug: true, verbose: 2, role: 'vmm', file: '/x.conf' });
  t.same(parse(['--role', 'bogus']), { ...defaults, role: 'bogus' }, 'the entry point, not the parser, rejects unknown roles');
  t.equal(parseVmdArgs(['--role']), USAGE, '--role needs a value');
  t.equal(parseVmdArgs(['-v', '--role']), USAGE);
});

t.test('the argument vector is not modified', async (t) => {
  const argv = ['-dvv', '-D', 'a=b=c', '-f', 'x'];
  const copy = [...argv];
  parse(argv);
  t.same(argv, copy);
});
