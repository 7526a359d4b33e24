// Tests for `vmctl create`: option parsing message by message against OpenBSD's ctl_create()/ctl_convert(), and real
// images made with qemu-img in a temp directory (formats, sizes, overlays, conversion, progress, nothing left behind).
import t from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { execFileSync } from 'node:child_process';
import { CREATE_USAGE, createCommand, MissingSizeError, parseCreate, parseDiskType, type CreateArgs } from '../../vmctl/create.js';
import type { Context } from '../../vmctl/command.js';
import { CliError, UsageError } from '../../vmctl/errors.js';
import { captureStream } from './harness.js';

const MIB = 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), 'vmctl-create-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

/** The usage line main() prints for a UsageError, as it will once create is registered. */
const USAGE_LINE = `usage:\tvmctl [-v] create ${CREATE_USAGE}\n`;

/** Runs the command in-process in `cwd` as main() would: thrown errors become `vmctl: …` or the usage, and exit 1. */
async function run(args: string[], opts: { cwd?: string; tty?: boolean } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = captureStream();
  const err = captureStream();
  if (opts.tty === true) Object.assign(err.stream, { isTTY: true, columns: 80 });
  const ctx: Context = {
    json: false,
    verbose: 0,
    cwd: opts.cwd ?? dir,
    env: process.env,
    stdin: new PassThrough() as unknown as NodeJS.ReadStream,
    stdout: out.stream,
    stderr: err.stream,
    connect: () => Promise.reject(new Error('create must not connect to vmd')),
  };
  let code: number;
  try {
    code = await createCommand.run(args, ctx);
  } catch (e) {
    if (e instanceof UsageError) err.stream.write(USAGE_LINE);
    else err.stream.write(`vmctl: ${e instanceof Error ? e.message : String(e)}\n`);
    code = 1;
  }
  return { code, stdout: out.text(), stderr: err.text() };
}

/** `qemu-img info --output=json` of an image in the temp directory. */
function info(name: string): { format: string; 'virtual-size': number; 'backing-filename'?: string; 'full-backing-filename'?: string; 'backing-filename-format'?: string } {
  return JSON.parse(execFileSync('qemu-img', ['info', '-U', '--output=json', join(dir, name)], { encoding: 'utf8' }));
}

/** parseCreate with warnings collected; throws as the command would. */
function parse(args: string[], cwd = dir): { parsed: CreateArgs; warnings: string[] } {
  const warnings: string[] = [];
  const parsed = parseCreate(args, { cwd, warn: (m) => warnings.push(m) });
  return { parsed, warnings };
}

t.test('the command and its usage', async (t) => {
  t.equal(createCommand.name, 'create');
  t.equal(createCommand.usage, '[-b base | -i disk] [-s size] disk');
  t.equal(CREATE_USAGE, createCommand.usage);
});

t.test('parseDiskType: prefix, then qcow2 signature, then extension, else raw', async (t) => {
  const sub = join(dir, 'types');
  mkdirSync(sub);
  writeFileSync(join(sub, 'sig.img'), Buffer.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]));
  writeFileSync(join(sub, 'plain.qcow2'), 'not qcow2 at all');
  t.same(parseDiskType('raw:x.qcow2', sub), { path: 'x.qcow2', format: 'raw' });
  t.same(parseDiskType('qcow2:x.raw', sub), { path: 'x.raw', format: 'qcow2' });
  t.same(parseDiskType('sig.img', sub), { path: 'sig.img', format: 'qcow2' }, 'the signature wins over a missing extension');
  t.same(parseDiskType('plain.qcow2', sub), { path: 'plain.qcow2', format: 'qcow2' }, 'no signature: the extension');
  t.same(parseDiskType('new.QCOW2', sub), { path: 'new.QCOW2', format: 'qcow2' }, 'extension in any case');
  t.same(parseDiskType('new.Raw', sub), { path: 'new.Raw', format: 'raw' });
  t.same(parseDiskType('new.img', sub), { path: 'new.img', format: 'raw' });
  t.same(parseDiskType('noext', sub), { path: 'noext', format: 'raw' });
  t.same(parseDiskType('dir.qcow2/disk', sub), { path: 'dir.qcow2/disk', format: 'raw' }, 'the extension is the last dot of the path');
});

