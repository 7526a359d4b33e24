// nft runs through libnftables in vmd's process (vmd/native/nft.c) do what the nft process does: the same rules
// loaded, the same listing, the same refusals in the same words, checks that change nothing; in a namespace of the
// test's own, and in vmd's own namespace with the context kept between runs while others change the rules.

import t from 'tap';
import { execa } from 'execa';
import { fileURLToPath } from 'node:url';
import { NFT_RUN_CHECK, NFT_RUN_JSON, nftAvailable, nftRun } from '../../../vmd/native.js';
import { nftApply } from '../../../vmd/net/nft-apply.js';
import { addNetns } from '../../lib/netns.js';

const isRoot = process.getuid?.() === 0;
const skip = !isRoot ? 'needs root' : !nftAvailable() ? 'libnftables.so.1 does not open here' : false;

const SCRIPT = `table inet vmdtest {
\tcounter hits {
\t\tcomment "vm 'a' if0 guard"
\t}

\tchain c {
\t\ttype filter hook input priority 0; policy accept;
\t\tudp dport 53 counter name "hits" drop
\t\tip saddr 10.0.0.0/8 tcp dport { 22, 80 } accept comment "vm 'a' if0 rule 1"
\t}
}
`;
const BAD = 'table inet vmdtest {\n\tchain c {\n\t\tbogus rule\n\t}\n}\n';

async function nftProcess(netns: string, args: string[], input = ''): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const r = await execa('ip', ['netns', 'exec', netns, 'nft', ...args], { input, reject: false });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

t.test('in a namespace: what the nft process does', { skip }, async (t) => {
  const [a, b] = [`vmdt-nft-a-${process.pid}`, `vmdt-nft-b-${process.pid}`];
  await addNetns(a, b);
  t.teardown(async () => {
    for (const n of [a, b]) await execa('ip', ['netns', 'del', n], { reject: false });
  });

  const run = await nftRun(`/run/netns/${a}`, SCRIPT, 0);
  t.same(run, { rc: 0, out: '', err: '' }, 'loaded');
  t.equal((await nftProcess(b, ['-f', '-'], SCRIPT)).exitCode, 0);
  const listed = await Promise.all([a, b].map((n) => nftProcess(n, ['list', 'ruleset'])));
  t.equal(listed[0]!.stdout, listed[1]!.stdout, 'the same ruleset as the nft process loads');
  t.match(listed[0]!.stdout, /udp dport 53 counter name "hits" drop/);

  const json = await nftRun(`/run/netns/${a}`, 'list table inet vmdtest', NFT_RUN_JSON);
  t.equal(json.rc, 0);
  t.equal(json.out.trim(), (await nftProcess(b, ['-j', 'list', 'table', 'inet', 'vmdtest'])).stdout.trim(), 'the same JSON listing');

  // Refusals: the same words, with the line they are about (errors of a buffer would name none).
  const bad = await nftRun(`/run/netns/${a}`, BAD, 0);
  const badProcess = await nftProcess(b, ['-f', '-'], BAD);
  t.not(bad.rc, 0, 'a syntax error is refused');
  const words = (s: string): string => /:(\d+):[\d-]+: (Error: .*)/.exec(s)?.slice(1).join(' ') ?? s;
  t.equal(words(bad.err), words(badProcess.stderr), 'in the words of the nft process, with the line');
  t.match(words(bad.err), /^3 Error: syntax error/);
  const gone = await nftRun(`/run/netns/${a}`, 'delete table inet nosuch\n', 0);
  t.equal(words(gone.err), words((await nftProcess(b, ['-f', '-'], 'delete table inet nosuch\n')).stderr), 'a refusal of the kernel too');

  const check = await nftRun(`/run/netns/${a}`, 'delete table inet vmdtest\n', NFT_RUN_CHECK);
  t.equal(check.rc, 0, 'a check passes');
  t.match((await nftProcess(a, ['list', 'tables'])).stdout, /vmdtest/, 'and changes nothing');

  await t.rejects(nftRun(`/run/netns/vmdt-nft-none-${process.pid}`, SCRIPT, 0), { code: 'ENOENT' }, 'no such namespace');
  t.notOk((await execa('ip', ['netns', 'list'])).stdout.includes(`vmdt-nft-none-${process.pid}`), 'and none made');
});

