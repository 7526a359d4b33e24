// End to end: what a listener on the network between two hosts sees of `vmctl migrate --copy-storage`. The guest
// holds a marker in RAM and one on its disk; a capture of the link holds neither, though both arrive at the target;
// a plain NBD client that reaches the target's disk first cannot write to it.

import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { execa } from 'execa';
import { join } from 'node:path';
import { StreamDecoder } from '../../share/stream.js';
import { sh } from '../lib/guest-tools.js';
import { HOST_ADDRS, migrateInBackground, migrationKeys, twoHostsStart } from '../lib/two-hosts.js';
import { guestInitrd, guestKernel, type VmdHarness } from '../lib/vmd-harness.js';

const DST_ADDR = HOST_ADDRS[1];
const DISK_BYTES = 8 * 1024 * 1024;
/** Where the disk marker sits: past the first blocks, in a region the mirror copies as data. */
const DISK_MARK_AT = 1024 * 1024;
/** Packets the capture keeps at most: far above a 256 MiB guest's migration, a bound should anything loop. */
const CAPTURE_PACKETS = 2_000_000;

/** A running tcpdump on the hosts' link, writing every TCP packet whole to `file`. */
interface Capture { stop(): Promise<Buffer> }

/** Starts capturing on host `a`'s end of the link and returns once tcpdump listens. */
async function captureStart(t: Test, a: VmdHarness, file: string): Promise<Capture> {
  const p = spawn('ip', ['netns', 'exec', a.netns, 'tcpdump', '-i', 'mig0', '-n', '-s', '0', '-U', '-w', file, '-c', String(CAPTURE_PACKETS), 'tcp'],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<void>((r) => p.on('close', () => r()));
  t.teardown(() => { if (p.exitCode === null) p.kill('SIGKILL'); });
  let err = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`tcpdump did not start: ${err}`)), 30_000);
    p.stderr!.on('data', (c: Buffer) => {
      err += c.toString();
      if (err.includes('listening on')) { clearTimeout(timer); resolve(); }
    });
    p.on('close', () => { clearTimeout(timer); reject(new Error(`tcpdump exited: ${err}`)); });
  });
  return {
    async stop(): Promise<Buffer> {
      p.kill('SIGINT');
      await exited;
      return readFileSync(file);
    },
  };
}

/** `count` 32-byte records `TAG-token-NNNNNN.`: a marker nothing else on the host or the guest holds. */
function marker(tag: string, token: string, count: number): Buffer {
  return Buffer.from(Array.from({ length: count }, (_, i) => `${tag}-${token}-${String(i).padStart(32 - tag.length - token.length - 3, '0')}.`).join(''), 'latin1');
}

/** The guest state in a `vmctl send` file: QEMU's migration bytes, de-chunked. */
function stateOf(file: string): Buffer {
  const parts: Buffer[] = [];
  for (const ev of new StreamDecoder().push(readFileSync(file))) if (ev.kind === 'data') parts.push(Buffer.from(ev.data));
  return Buffer.concat(parts);
}