t.test('parseCreate: options, sizes and checks in ctl_create() order', async (t) => {
  t.same(parse(['-s', '64M', 'a.qcow2']), {
    parsed: { disk: 'a.qcow2', format: 'qcow2', base: undefined, input: undefined, size: 64 * MIB }, warnings: [],
  });
  t.same(parse(['-s', '100.5M', 'x.raw']).warnings, ['disk size rounded to 100M']);
  t.equal(parse(['-s', '100.5M', 'x.raw']).parsed.size, 100 * MIB, 'rounded down to MiB');
  t.equal(parse(['-s', '1G', 'x.raw']).parsed.size, 1024 * MIB);
  t.same(parse(['-b', 'a.qcow2', 'b.qcow2']).parsed, { disk: 'b.qcow2', format: 'qcow2', base: 'a.qcow2', input: undefined, size: undefined });
  t.same(parse(['-i', 'b.qcow2', 'c.raw']).parsed, { disk: 'c.raw', format: 'raw', base: undefined, input: 'b.qcow2', size: undefined });
  t.same(parse(['-s', '1M', 'qcow2:p.img']).parsed.format, 'qcow2');
  t.same(parse(['-s', '1M', 'raw:p.qcow2']).parsed, { disk: 'p.qcow2', format: 'raw', base: undefined, input: undefined, size: MIB });
  t.equal(parse(['-s', '1M', '-s', '2M', 'x.raw']).parsed.size, 2 * MIB, 'the last -s counts, as getopt');

  const fails = (args: string[], message: string) => t.throws(() => parse(args), new CliError(message), args.join(' '));
  fails(['-s', '0', 'q.raw'], 'disk size must be at least 1MB');
  fails(['-s', '1023K', 'q.raw'], 'disk size must be at least 1MB');
  fails(['-s', 'lots', 'q.raw'], 'invalid disk size: lots: Invalid argument');
  fails(['-s', '8E', 'q.raw'], 'invalid disk size: 8E: Numerical result out of range');
  fails(['-b', 'a.qcow2', 'y.raw'], 'base images require qcow2 disk format');
  fails(['-b', 'a.qcow2', 'raw:y.qcow2'], 'base images require qcow2 disk format');
  fails(['-b', 'a.qcow2', '-i', 'a.qcow2', 'z.qcow2'], 'conflicting -b and -i arguments');
  fails(['-b', 'a.qcow2', '-i', 'a.qcow2', 'z.raw'], 'conflicting -b and -i arguments');
  fails(['-s', '0', '-b', 'a', '-i', 'b', 'z.raw'], 'disk size must be at least 1MB');

  t.throws(() => parse(['q.raw']), MissingSizeError);
  const missing = ((): unknown => {
    try {
      parse(['raw:q.qcow2']);
    } catch (e) {
      return e;
    }
    return null;
  })();
  t.ok(missing instanceof UsageError, 'a missing size is a usage error');
  t.equal((missing as MissingSizeError | null)?.disk, 'q.qcow2', 'it names the disk without its prefix');
  for (const args of [[], ['a.raw', 'b.raw'], ['-x', 'a.raw'], ['-s'], ['-s', '1M']]) {
    t.throws(() => parse(args), UsageError, `usage for ${JSON.stringify(args)}`);
  }
});