// Runs in the namespace as vmd runs in its own: one process, the context kept between its runs (`keep`, as a guest's
// start or stop asks).
const child = `
import { nftApply, nftCounters } from ${JSON.stringify(new URL('../../../vmd/net/nft-apply.js', import.meta.url).href)};
import { nftRelease } from ${JSON.stringify(new URL('../../../vmd/native.js', import.meta.url).href)};
import { execFileSync } from 'node:child_process';
const out = [];
await nftApply('add table inet vmdtest\\nadd chain inet vmdtest c\\n', null, { keep: true });
// Someone else changes the rules behind the kept context's back.
execFileSync('nft', ['delete', 'table', 'inet', 'vmdtest']);
await nftApply('add table inet vmdtest\\nadd chain inet vmdtest c\\nadd rule inet vmdtest c counter comment "x"\\n', null, { keep: true });
out.push(execFileSync('nft', ['list', 'chain', 'inet', 'vmdtest', 'c']).toString().includes('comment "x"'));
try { await nftApply('add rule inet vmdtest nosuch counter\\n', null, { keep: true }); out.push('applied'); } catch (e) { out.push(e.message); }
await nftApply('add rule inet vmdtest c counter comment "y"\\n', null, { keep: true });
// Released (as after 10 s without a run), the next run makes a context of its own.
nftRelease();
await nftApply('add rule inet vmdtest c counter comment "z"\\n', null, { keep: true });
out.push(execFileSync('nft', ['list', 'chain', 'inet', 'vmdtest', 'c']).toString().includes('comment "z"'));
out.push(execFileSync('nft', ['list', 'chain', 'inet', 'vmdtest', 'c']).toString().includes('comment "y"'));
await nftApply('delete table inet vmdtest\\n', null, { keep: true });
out.push(execFileSync('nft', ['list', 'tables']).toString().includes('vmdtest'));
console.log(JSON.stringify(out));
`;

t.test('in vmd\'s own namespace: a kept context follows changes made by others and recovers from a refusal', { skip }, async (t) => {
  const n = `vmdt-nft-own-${process.pid}`;
  await addNetns(n);
  t.teardown(async () => { await execa('ip', ['netns', 'del', n], { reject: false }); });
  const r = await execa('ip', ['netns', 'exec', n, process.execPath, '--input-type=module', '-e', child], { reject: false, cwd: fileURLToPath(new URL('.', import.meta.url)) });
  t.equal(r.exitCode, 0, String(r.stderr));
  const out = JSON.parse(String(r.stdout)) as unknown[];
  t.equal(out[0], true, 'a table removed by another nft is made again');
  t.match(String(out[1]), /^nftables: line 1: .*No such file or directory/, 'a refused change is an error');
  t.equal(out[2], true, 'the next change after it goes in');
  t.equal(out[3], true, 'and one after the kept context was released');
  t.equal(out[4], false, 'and the table goes');
});

t.test('nftApply goes through it where libnftables opens', { skip }, async (t) => {
  const n = `vmdt-nft-apply-${process.pid}`;
  await addNetns(n);
  t.teardown(async () => { await execa('ip', ['netns', 'del', n], { reject: false }); });
  // No ip(8) or nft process for the run: a PATH without them still works.
  const path = process.env.PATH;
  process.env.PATH = '/nonexistent';
  try {
    await nftApply(SCRIPT, n);
  } finally {
    process.env.PATH = path;
  }
  t.match((await nftProcess(n, ['list', 'ruleset'])).stdout, /table inet vmdtest/);
});
