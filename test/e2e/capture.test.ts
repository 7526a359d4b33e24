// End to end: `vmctl capture` on real guests' links. B pings A: a pcap file tcpdump reads, summary lines, two captures
// at once, clear errors; and no tcpdump left once vmctl is killed, the VM stops, or vmd itself is killed (rdomain too).

import t from 'tap';
import { execa } from 'execa';
import { chownSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { vmctlEntry } from '../../share/paths.js';
import { getgrnam, getpwnam } from '../../share/users.js';
import { rdomainNetnsFor } from '../../vmd/network.js';
import { ensureUsers } from '../lib/users.js';
import { capture } from '../lib/capture.js';
import { guestInitrd, guestKernel, VmdHarness } from '../lib/vmd-harness.js';

const vm = (name: string, iface: string): string =>
  `vm "${name}" {\n  memory 256M\n  boot "${guestKernel}"\n  initrd "${guestInitrd}"\n  cmdline "console=ttyS0 quiet panic=-1 vmd.hostname=${name}"\n  ${iface}\n}\n`;

/**
 * The inode of a named network namespace as vmd sees it. vmd runs under `ip netns exec`, in a mount namespace of its
 * own, so the rdomain namespaces it mounts are only visible through its /proc/PID/root.
 */
function nsInode(h: VmdHarness, name: string): number {
  const pid = h.daemonPids()[0];
  return statSync(pid === undefined ? join('/run/netns', name) : `/proc/${pid}/root/run/netns/${name}`).ino;
}

/** tcpdump processes in one of these network namespaces (inodes): other testers' captures do not count. */
function tcpdumpsIn(inodes: ReadonlySet<number>): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/comm`, 'utf8').trim() !== 'tcpdump') continue;
      const m = /net:\[(\d+)\]/.exec(readlinkSync(`/proc/${d}/ns/net`));
      if (m !== null && inodes.has(Number(m[1]))) out.push(Number(d));
    } catch { /* gone */ }
  }
  return out;
}

async function noTcpdumpWithin(namespaces: ReadonlySet<number>, ms: number): Promise<number[]> {
  const until = Date.now() + ms;
  while (tcpdumpsIn(namespaces).length > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  return tcpdumpsIn(namespaces);
}

/** `vmctl capture ARGS` in the background; resolves `listening` once vmd said the capture runs. */
/** B pings `ip` `n` times from its console and returns once ping is done. */
async function ping(h: VmdHarness, from: string, ip: string, n: number, tag: number): Promise<string> {
  return h.console(from, `ping -c ${n} -i 0.2 -W 2 ${ip}; echo done-$((${tag}+1))\n`, new RegExp(`done-${tag + 1}`), 40);
}

t.test('two guests on a switch: capture on A while B pings it', async (t) => {
  const h = await VmdHarness.start({
    config: `switch "lan" {\n  interface vmdtcap0\n  address 10.79.0.1/24\n  dhcp\n}\n` +
      vm('a', 'interface { switch "lan" }') + vm('b', 'interface { switch "lan" }'),
  });
  t.teardown(() => h.teardown());
  await h.waitState('a', 'running', 30_000);
  await h.waitState('b', 'running', 30_000);
  const ipA = /lease eth0 (10\.79\.0\.\d+)/.exec(await h.console('a', '\n', /vmd-guest: lease eth0 10\.79\.0\.\d+\/24/, 40))![1]!;
  const ipB = /lease eth0 (10\.79\.0\.\d+)/.exec(await h.console('b', '\n', /vmd-guest: lease eth0 10\.79\.0\.\d+\/24/, 40))![1]!;
  const host = new Set([nsInode(h, h.netns)]);

  await t.test('-w f.pcap -c 10 A icmp, and a summary capture of the same link at the same time', async (t) => {
    const file = capture(h, ['-w', 'f.pcap', '-c', '10', 'a', 'icmp']);
    const lines = capture(h, ['-c', '4', 'a', '0', 'icmp']);
    await Promise.all([file.listening, lines.listening]);
    t.equal(tcpdumpsIn(host).length, 2, 'two tcpdumps on one link');
    t.match(await ping(h, 'b', ipA, 8, 41), /8 packets received/, 'b pings a');
    const [rf, rl] = await Promise.all([file.proc, lines.proc]);
    t.equal(rf.exitCode, 0, file.stderr());
    t.match(String(rf.stderr), /listening on vmd\d+i0, vm a interface 0\n10 packets captured$/);
    const read = await execa('tcpdump', ['-n', '-r', join(h.dir, 'f.pcap')], { reject: false });
    t.equal(read.exitCode, 0, String(read.stderr));
    const packets = String(read.stdout).trim().split('\n');
    t.equal(packets.length, 10, 'tcpdump -r reads 10 packets');
    t.ok(packets.every((p) => /: ICMP echo (request|reply)/.test(p)), 'all ICMP');
    t.ok(packets.some((p) => p.includes(`${ipB} > ${ipA}: ICMP echo request`)), 'b\'s requests to a are there');
    t.equal(statSync(join(h.dir, 'f.pcap')).uid, 0, 'the file is the caller\'s (root here), not tcpdump\'s');

    t.equal(rl.exitCode, 0, lines.stderr());
    const summary = String(rl.stdout).trim().split('\n');
    t.equal(summary.length, 4, 'four summary lines');
    t.ok(summary.every((l) => /^\d\d:\d\d:\d\d\.\d{6} IP 10\.79\.0\.\d+ > 10\.79\.0\.\d+: ICMP echo (request|reply), id \d+, seq \d+, length 64$/.test(l)), summary.join('\n'));
    t.same(await noTcpdumpWithin(host, 3000), [], 'both tcpdumps gone after their count');
  });

  await t.test('errors', async (t) => {
    const bad = await h.vmctl(['capture', '-c', '1', 'a', 'icmpx']);
    t.same([bad.exitCode, bad.stderr], [1, 'vmctl: capture: vm "a": filter "icmpx": syntax error\nvmctl: hint: see pcap-filter(7) for the syntax']);
    const options = await h.vmctl(['capture', '-c', '1', 'a', '--', '-w', '/tmp/x']);
    t.match(options.stderr, /^vmctl: capture: vm "a": filter "-w \/tmp\/x": syntax error$/m, 'a filter never becomes tcpdump options');
    const port = await h.vmctl(['capture', 'a', 'udp', 'port', '99999']);
    t.match(port.stderr, /^vmctl: capture: vm "a": filter "udp port 99999": illegal port number 99999 > 65535$/m, 'a semantic error of the filter');
    const none = await h.vmctl(['capture', 'nosuch']);
    t.same([none.exitCode, none.stderr], [1, 'vmctl: capture: vm "nosuch": not found']);
    const nic = await h.vmctl(['capture', 'a', '2']);
    t.equal(nic.exitCode, 1);
    t.match(nic.stderr, /^vmctl: capture: vm "a": no interface 2\nvmctl: hint: its interfaces are numbered 0 to 0/);
    t.same(await noTcpdumpWithin(host, 1000), [], 'nothing left by the refusals');
  });

  await t.test('vmctl killed: its tcpdump goes', async (t) => {
    const c = capture(h, ['a']);
    await c.listening;
    t.equal(tcpdumpsIn(host).length, 1);
    c.proc.kill('SIGKILL');
    await c.proc;
    t.same(await noTcpdumpWithin(host, 3000), [], 'no tcpdump after vmctl was killed');
  });

  await t.test('Ctrl-C: the file so far, status 0', async (t) => {
    const c = capture(h, ['-w', 'int.pcap', 'a', 'icmp']);
    await c.listening;
    await ping(h, 'b', ipA, 2, 50);
    // The echo of `done` can overtake the last reply on its way through tcpdump, vmd and the socket.
    await new Promise((r) => setTimeout(r, 500));
    c.proc.kill('SIGINT');
    const r = await c.proc;
    t.equal(r.exitCode, 0, c.stderr());
    t.match(c.stderr(), /4 packets captured/);
    t.same(await noTcpdumpWithin(host, 3000), []);
  });

  await t.test('the VM stops: the capture ends, vmctl exits 0, no tcpdump', async (t) => {
    const c = capture(h, ['b']);
    await c.listening;
    t.equal((await h.vmctl(['stop', '-f', '-w', 'b'])).exitCode, 0);
    const r = await c.proc;
    t.equal(r.exitCode, 0, c.stderr());
    t.same(await noTcpdumpWithin(host, 3000), []);
    const stopped = await h.vmctl(['capture', 'b']);
    t.same([stopped.exitCode, stopped.stderr], [1, 'vmctl: capture: vm "b": not running\nvmctl: hint: start it with: vmctl start b']);
  });
});

t.test('rdomain: capture in the routing domain\'s namespace; vmd killed takes tcpdump with it', async (t) => {
  const h = await VmdHarness.start({
    config: `switch "red" {\n  interface vmdtcapr\n  rdomain 1\n  address 10.89.0.1/24\n  dhcp\n}\n` + vm('r', 'interface { switch "red" }'),
  });
  t.teardown(() => h.teardown());
  await h.waitState('r', 'running', 30_000);
  const rdomain = new Set([nsInode(h, rdomainNetnsFor(1, h.stateDir))]);
  await h.console('r', '\n', /vmd-guest: lease eth0 10\.89\.0\.\d+\/24/, 40);
  const c = capture(h, ['-c', '2', 'r', 'icmp']);
  await c.listening;
  t.equal(tcpdumpsIn(rdomain).length, 1, 'tcpdump runs in the rdomain namespace');
  await ping(h, 'r', '10.89.0.1', 1, 60);
  const r = await c.proc;
  t.equal(r.exitCode, 0, c.stderr());
  const lines = String(r.stdout).trim().split('\n');
  t.equal(lines.length, 2);
  t.match(lines[0], /IP 10\.89\.0\.\d+ > 10\.89\.0\.1: ICMP echo request/);
  t.match(lines[1], /IP 10\.89\.0\.1 > 10\.89\.0\.\d+: ICMP echo reply/);

  const long = capture(h, ['r']);
  await long.listening;
  t.equal(tcpdumpsIn(rdomain).length, 1);
  await h.killDaemon();
  t.same(await noTcpdumpWithin(new Set([...rdomain, nsInode(h, h.netns)]), 3000), [], 'vmd killed with SIGKILL: no orphan tcpdump');
  t.equal((await long.proc).exitCode, 0, 'vmctl saw its stream end');
  // vmd back, so it stops the DHCP server its killed self left in the rdomain; teardown then stops it in order.
  await h.startDaemon();
});

t.test('the VM\'s owner may capture, into a file of its own; another user may not', async (t) => {
  const cleanup = await ensureUsers(['vmdcap1', 'vmdcap2'], 'vmdcap');
  t.teardown(cleanup);
  const gid = getgrnam('vmdcap')!.gid;
  const owner = { uid: getpwnam('vmdcap1')!.uid, gid };
  const other = { uid: getpwnam('vmdcap2')!.uid, gid };
  const h = await VmdHarness.start({
    config: `socket owner root:vmdcap\n` + vm('owned', 'local interface').replace('  memory 256M\n', '  memory 256M\n  owner vmdcap1\n'),
  });
  t.teardown(() => h.teardown());
  const id = (await h.waitState('owned', 'running', 30_000)).trim().split(/\s+/)[0];
  await h.console('owned', '\n', /vmd-guest: lease eth0 100\.64\.\d+\.3\/31/, 40);
  const dir = join(h.dir, 'owner');
  mkdirSync(dir);
  chownSync(dir, owner.uid, owner.gid);

  const denied = await h.vmctl(['capture', '-c', '1', 'owned'], other);
  t.equal(denied.exitCode, 1);
  // Matched by line: under tap, a non-root node child may add tap's own complaint about .tap/ on exit.
  t.match(denied.stderr, /^vmctl: capture: vm "owned": permission denied$/m);

  const proc = execa('/usr/bin/env', [process.execPath, vmctlEntry, 'capture', '-w', join(dir, 'own.pcap'), '-c', '2', 'owned', 'icmp'], {
    env: h.env, extendEnv: false, reject: false, cwd: dir, stdin: 'ignore', timeout: 60_000, uid: owner.uid, gid: owner.gid,
  });
  let stderr = '';
  await new Promise<void>((resolve) => proc.stderr?.on('data', (c: Buffer) => { stderr += c.toString(); if (/listening on/.test(stderr)) resolve(); }));
  await ping(h, 'owned', `100.64.${id}.2`, 1, 70);
  const r = await proc;
  t.equal(r.exitCode, 0, stderr);
  t.match(stderr, /^2 packets captured$/m);
  const st = statSync(join(dir, 'own.pcap'));
  t.same([st.uid, st.size > 24], [owner.uid, true], 'written by vmctl as the owner');
  const read = await execa('tcpdump', ['-n', '-r', join(dir, 'own.pcap')]);
  t.equal(String(read.stdout).trim().split('\n').length, 2, 'two ICMP packets on the local interface');
});