t.test('create -s 64M a.qcow2; -b a.qcow2 b.qcow2; -i b.qcow2 c.raw', async (t) => {
  t.same(await run(['-s', '64M', 'a.qcow2']), { code: 0, stdout: '', stderr: 'vmctl: qcow2 imagefile created\n' });
  t.equal(info('a.qcow2').format, 'qcow2');
  t.equal(info('a.qcow2')['virtual-size'], 64 * MIB);
  t.equal(statSync(join(dir, 'a.qcow2')).mode & 0o777, 0o600, 'mode 0600, as OpenBSD');

  t.same(await run(['-b', 'a.qcow2', 'b.qcow2']), { code: 0, stdout: '', stderr: 'vmctl: qcow2 imagefile created\n' });
  const b = info('b.qcow2');
  t.equal(b.format, 'qcow2');
  t.equal(b['backing-filename'], 'a.qcow2', 'the base is recorded as given');
  t.equal(b['backing-filename-format'], 'qcow2');
  t.equal(b['virtual-size'], 64 * MIB, 'the overlay has the base size');

  t.same(await run(['-i', 'b.qcow2', 'c.raw']), { code: 0, stdout: '', stderr: 'vmctl: raw imagefile created\n' }, 'no progress on a pipe');
  t.equal(info('c.raw').format, 'raw');
  t.equal(info('c.raw')['virtual-size'], 64 * MIB);
  t.equal(statSync(join(dir, 'c.raw')).mode & 0o777, 0o600);
});

t.test('sizes: rounding, a matching -s with -b, and raw images', async (t) => {
  t.same(await run(['-s', '100.5M', 'x.raw']), { code: 0, stdout: '', stderr: 'vmctl: disk size rounded to 100M\nvmctl: raw imagefile created\n' });
  t.equal(statSync(join(dir, 'x.raw')).size, 100 * MIB);
  t.equal(info('x.raw').format, 'raw');
  t.same(await run(['-b', 'a.qcow2', '-s', '64M', 'b2.qcow2']), { code: 0, stdout: '', stderr: 'vmctl: qcow2 imagefile created\n' });
  t.equal(info('b2.qcow2')['backing-filename'], 'a.qcow2');
  t.same(await run(['-s', '1M', 'noext']), { code: 0, stdout: '', stderr: 'vmctl: raw imagefile created\n' }, 'no extension: raw');
  t.same(await run(['-s', '2M', 'UP.QCOW2']), { code: 0, stdout: '', stderr: 'vmctl: qcow2 imagefile created\n' });
  t.equal(info('UP.QCOW2').format, 'qcow2');
});

t.test('raw: and qcow2: prefixes', async (t) => {
  t.same(await run(['-s', '8M', 'qcow2:p.img']), { code: 0, stdout: '', stderr: 'vmctl: qcow2 imagefile created\n' });
  t.equal(info('p.img').format, 'qcow2');
  t.same(await run(['-s', '8M', 'raw:r.qcow2']), { code: 0, stdout: '', stderr: 'vmctl: raw imagefile created\n' });
  t.equal(info('r.qcow2').format, 'raw');
  t.equal(statSync(join(dir, 'r.qcow2')).size, 8 * MIB);
  t.notOk(existsSync(join(dir, 'raw:r.qcow2')), 'the prefix is not part of the file name');
  t.same(await run(['-b', 'p.img', 'qcow2:p-over.img']), { code: 0, stdout: '', stderr: 'vmctl: qcow2 imagefile created\n' });
  t.equal(info('p-over.img')['backing-filename-format'], 'qcow2', 'a base without .qcow2 is known by its signature');
  t.same(await run(['-b', 'raw:r.qcow2', 'p-over-raw.qcow2']), { code: 0, stdout: '', stderr: 'vmctl: qcow2 imagefile created\n' });
  t.equal(info('p-over-raw.qcow2')['backing-filename'], 'r.qcow2', 'a base prefix names its format and is not recorded');
  t.equal(info('p-over-raw.qcow2')['backing-filename-format'], 'raw');
  t.same(await run(['-i', 'p.img', 'raw:p-copy.img']), { code: 0, stdout: '', stderr: 'vmctl: raw imagefile created\n' });
  t.equal(info('p-copy.img').format, 'raw');
});

