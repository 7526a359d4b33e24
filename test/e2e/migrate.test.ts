// End to end: live migration between two vmds in two namespaces joined by a veth the test makes. A guest counting
// on its console moves while it runs and keeps its id, address and forward; a migration whose target dies mid-way
// leaves the guest running where it was and nothing on the target (its key included); a plain stream is refused.

import t, { type Test } from 'tap';
import { execa } from 'execa';
import { readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { StreamDecoder } from '../../share/stream.js';
import { sh } from '../lib/guest-tools.js';
import { httpGet } from '../lib/netns.js';
import { HOST_ADDRS, migrateInBackground, migrationKeys, twoHostsStart } from '../lib/two-hosts.js';
import { guestInitrd, guestKernel, pidsMatching, type VmdHarness } from '../lib/vmd-harness.js';

const DST_ADDR = HOST_ADDRS[1];

const startArgs = (name: string, ...more: string[]): string[] =>
  ['start', name, '-b', guestKernel, '--initrd', guestInitrd, '-m', '256M', '--cmdline', `console=ttyS0 quiet panic=-1 vmd.hostname=${name}`, ...more];

const idOf = (row: string): number => Number(row.trim().split(/\s+/)[0]);

/** Two vmds, `a` and `b`, whose namespaces reach each other over a veth (a: .1, b: .2). */
async function twoHosts(t: Test): Promise<[VmdHarness, VmdHarness]> {
  const [a, b] = await twoHostsStart();
  t.teardown(async () => {
    await a.teardown();
    await b.teardown();
  });
  return [a, b];
}

/** The highest TICK-N a guest's console has shown within a few seconds. */
async function lastTick(h: VmdHarness, name: string): Promise<number> {
  const out = await h.console(name, '', /TICK-\d+[\s\S]*TICK-\d+[\s\S]*TICK-\d+/, 30);
  return Math.max(...[...out.matchAll(/TICK-(\d+)/g)].map((m) => Number(m[1])));
}

/** Everything vmd-made about a link still visible in a namespace: the interface and any nftables rule naming it. */
async function linkTraces(netns: string, link: string): Promise<string[]> {
  const links = String((await execa('ip', ['-n', netns, '-o', 'link'])).stdout);
  const rules = String((await execa('ip', ['netns', 'exec', netns, 'nft', 'list', 'ruleset'])).stdout);
  return [...links.split('\n'), ...rules.split('\n')].filter((l) => l.includes(link));
}

t.test('a running guest migrates: its loop goes on, its id, address and forward hold, the source is clean', async (t) => {
  const [a, b] = await twoHosts(t);
  const started = await a.vmctl(startArgs('mover', '-L', '--forward', 'tcp:8080:80'));
  t.equal(started.exitCode, 0, started.stderr);
  const id = idOf(await a.waitState('mover', 'running', 30_000));
  await a.console('mover', '\n', new RegExp(`vmd-guest: lease eth0 100\\.64\\.${id}\\.3/31`), 90);
  t.equal((await httpGet(a.netns, '127.0.0.1', 8080)).trim(), 'mover', 'the forward works on the source');
  const link = (JSON.parse((await a.vmctl(['links', '--json', 'mover'])).stdout) as { links: Array<{ link: string }> }).links[0]!.link;
  t.equal(pidsMatching(`--dhcp-leasefile=${a.stateDir}`).length, 1, 'the source serves its local interface\'s lease');
  await sh(a, 'mover', '(i=0; while :; do i=$((i+1)); echo TICK-$i; sleep 1; done) & true');
  const before = await lastTick(a, 'mover');

  const m = await a.vmctl(['migrate', '-s', b.socket, 'mover', DST_ADDR], { timeoutMs: 180_000 });
  t.equal(m.exitCode, 0, `migrate: ${m.stderr}\n${a.daemonLog}\n${b.daemonLog}`);
  t.match(m.stderr, new RegExp(`migrated vm mover to ${DST_ADDR.replace(/\./g, '\\.')} as vm ${id}: downtime \\d+ ms \\(and \\d+ ms until the target resumed it\\), total \\d+ ms`));
  t.equal(idOf(await b.waitState('mover', 'running', 10_000)), id, 'the target kept the VM id');
  await a.waitState('mover', 'gone', 10_000);

  const after = await lastTick(b, 'mover');
  t.ok(after > before, `the loop goes on on the target (TICK-${before} on the source, TICK-${after} on the target)`);
  t.ok(after < before + 120, 'from where it was, not from the start');
  t.match((await b.vmctl(['links', 'mover'])).stdout, `100.64.${id}.3/31`, 'the link on the target carries the same address');
  t.equal((await httpGet(b.netns, '127.0.0.1', 8080)).trim(), 'mover', 'the forward answers on the target');
  t.equal((await httpGet(b.netns, `100.64.${id}.3`, 80)).trim(), 'mover', 'and the guest\'s own address from the target host');

  t.same(a.guestPids(), [], 'no guest left on the source');
  t.same(pidsMatching(`--dhcp-leasefile=${a.stateDir}`), [], 'no lease server of it left on the source');
  t.same(await linkTraces(a.netns, link), [], 'no link or rule of it left on the source');
  t.equal((await a.vmctl(['links'])).stdout.includes('mover'), false, 'the source lists no link of it');
  t.equal((await b.vmctl(['stop', '-f', '-w', 'mover'])).exitCode, 0);
});

/**
 * Starts migrating `name` from `a` to `b` in the background and catches it mid-way: once the target's QEMU listens
 * it is frozen, so the source's stream stalls in its socket buffers. The guest first fills 64 MiB of its RAM with
 * random bytes: an idle guest's memory is zero pages that fit in those buffers, and on a quiet machine it moved
 * whole (in 180 ms) before the poll below saw the target listen.
 */
async function migrationCaught(t: Test, a: VmdHarness, b: VmdHarness, name: string): Promise<{ qemu: number; exited: Promise<number>; err: () => string }> {
  t.match(await sh(a, name, 'dd if=/dev/urandom of=/fill bs=1M count=64 2>/dev/null && echo FILLED-$((6*7))', 120), 'FILLED-42');
  const mig = migrateInBackground(a, ['-s', b.socket, name, DST_ADDR]);
  let qemu: number | undefined;
  for (let i = 0; i < 600 && qemu === undefined; i++) {
    await new Promise((r) => setTimeout(r, 50));
    const ss = String((await execa('ip', ['netns', 'exec', b.netns, 'ss', '-Htlnp'])).stdout);
    qemu = b.guestPids().find((pid) => ss.includes(`pid=${pid},`));
  }
  t.ok(qemu !== undefined, 'the target\'s QEMU listens for the migration');
  process.kill(qemu!, 'SIGSTOP');
  await new Promise((r) => setTimeout(r, 3000));
  t.ok(mig.running(), `migrate is under way: ${mig.err()}`);
  return { qemu: qemu!, exited: mig.exited, err: mig.err };
}

/**
 * Mid-migration: each host holds the key once, for QEMU's user only, the same on both; no QEMU's argv carries
 * it. Returns it, for the caller to look for it in logs and on disk later.
 */
async function migrationKeyChecked(t: Test, a: VmdHarness, b: VmdHarness): Promise<string> {
  const [src, dst] = [migrationKeys(a), migrationKeys(b)];
  t.equal(src.length, 1, 'the source holds one key');
  t.equal(dst.length, 1, 'the target holds one key');
  const qemuUid = statSync(`/proc/${a.guestPids()[0]!}`).uid;
  for (const file of [...src, ...dst]) {
    t.equal(statSync(file).mode & 0o777, 0o400, `${file} is read-only`);
    t.equal(statSync(dirname(file)).mode & 0o777, 0o700, 'in a directory of its own');
    t.equal(statSync(file).uid, qemuUid, 'owned by QEMU\'s user');
  }
  const key = /^vmd:([0-9a-f]{64})\n$/.exec(readFileSync(src[0]!, 'utf8'))?.[1] ?? '';
  t.equal(key.length, 64, 'a 32-byte key');
  t.equal(readFileSync(dst[0]!, 'utf8'), `vmd:${key}\n`, 'the same key at both ends');
  for (const pid of [...a.guestPids(), ...b.guestPids()]) {
    t.notOk(readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(key), `QEMU ${pid}'s argv does not carry the key`);
  }
  return key;
}

/** A guest with a local interface, booted, on `a`. */
async function guestReady(t: Test, a: VmdHarness, name: string): Promise<void> {
  t.equal((await a.vmctl(startArgs(name, '-L'))).exitCode, 0);
  await a.waitState(name, 'running', 30_000);
  await a.console(name, '\n', /vmd-guest: ready/, 90);
}

/** After a failed migration: the guest answers at the source, the target has nothing of it. */
async function stayedAtSource(t: Test, a: VmdHarness, b: VmdHarness, name: string): Promise<void> {
  // The target undoes what it made in its own time after the client left.
  await b.waitState(name, 'gone', 15_000).catch((err: unknown) => t.fail(String(err)));
  t.equal((await b.vmctl(['status', name])).stdout.includes(name), false, 'no VM of it on the target');
  t.same(b.guestPids(), [], 'no QEMU left on the target');
  t.equal((await b.vmctl(['links'])).stdout.includes(name), false, 'no link left on the target');
  await a.waitState(name, 'running', 10_000);
  t.match(await sh(a, name, 'echo ALIVE-$((40+2))'), 'ALIVE-42', 'the guest runs on at the source');
  t.equal((await a.vmctl(['stop', '-f', '-w', name])).exitCode, 0);
}

t.test('the target\'s QEMU dies mid-way: the guest runs on at the source, nothing is left on the target', async (t) => {
  const [a, b] = await twoHosts(t);
  await guestReady(t, a, 'stayer');
  const m = await migrationCaught(t, a, b, 'stayer');
  const key = await migrationKeyChecked(t, a, b);
  process.kill(m.qemu, 'SIGKILL');
  t.equal(await m.exited, 1, 'migrate fails');
  t.match(m.err(), /migration failed/, `it says why: ${m.err()}`);
  t.notOk(m.err().includes(key), 'vmctl does not print the key');
  await stayedAtSource(t, a, b, 'stayer');
  t.same([...migrationKeys(a), ...migrationKeys(b)], [], 'no key is left on either host');
  t.notOk(a.daemonLog.includes(key) || b.daemonLog.includes(key), 'neither vmd logged the key');
});

t.test('the target vmd dies mid-way: the source keeps the guest, the restarted target drops the half it had', async (t) => {
  const [a, b] = await twoHosts(t);
  await guestReady(t, a, 'stayer');
  const m = await migrationCaught(t, a, b, 'stayer');
  t.equal(migrationKeys(b).length, 1, 'the target holds the key');
  await b.killDaemon();
  t.equal(await m.exited, 1, 'migrate fails');
  t.match(m.err(), /target 10\.96\.43\.2: vmd closed the connection/, `it says why: ${m.err()}`);
  // QEMU outlives its vmd by design; the one that was still receiving (frozen here, as one that had loaded the
  // whole guest would sit paused) must not be adopted as the guest by the restarted vmd.
  await b.startDaemon();
  t.match(b.daemonLog, 'vm "stayer": pid ' + String(m.qemu) + ' was still receiving the guest, terminating it');
  t.same(migrationKeys(b), [], 'the restarted target removed the key its predecessor left');
  await stayedAtSource(t, a, b, 'stayer');
  t.same(migrationKeys(a), [], 'the source removed its key');
});

t.test('the target refuses up front, naming a forward\'s port in use or a disk it cannot reach; nothing moves', async (t) => {
  const [a, b] = await twoHosts(t);
  const disk = join(a.dir, 'data.img');
  writeFileSync(disk, Buffer.alloc(1024 * 1024));
  // The mover gets id 2 on the source, so the holder's id 1 on the target is no obstacle: its forward is.
  t.equal((await a.vmctl(startArgs('pad'))).exitCode, 0);
  t.equal((await a.vmctl(startArgs('mover', '-L', '--forward', 'tcp:8080:80', '-d', disk))).exitCode, 0);
  t.equal(idOf(await a.waitState('mover', 'running', 30_000)), 2);
  await a.console('mover', '\n', /vmd-guest: ready/, 90);
  t.equal((await b.vmctl(startArgs('holder', '-L', '--forward', 'tcp:8080:80'))).exitCode, 0);
  await b.waitState('holder', 'running', 30_000);

  const clash = await a.vmctl(['migrate', '-s', b.socket, 'mover', DST_ADDR]);
  t.equal(clash.exitCode, 1, 'a clashing forward is refused');
  t.match(clash.stderr, /8080/, `the refusal names the port: ${clash.stderr}`);
  t.equal(b.guestPids().length, 1, 'only the holder runs on the target');
  t.equal((await b.vmctl(['status', 'mover'])).stdout.includes('mover'), false, 'no VM of it on the target');

  t.equal((await b.vmctl(['stop', '-f', '-w', 'holder'])).exitCode, 0);
  // The source's QEMU holds its disk open; the path is gone, as on a target without the shared storage.
  unlinkSync(disk);
  const missing = await a.vmctl(['migrate', '-s', b.socket, 'mover', DST_ADDR]);
  t.equal(missing.exitCode, 1, 'a disk the target cannot open is refused');
  t.match(missing.stderr, disk, `the refusal names the disk: ${missing.stderr}`);
  t.same(b.guestPids(), [], 'nothing runs on the target');
  t.equal((await b.vmctl(['links'])).stdout.includes('mover'), false, 'no link on the target');
  await a.waitState('mover', 'running', 10_000);
  t.match(await sh(a, 'mover', 'echo HERE-$((40+2))'), 'HERE-42', 'the guest runs on at the source');
  for (const name of ['mover', 'pad']) t.equal((await a.vmctl(['stop', '-f', '-w', name])).exitCode, 0);
});

/** The guest state in a `vmctl send` file: QEMU's migration bytes, de-chunked. */
function stateOf(file: string): Buffer {
  const parts: Buffer[] = [];
  for (const ev of new StreamDecoder().push(readFileSync(file))) if (ev.kind === 'data') parts.push(Buffer.from(ev.data));
  return Buffer.concat(parts);
}

t.test('an intruder who reaches the target\'s port first: its plain stream is refused at the TLS handshake, the real migration goes through', async (t) => {
  const [a, b] = await twoHosts(t);
  // A state the target's QEMU would load without TLS: a guest made just like the one that migrates, sent to a file.
  await guestReady(t, a, 'rogue');
  const sent = await a.vmctlFiles(['send', 'rogue'], { stdout: join(a.dir, 'rogue.vmstate') });
  t.equal(sent.exitCode, 0, sent.stderr);
  writeFileSync(join(a.dir, 'rogue.raw'), stateOf(join(a.dir, 'rogue.vmstate')));
  await a.waitState('rogue', 'gone', 10_000);
  await guestReady(t, a, 'mover');
  // The source's QEMU is held still (for less than vmm's 10 s QMP timeout), so the intruder connects first.
  const source = a.guestPids()[0]!;
  process.kill(source, 'SIGSTOP');
  const mig = migrateInBackground(a, ['-s', b.socket, 'mover', DST_ADDR]);
  let port: string | undefined;
  for (let i = 0; i < 600 && port === undefined; i++) {
    await new Promise((r) => setTimeout(r, 50));
    const ss = String((await execa('ip', ['netns', 'exec', b.netns, 'ss', '-Htlnp'])).stdout);
    const line = ss.split('\n').find((l) => b.guestPids().some((pid) => l.includes(`pid=${pid},`)));
    port = line === undefined ? undefined : /:(\d+)\s/.exec(line)?.[1];
  }
  t.ok(port !== undefined, 'the target listens');
  const intruder = await execa('ip', ['netns', 'exec', a.netns, process.execPath, '-e',
    `const s = require('net').connect(${port}, '${DST_ADDR}', () => s.end(require('fs').readFileSync(${JSON.stringify(join(a.dir, 'rogue.raw'))})));
     s.on('error', (e) => { console.error(e.code); process.exit(1); }); s.on('close', () => process.exit(0));`], { reject: false, timeout: 60_000 });
  // Megabytes of plain state against a TLS server: it drops the connection at the first bytes, mid-write.
  t.equal(intruder.exitCode, 1, 'the intruder\'s connection is cut');
  t.match(String(intruder.stderr), /^(ECONNRESET|EPIPE)$/m, `before its state went in: ${String(intruder.stderr)}`);
  await new Promise((r) => setTimeout(r, 2000));
  process.kill(source, 'SIGCONT');
  t.equal(await mig.exited, 0, `the real migration still goes through: ${mig.err()}\n${b.daemonLog}`);
  t.match((await b.vmctl(['log', 'mover'])).stdout, /TLS handshake failed/, 'the target\'s QEMU said why it dropped the intruder');
  await b.waitState('mover', 'running', 10_000);
  t.match(await sh(b, 'mover', 'echo NAME-$(hostname)'), 'NAME-mover', 'the guest running on the target is the source\'s, not the intruder\'s');
  await a.waitState('mover', 'gone', 10_000);
  t.equal((await b.vmctl(['stop', '-f', '-w', 'mover'])).exitCode, 0);
});
