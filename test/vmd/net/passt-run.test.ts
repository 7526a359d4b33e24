// Tests for vmd/net/passt-run with a real passt in a namespace of the test's own: it listens before it returns,
// a passt no QEMU ever connected to stays (the orphan a crash can leave) until the run directory's sweep kills it,
// and a failure says passt's own words.
import t from 'tap';
import { execa } from 'execa';
import { chownSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../../share/paths.js';

const NOBODY = 65534;
const runModule = join(packageRoot, 'dist', 'vmd', 'net', 'passt-run.js');

/** Runs `body` (an async function's text, given passtStart, passtStopAll, passtFiles and dir) in the namespace. */
async function inNetns(ns: string, dir: string, body: string): Promise<string> {
  const script = `import { passtStart, passtStopAll, passtFiles } from ${JSON.stringify(runModule)};
    const dir = ${JSON.stringify(dir)};
    try { console.log(JSON.stringify(await (async () => { ${body} })())); } catch (e) { console.log(JSON.stringify({ error: e.message, hint: e.hint })); }`;
  const r = await execa('ip', ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', script], { reject: false, timeout: 60_000 });
  return r.stdout.trim();
}

t.test('a passt that no guest owns is found by its pid file and killed', async (t) => {
  const ns = `vmdpt-${process.pid}`;
  const dir = mkdtempSync(join(tmpdir(), 'vmd-passt-run-'));
  chownSync(dir, NOBODY, NOBODY);
  await execa('ip', ['netns', 'add', ns]);
  t.teardown(async () => {
    await execa('ip', ['netns', 'del', ns], { reject: false });
    rmSync(dir, { recursive: true, force: true });
  });
  const spec = `{ ...passtFiles(dir, 0), config: { dev: null, address: '10.0.2.15/24' }, forwards: [] }`;
  const opts = `{ vm: 'v', index: 0, identity: { uid: ${NOBODY}, gid: ${NOBODY} }, cwd: dir }`;

  const failed = JSON.parse(await inNetns(ns, dir, `return await passtStart(${spec}, ${opts});`)) as { error: string; hint?: string };
  t.match(failed.error, /^vm "v": interface 0: passt: .*External interface not usable/, 'no outward interface: passt says so');
  t.match(failed.hint ?? '', /default route/, 'with a hint');

  await execa('ip', ['-n', ns, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up0p']);
  for (const l of ['up0', 'up0p', 'lo']) await execa('ip', ['-n', ns, 'link', 'set', l, 'up']);
  await execa('ip', ['-n', ns, 'address', 'add', '10.98.0.5/24', 'dev', 'up0']);
  await execa('ip', ['-n', ns, 'route', 'add', 'default', 'via', '10.98.0.1']);
  const pid = JSON.parse(await inNetns(ns, dir, `return await passtStart(${spec}, ${opts});`)) as number;
  t.type(pid, 'number', 'started, listening');
  const status = (): string => { try { return readFileSync(`/proc/${pid}/status`, 'utf8'); } catch { return ''; } };
  t.match(status(), new RegExp(`Uid:\\s+${NOBODY}\\s`), 'runs as the unprivileged user');
  await new Promise((r) => setTimeout(r, 500));
  t.not(status(), '', 'with no QEMU to serve, it waits: an orphan if vmd died now');
  t.equal(JSON.parse(await inNetns(ns, dir, 'return passtStopAll(dir);')), 1, 'the sweep of its run directory kills it');
  for (let i = 0; i < 50 && status() !== '' && !/State:\s+Z/.test(status()); i++) await new Promise((r) => setTimeout(r, 100));
  t.ok(status() === '' || /State:\s+Z/.test(status()), 'gone');
  t.equal(JSON.parse(await inNetns(ns, dir, 'return passtStopAll(dir);')), 0, 'a second sweep finds nothing');
});