t.test('-b: raw bases, relative paths resolved next to the overlay', async (t) => {
  t.same(await run(['-b', 'x.raw', 'xr.qcow2']), { code: 0, stdout: '', stderr: 'vmctl: qcow2 imagefile created\n' });
  t.equal(info('xr.qcow2')['backing-filename-format'], 'raw', '-F names the base format');
  t.equal(info('xr.qcow2')['virtual-size'], 100 * MIB);

  mkdirSync(join(dir, 'sub'));
  t.same(await run(['-s', '4M', 'sub/base.qcow2']), { code: 0, stdout: '', stderr: 'vmctl: qcow2 imagefile created\n' });
  t.same(await run(['-b', 'base.qcow2', 'sub/over.qcow2']), { code: 0, stdout: '', stderr: 'vmctl: qcow2 imagefile created\n' },
    'base.qcow2 is found in sub/, not in the cwd');
  const o = info('sub/over.qcow2');
  t.equal(o['backing-filename'], 'base.qcow2');
  t.equal(o['full-backing-filename'], join(dir, 'sub', 'base.qcow2'));
  const r = await run(['-b', 'sub/base.qcow2', 'sub/wrong.qcow2']);
  t.same(r, { code: 1, stdout: '', stderr: `vmctl: could not open base image ${join(dir, 'sub', 'sub', 'base.qcow2')}: No such file or directory\n` });
  t.notOk(existsSync(join(dir, 'sub', 'wrong.qcow2')));

  t.same(await run(['-s', '1M', 'co:lon.qcow2']), { code: 0, stdout: '', stderr: 'vmctl: qcow2 imagefile created\n' });
  t.same(await run(['-b', 'co:lon.qcow2', 'colon-over.qcow2']), { code: 0, stdout: '', stderr: 'vmctl: qcow2 imagefile created\n' },
    'a colon in a relative base is not read as a qemu protocol');
  t.equal(info('colon-over.qcow2')['backing-filename'], './co:lon.qcow2', 'recorded with ./ in front');
  t.equal(info('colon-over.qcow2')['virtual-size'], MIB, 'and qemu-img finds it');
});

t.test('-i: grow with -s, never shrink, round up to MiB', async (t) => {
  t.same(await run(['-i', 'a.qcow2', '-s', '128M', 'grown.qcow2']), { code: 0, stdout: '', stderr: 'vmctl: qcow2 imagefile created\n' });
  t.equal(info('grown.qcow2')['virtual-size'], 128 * MIB);
  t.same(await run(['-i', 'a.qcow2', '-s', '96M', 'grown.raw']), { code: 0, stdout: '', stderr: 'vmctl: raw imagefile created\n' });
  t.equal(statSync(join(dir, 'grown.raw')).size, 96 * MIB);
  t.same(await run(['-i', 'a.qcow2', '-s', '64M', 'same.raw']), { code: 0, stdout: '', stderr: 'vmctl: raw imagefile created\n' });
  t.equal(statSync(join(dir, 'same.raw')).size, 64 * MIB);

  writeFileSync(join(dir, 'odd.raw'), '');
  truncateSync(join(dir, 'odd.raw'), MIB + MIB / 2);
  t.same(await run(['-i', 'odd.raw', 'odd-copy.qcow2']), {
    code: 0, stdout: '', stderr: 'vmctl: destination size rounded to 2 megabytes\nvmctl: qcow2 imagefile created\n',
  });
  t.equal(info('odd-copy.qcow2')['virtual-size'], 2 * MIB);
});

t.test('-i on a terminal draws a progress bar from qemu-img -p', async (t) => {
  const r = await run(['-i', 'x.raw', 'tty.qcow2'], { tty: true });
  t.equal(r.code, 0);
  t.match(r.stderr, /^\rx\.raw \|[= ]+\|   0%/, 'starts at 0%');
  t.match(r.stderr, /\rx\.raw \|=+\| 100%\nvmctl: qcow2 imagefile created\n$/, 'ends at 100% on its own line');
  t.equal(info('tty.qcow2')['virtual-size'], 100 * MIB);
});