t.test('a migration with --copy-storage crosses the link encrypted: a capture holds neither the RAM nor the disk marker, the target has both', async (t) => {
  const [a, b] = await twoHostsStart();
  t.teardown(async () => {
    await a.teardown();
    await b.teardown();
  });
  const token = randomBytes(8).toString('hex');
  const ramNeedle = Buffer.from(`RAMMARK-${token}-`);
  const diskNeedle = Buffer.from(`DISKMARK-${token}-`);
  const disk = join(a.dir, 'data.raw');
  const image = Buffer.alloc(DISK_BYTES);
  marker('DISKMARK', token, 2048).copy(image, DISK_MARK_AT);
  writeFileSync(disk, image);
  const started = await a.vmctl(['start', 'mover', '-b', guestKernel, '--initrd', guestInitrd, '-m', '256M', '-d', disk, '--cmdline', 'console=ttyS0 quiet panic=-1 vmd.hostname=mover']);
  t.equal(started.exitCode, 0, started.stderr);
  await a.waitState('mover', 'running', 30_000);
  await a.console('mover', '\n', /vmd-guest: ready/, 90);
  // 64 KiB in the guest's RAM (its root file system is a RAM disk); the shell's own text never holds a whole record.
  const made = await sh(a, 'mover', `i=0; while [ $i -lt 2048 ]; do printf 'RAMMARK-%s-%06d.' ${token} $i; i=$((i+1)); done > /ram-marker; echo SIZE-$(wc -c < /ram-marker)`, 120);
  t.match(made, 'SIZE-65536', 'the guest holds the RAM marker');
  // The source's QEMU keeps its image open; the path is gone, as on a host without it.
  unlinkSync(disk);

  const capture = await captureStart(t, a, join(a.dir, 'link.pcap'));
  const mig = migrateInBackground(a, ['--copy-storage', '-s', b.socket, 'mover', DST_ADDR]);
  // Mid-way, the key as the target holds it: then looked for where it must not be.
  let key = '';
  for (let i = 0; i < 2400 && key === '' && mig.running(); i++) {
    const files = migrationKeys(b);
    if (files.length > 0) key = /^vmd:([0-9a-f]{64})\n$/.exec(readFileSync(files[0]!, 'utf8'))?.[1] ?? '';
    else await new Promise((r) => setTimeout(r, 25));
  }
  t.equal(key.length, 64, 'the target held a 32-byte key during the migration');
  for (const pid of [...a.guestPids(), ...b.guestPids()]) {
    t.notOk(readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(key), `QEMU ${pid}'s argv does not carry the key`);
  }
  t.equal(await mig.exited, 0, `migrate: ${mig.err()}\n${a.daemonLog}\n${b.daemonLog}`);
  const pcap = await capture.stop();
  await b.waitState('mover', 'running', 10_000);

  t.ok(pcap.length > 1024 * 1024, `the capture holds the migration's traffic (${pcap.length} bytes)`);
  t.notOk(pcap.includes(ramNeedle), 'the guest\'s RAM marker is not in the capture');
  t.notOk(pcap.includes(diskNeedle), 'the guest\'s disk marker is not in the capture');
  t.notOk(pcap.includes(Buffer.from(key)), 'nor is the key');
  t.same([...migrationKeys(a), ...migrationKeys(b)], [], 'no key is left on either host');
  t.notOk(a.daemonLog.includes(key) || b.daemonLog.includes(key) || mig.err().includes(key), 'no log and no message carries the key');
  for (const h of [a, b]) t.notOk((await h.vmctl(['log', 'mover'])).stdout.includes(key), 'nor does QEMU\'s log');

  // Both markers crossed: the target's disk and a plain (unencrypted) stream of the guest's state hold them.
  t.ok(readFileSync(disk).includes(diskNeedle), 'the target\'s copy of the disk holds the disk marker');
  const sent = await b.vmctlFiles(['send', 'mover'], { stdout: join(b.dir, 'mover.vmstate') });
  t.equal(sent.exitCode, 0, sent.stderr);
  t.ok(stateOf(join(b.dir, 'mover.vmstate')).includes(ramNeedle), 'the guest\'s state at the target holds the RAM marker');
});