t.test('bad input: OpenBSD messages, exit 1, nothing left behind', async (t) => {
  const before = new Set(readdirSync(dir));
  const cases: [string[], string][] = [
    [['-b', 'a.qcow2', 'new-overlay.raw'], 'vmctl: base images require qcow2 disk format\n'],
    [['-b', 'a.qcow2', '-i', 'a.qcow2', 'new-both.qcow2'], 'vmctl: conflicting -b and -i arguments\n'],
    [['-s', '0', 'new-zero.raw'], 'vmctl: disk size must be at least 1MB\n'],
    [['-s', '512K', 'new-small.qcow2'], 'vmctl: disk size must be at least 1MB\n'],
    [['-s', 'big', 'new-big.raw'], 'vmctl: invalid disk size: big: Invalid argument\n'],
    [['new-nosize.raw'], `could not create new-nosize.raw: missing size argument\n${USAGE_LINE}`],
    [['qcow2:new-nosize.img'], `could not create new-nosize.img: missing size argument\n${USAGE_LINE}`],
    [['-s', '64M', 'a.qcow2'], 'vmctl: create imagefile operation failed: File exists\n'],
    [['-s', '64M', 'x.raw'], 'vmctl: create imagefile operation failed: File exists\n'],
    [['-b', 'a.qcow2', 'b.qcow2'], 'vmctl: create imagefile operation failed: File exists\n'],
    [['-i', 'a.qcow2', 'c.raw'], 'vmctl: failed to create destination image file: File exists\n'],
    [['-b', 'a.qcow2', '-s', '32M', 'new-mismatch.qcow2'], 'vmctl: base size does not match requested size\n'],
    [['-i', 'a.qcow2', '-s', '32M', 'new-shrink.raw'], 'vmctl: size cannot be smaller than input disk size\n'],
    [['-i', 'missing.qcow2', 'new-nosrc.raw'], 'vmctl: failed to open source image file: No such file or directory\n'],
    [['-b', 'missing.qcow2', 'new-nobase.qcow2'], `vmctl: could not open base image ${join(dir, 'missing.qcow2')}: No such file or directory\n`],
    [['-s', '1M', 'no-such-dir/new.raw'], 'vmctl: create imagefile operation failed: No such file or directory\n'],
    [[], USAGE_LINE],
    [['-s', '1M'], USAGE_LINE],
    [['-s', '1M', 'one.raw', 'two.raw'], USAGE_LINE],
  ];
  for (const [args, stderr] of cases) {
    t.same(await run(args), { code: 1, stdout: '', stderr }, `create ${args.join(' ')}`);
  }
  t.same(new Set(readdirSync(dir)), before, 'no file was created or removed');
  t.equal(info('a.qcow2')['virtual-size'], 64 * MIB, 'an existing target is untouched');
  t.equal(statSync(join(dir, 'x.raw')).size, 100 * MIB);
});

t.test('a qemu-img failure removes the half-made target', async (t) => {
  // The qcow2 signature and nothing after it: detected as qcow2, rejected by qemu-img.
  writeFileSync(join(dir, 'broken.qcow2'), Buffer.concat([Buffer.from([0x51, 0x46, 0x49, 0xfb]), Buffer.alloc(60)]));
  const r = await run(['-b', 'broken.qcow2', 'from-broken.qcow2']);
  t.equal(r.code, 1);
  t.match(r.stderr, /^vmctl: create imagefile operation failed: .+\n$/);
  t.notOk(existsSync(join(dir, 'from-broken.qcow2')), 'no overlay left behind');

  const c = await run(['-i', 'broken.qcow2', 'conv-broken.raw']);
  t.equal(c.code, 1);
  t.match(c.stderr, /^vmctl: failed to convert image: .+\n$/);
  t.notOk(existsSync(join(dir, 'conv-broken.raw')), 'no partial copy left behind');
});