t.test('an intruder who reaches the target\'s NBD server before the mirror cannot write the new disk; the migration goes through', async (t) => {
  const [a, b] = await twoHostsStart();
  t.teardown(async () => {
    await a.teardown();
    await b.teardown();
  });
  const disk = join(a.dir, 'data.raw');
  writeFileSync(disk, Buffer.alloc(DISK_BYTES));
  const started = await a.vmctl(['start', 'mover', '-b', guestKernel, '--initrd', guestInitrd, '-m', '256M', '-d', disk, '--cmdline', 'console=ttyS0 quiet panic=-1 vmd.hostname=mover']);
  t.equal(started.exitCode, 0, started.stderr);
  await a.waitState('mover', 'running', 30_000);
  await a.console('mover', '\n', /vmd-guest: ready/, 90);
  unlinkSync(disk);
  // The source QEMU's connections to the target are held back (its SYNs dropped in host a) until the intruder has
  // tried, so the mirror cannot reach the NBD server first, whatever the machine's load; dropped SYNs are sent again
  // (after 1 s, then 3 s), well inside vmm's 10 s QMP timeout, once the table is gone.
  const qemuUid = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${a.guestPids()[0]!}/status`, 'utf8'))?.[1];
  t.ok(qemuUid !== undefined && qemuUid !== '0', `the source QEMU runs as an unprivileged user (${qemuUid})`);
  const held = 'vmdt_hold_mirror';
  await execa('ip', ['netns', 'exec', a.netns, 'nft', '-f', '-'], { input:
    `table inet ${held} { chain out { type filter hook output priority 0; ip daddr ${DST_ADDR} meta skuid ${qemuUid} tcp flags & (syn|ack) == syn counter drop\n}\n}\n` });
  const release = async (): Promise<void> => { await execa('ip', ['netns', 'exec', a.netns, 'nft', 'delete', 'table', 'inet', held], { reject: false }); };
  t.teardown(release);
  const mig = migrateInBackground(a, ['--copy-storage', '-s', b.socket, 'mover', DST_ADDR]);
  for (let i = 0; i < 2400 && b.guestPids().length === 0; i++) await new Promise((r) => setTimeout(r, 25));
  let ports: string[] = [];
  for (let i = 0; i < 300 && ports.length < 2; i++) {
    await new Promise((r) => setTimeout(r, 25));
    const ss = String((await execa('ip', ['netns', 'exec', b.netns, 'ss', '-Htlnp'])).stdout);
    ports = ss.split('\n').filter((l) => b.guestPids().some((pid) => l.includes(`pid=${pid},`))).map((l) => /:(\d+)\s/.exec(l)?.[1] ?? '');
  }
  t.equal(ports.length, 2, 'the target listens for the migration and serves the disk');
  // Which port is the NBD server's: it greets first (the migration's TLS server waits for the client's hello).
  // Asked again if neither greeted (seen once in a dozen runs, cause not found); what the hosts' stacks held is
  // printed then, for the next look.
  let greets: Array<{ exitCode?: number; stdout: unknown }> = [];
  let nbdPort: string | undefined;
  for (let attempt = 1; attempt <= 3 && nbdPort === undefined; attempt++) {
    greets = await Promise.all(ports.map((port) => execa('ip', ['netns', 'exec', a.netns, process.execPath, '-e',
      `const s = require('net').connect(${port}, '${DST_ADDR}'); s.on('data', (d) => { console.log(d.toString('latin1', 0, 8)); process.exit(0); });
       s.on('error', () => process.exit(1)); setTimeout(() => process.exit(2), 2000);`], { reject: false, stdin: 'ignore' })));
    nbdPort = ports.find((_, i) => String(greets[i]!.stdout) === 'NBDMAGIC');
    if (nbdPort !== undefined) break;
    t.comment(`attempt ${attempt}: no port greeted (${ports.map((p, i) => `${p}: exit ${greets[i]!.exitCode}`).join(', ')})`);
    for (const ns of [a.netns, b.netns]) {
      t.comment(`${ns}:\n${String((await execa('ip', ['netns', 'exec', ns, 'sh', '-c', 'ss -tanpi; ip neigh; nft list ruleset; cat /proc/net/nf_conntrack'], { reject: false })).stdout)}`);
    }
  }
  t.ok(nbdPort !== undefined, 'the target\'s NBD server greets whoever connects');
  // A plain NBD client writing to the export.
  const tried = await execa('ip', ['netns', 'exec', a.netns, 'qemu-io', '-f', 'raw', '-c', 'write -P 0x41 0 4096', `nbd://${DST_ADDR}:${nbdPort ?? 0}/disk0`],
    { reject: false, timeout: 5000, stdin: 'ignore' });
  const heldSyns = /packets (\d+)/.exec(String((await execa('ip', ['netns', 'exec', a.netns, 'nft', 'list', 'table', 'inet', held])).stdout))?.[1];
  await release();
  t.comment(`the source's SYNs held back: ${heldSyns}`);
  t.equal(tried.exitCode, 1, `the plain client fails: ${String(tried.stdout)}`);
  t.match(String(tried.stderr), /TLS negotiation required before option 7 \(go\)/, 'told to negotiate TLS before it may open the export');
  t.notMatch(String(tried.stdout), /wrote/, 'it wrote nothing');
  t.equal(await mig.exited, 0, `the real migration still goes through: ${mig.err()}`);
  t.match(mig.err(), /downtime [1-9]\d* ms .*, total [1-9]\d* ms/, 'with the downtime and total time QEMU measured (not the 0s it says for a moment after completion)');
  await b.waitState('mover', 'running', 10_000);
  t.equal(readFileSync(disk).subarray(0, 4096).includes(0x41), false, 'the intruder\'s bytes are not on the target\'s disk');
  t.equal((await b.vmctl(['stop', '-f', '-w', 'mover'])).exitCode, 0);
});
