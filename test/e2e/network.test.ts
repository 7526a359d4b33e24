// End to end: managed networking with real guests. Switch + DHCP, local interface + NAT, port forwards, rdomains,
// and nothing left behind. vmd runs in a test namespace (the "host"); a second namespace stands for the outside world.

import t from 'tap';
import { execa } from 'execa';
import { sh } from '../lib/guest-tools.js';
import { guestInitrd, guestKernel, VmdHarness } from '../lib/vmd-harness.js';
import { rdomainNetnsFor } from '../../vmd/network.js';
import { formatIPv6, localAddr6, parseIPv6 } from '../../vmd/net/addr.js';

const cmdline = (name: string): string => `console=ttyS0 quiet panic=-1 vmd.hostname=${name}`;
const vm = (name: string, iface: string): string =>
  `vm "${name}" {\n  memory 256M\n  boot "${guestKernel}"\n  initrd "${guestInitrd}"\n  cmdline "${cmdline(name)}"\n  ${iface}\n}\n`;

/** Run a command in a namespace; output as text. */
async function inNs(ns: string, cmd: string[], timeoutMs = 10_000): Promise<{ out: string; code: number }> {
  const r = await execa('ip', ['netns', 'exec', ns, ...cmd], { reject: false, timeout: timeoutMs, all: true });
  return { out: String(r.all ?? ''), code: r.exitCode ?? 1 };
}

/** GET a URL from inside a namespace (busybox wget segfaults here); the body, or '' on failure. */
async function httpGet(ns: string, url: string): Promise<string> {
  const r = await inNs(ns, [process.execPath, '-e',
    `fetch(${JSON.stringify(url)}, { signal: AbortSignal.timeout(5000) }).then((r) => r.text()).then((t) => process.stdout.write(t), () => process.exit(1));`]);
  return r.code === 0 ? r.out : '';
}

/** An "outside world" namespace joined to the host namespace by a veth: host 10.200.0.1, outside 10.200.0.2. */
async function outside(h: VmdHarness): Promise<string> {
  const ns = `${h.netns}-out`;
  await execa('ip', ['netns', 'add', ns]);
  await execa('ip', ['-n', h.netns, 'link', 'add', 'uplink', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
  await execa('ip', ['-n', h.netns, 'addr', 'add', '10.200.0.1/24', 'dev', 'uplink']);
  await execa('ip', ['-n', h.netns, 'link', 'set', 'uplink', 'up']);
  await execa('ip', ['-n', ns, 'addr', 'add', '10.200.0.2/24', 'dev', 'eth0']);
  await execa('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
  await execa('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  await execa('ip', ['-n', h.netns, 'route', 'add', 'default', 'via', '10.200.0.2']);
  return ns;
}

/** A TCP service in a namespace that answers with the peer address it sees. */
function peerEcho(ns: string, port: number) {
  return execa('ip', ['netns', 'exec', ns, process.execPath, '-e',
    `require('net').createServer((s) => s.end('PEER ' + s.remoteAddress.replace(/^::ffff:/, '') + '\\n')).listen(${port}); setTimeout(() => process.exit(0), 120000);`],
  { reject: false });
}

t.test('two guests on a dhcp switch: leases, ping, vmctl links', async (t) => {
  const h = await VmdHarness.start({
    config: `switch "lan" {\n  interface vmdtbr0\n  address 10.77.0.1/24\n  dhcp\n}\n` +
      vm('a', 'interface { switch "lan" }') + vm('b', 'interface { switch "lan" }'),
  });
  t.teardown(() => h.teardown());
  await h.waitState('a', 'running', 30_000);
  await h.waitState('b', 'running', 30_000);
  const leaseA = await h.console('a', '\n', /vmd-guest: lease eth0 (10\.77\.0\.\d+)\/24/, 40);
  const leaseB = await h.console('b', '\n', /vmd-guest: lease eth0 (10\.77\.0\.\d+)\/24/, 40);
  const ipA = /lease eth0 (10\.77\.0\.\d+)/.exec(leaseA)![1]!;
  const ipB = /lease eth0 (10\.77\.0\.\d+)/.exec(leaseB)![1]!;
  t.not(ipA, ipB, 'different leases');
  const ping = await sh(h, 'a', `ping -c 2 -W 2 ${ipB} && echo PING-OK`, 20);
  t.match(ping, /PING-OK/, 'a pings b across the switch');
  const links = await h.vmctl(['links']);
  t.equal(links.exitCode, 0, links.stderr);
  t.match(links.stdout, /^VM\s+IF\s+LINK\s+LLADDR\s+SWITCH\s+ADDRESS/);
  t.match(links.stdout, new RegExp(`\\ba\\s+0\\s+vmd\\d+i0\\s+\\S+\\s+lan\\s+${ipA.replace(/\./g, '\\.')}/24`));
  t.match(links.stdout, new RegExp(`\\bb\\s+0\\s+vmd\\d+i0\\s+\\S+\\s+lan\\s+${ipB.replace(/\./g, '\\.')}/24`));
  const json = JSON.parse((await h.vmctl(['links', '--json'])).stdout) as { links: Array<{ vm: string; rxPackets: number; txPackets: number }> };
  for (const l of json.links) t.ok(l.rxPackets > 0 && l.txPackets > 0, `${l.vm}: counters move`);
});

t.test('local interface: 100.64.ID.3, gateway, NAT to the outside, forwards from everywhere', async (t) => {
  const h = await VmdHarness.start({ config: vm('web', 'local interface { forward tcp 8080 to 80 }') });
  t.teardown(() => h.teardown());
  const out = await outside(h);
  t.teardown(() => execa('ip', ['netns', 'del', out], { reject: false }));
  const id = (await h.waitState('web', 'running', 30_000)).trim().split(/\s+/)[0];
  const lease = await h.console('web', '\n', /vmd-guest: lease eth0 100\.64\.\d+\.\d+\/31/, 40);
  t.match(lease, new RegExp(`vmd-guest: lease eth0 100\\.64\\.${id}\\.3/31`), 'OpenBSD addressing for the actual id');
  t.match(await sh(h, 'web', `ping -c 1 -W 2 100.64.${id}.2 && echo GW-OK`), /GW-OK/, 'gateway answers');

  const echo = peerEcho(out, 7777);
  t.teardown(() => { echo.kill('SIGKILL'); });
  await new Promise((r) => setTimeout(r, 500));
  const seen = await h.console('web', 'nc 10.200.0.2 7777 </dev/null\n', /PEER \S+/, 20);
  t.match(seen, /PEER 10\.200\.0\.1\b/, 'the outside sees the host address (NAT)');

  t.equal((await httpGet(out, 'http://10.200.0.1:8080/')).trim(), 'web', 'forward from the outside');
  t.equal((await httpGet(h.netns, 'http://10.200.0.1:8080/')).trim(), 'web', 'forward from the host itself');
  t.equal((await httpGet(h.netns, 'http://127.0.0.1:8080/')).trim(), 'web', 'forward from 127.0.0.1');
});

t.test('forwards on a nat switch: fixed lease, reachable from everywhere, vmctl start --forward, conflicts', async (t) => {
  const h = await VmdHarness.start({
    config: `switch "lan" {\n  interface vmdtbr2\n  address 10.79.0.1/24\n  dhcp\n  nat\n}\n` +
      vm('web', 'interface {\n    switch "lan"\n    forward tcp 8080 to 80\n  }'),
  });
  t.teardown(() => h.teardown());
  const out = await outside(h);
  t.teardown(() => execa('ip', ['netns', 'del', out], { reject: false }));
  const id = Number((await h.waitState('web', 'running', 30_000)).trim().split(/\s+/)[0]);
  const fixed = `10.79.0.${2 + 4 * (id - 1)}`;
  const lease = await h.console('web', '\n', /vmd-guest: lease eth0 10\.79\.0\.\d+\/24/, 40);
  t.match(lease, `vmd-guest: lease eth0 ${fixed}/24`, 'the fixed lease of vm.conf(5): slot 4(id-1)+0');
  t.equal((await httpGet(out, 'http://10.200.0.1:8080/')).trim(), 'web', 'forward from the outside');
  t.equal((await httpGet(h.netns, 'http://10.200.0.1:8080/')).trim(), 'web', 'forward from the host itself');
  t.equal((await httpGet(h.netns, 'http://10.79.0.1:8080/')).trim(), 'web', 'forward via the switch address');
  t.equal((await httpGet(h.netns, 'http://127.0.0.1:8080/')).trim(), 'web', 'forward from 127.0.0.1');

  const start = (name: string, fwd: string) => h.vmctl(['start', '-m', '256M', '-b', guestKernel, '--initrd', guestInitrd,
    '--cmdline', cmdline(name), '-n', 'lan', '--forward', fwd, name]);
  const clash = await start('other', 'tcp:8080:80');
  t.equal(clash.exitCode, 1, 'the same host port for another VM is refused');
  t.match(clash.stderr, /port tcp\/8080 is already forwarded to vm "web"/);
  const made = await start('cli', 'tcp:8082:80');
  t.equal(made.exitCode, 0, made.stderr);
  await h.waitState('cli', 'running', 30_000);
  await h.console('cli', '\n', /vmd-guest: lease eth0 10\.79\.0\.\d+\/24/, 40);
  t.equal((await httpGet(out, 'http://10.200.0.1:8082/')).trim(), 'cli', 'vmctl start -n SWITCH --forward works too');
  t.equal((await httpGet(h.netns, 'http://127.0.0.1:8082/')).trim(), 'cli');
  const links = await h.vmctl(['links']);
  t.match(links.stdout, new RegExp(`\\bweb\\s+0\\s+vmd${id}i0\\s+\\S+\\s+lan\\s+${fixed.replace(/\./g, '\\.')}/24`), 'vmctl links shows the fixed lease');
});

t.test('local inet6: the /96 on both sides, router advertisements, ping over IPv6, NAT66 to the outside', async (t) => {
  const h = await VmdHarness.start({ config: 'local inet6 prefix fd00:1:2:3::/64\n' + vm('six', 'local interface') });
  t.teardown(() => h.teardown());
  const out = await outside(h);
  t.teardown(() => execa('ip', ['netns', 'del', out], { reject: false }));
  await execa('ip', ['-n', h.netns, 'addr', 'add', 'fd99::1/64', 'dev', 'uplink', 'nodad']);
  await execa('ip', ['-n', out, 'addr', 'add', 'fd99::2/64', 'dev', 'eth0', 'nodad']);
  await execa('ip', ['-n', h.netns, '-6', 'route', 'add', 'default', 'via', 'fd99::2']);
  const id = Number((await h.waitState('six', 'running', 30_000)).trim().split(/\s+/)[0]);
  // vm.conf(5): bytes 8–11 are the guest's IPv4 address 100.64.ID.3, the last byte 1 (host) or 2 (guest).
  const mid = `6440:${(id << 8 | 3).toString(16)}`;
  const host6 = `fd00:1:2:3:${mid}:0:1`;
  const guest6 = `fd00:1:2:3:${mid}:0:2`;
  t.same(localAddr6({ address: 'fd00:1:2:3::', length: 64 }, `100.64.${id}.3`), { host: host6, guest: guest6, prefixLen: 96 });
  const addrs = (await inNs(h.netns, ['ip', '-6', 'addr', 'show', 'dev', `vmd${id}i0`])).out;
  t.match(addrs, `inet6 ${host6}/96`, 'the host side of the link has ::1 of the /96');
  const seen = await h.console('six', '\n', /vmd-guest: address6 eth0 \S+\/96/, 60);
  const taken = /vmd-guest: address6 eth0 (\S+)\/96/.exec(seen)![1]!;
  t.equal(formatIPv6(parseIPv6(taken)), guest6, 'the guest configured ::2 from the router advertisement');
  const ping = await sh(h, 'six', `ping6 -c 2 -W 3 ${host6} && echo PING6-OK`, 30);
  t.match(ping, /PING6-OK/, 'the guest pings the host side over IPv6');
  const route = await sh(h, 'six', 'ip -6 route show default && echo ROUTE-DONE', 20);
  t.match(route, /default via fe80::\S+ dev eth0/, 'the default route comes from the router advertisement');
  const far = await sh(h, 'six', 'ping6 -c 2 -W 3 fd99::2 && echo FAR-OK', 30);
  t.match(far, /FAR-OK/, 'the outside answers: NAT66, since it has no route to the /96');
});

t.test('rdomains: same subnet twice, each guest reaches its own gateway only', async (t) => {
  const sw = (name: string, br: string, rd: number): string =>
    `switch "${name}" {\n  interface ${br}\n  rdomain ${rd}\n  address 10.88.0.1/24\n  dhcp\n}\n`;
  const h = await VmdHarness.start({
    config: sw('red', 'vmdtred', 1) + sw('blue', 'vmdtblue', 2) + vm('r', 'interface { switch "red" }') + vm('b', 'interface { switch "blue" }'),
  });
  t.teardown(() => h.teardown());
  const idR = Number((await h.waitState('r', 'running', 30_000)).trim().split(/\s+/)[0]);
  const idB = Number((await h.waitState('b', 'running', 30_000)).trim().split(/\s+/)[0]);
  // Each guest has its fixed lease, slot 4(id-1) (vm.conf(5)): two VMs have two ids, so the addresses differ and
  // red's ping at blue's address can only be answered if the rdomains leak into each other.
  t.not(idR, idB, 'two VMs, two ids');
  const ipR = /lease eth0 (10\.88\.0\.\d+)/.exec(await h.console('r', '\n', /lease eth0 10\.88\.0\.\d+/, 40))![1]!;
  const ipB = /lease eth0 (10\.88\.0\.\d+)/.exec(await h.console('b', '\n', /lease eth0 10\.88\.0\.\d+/, 40))![1]!;
  t.equal(ipR, `10.88.0.${2 + 4 * (idR - 1)}`, "red's fixed lease");
  t.equal(ipB, `10.88.0.${2 + 4 * (idB - 1)}`, "blue's fixed lease");
  t.match(await sh(h, 'r', 'ping -c 1 -W 2 10.88.0.1 && echo GW-OK'), /GW-OK/);
  t.match(await sh(h, 'b', 'ping -c 1 -W 2 10.88.0.1 && echo GW-OK'), /GW-OK/);
  t.match(await sh(h, 'r', `ping -c 2 -W 1 ${ipB} || echo UNREACHABLE`), /UNREACHABLE/, 'red cannot reach blue');
  const spaces = (await execa('ip', ['netns', 'list'])).stdout;
  t.match(spaces, new RegExp(rdomainNetnsFor(1, h.stateDir)));
  t.match(spaces, new RegExp(rdomainNetnsFor(2, h.stateDir)));
});

t.test('after stop and reset, and after a crash with guests gone, nothing vmd made remains', async (t) => {
  const h = await VmdHarness.start({
    config: `switch "lan" {\n  interface vmdtbr1\n  address 10.66.0.1/24\n  dhcp\n  nat\n}\n` +
      vm('x', 'interface { switch "lan" }') + vm('y', 'local interface { forward tcp 8081 to 80 }'),
  });
  t.teardown(() => h.teardown());
  await h.waitState('x', 'running', 30_000);
  await h.waitState('y', 'running', 30_000);
  await h.console('x', '\n', /vmd-guest: lease/, 40);
  await h.console('y', '\n', /vmd-guest: lease/, 40);
  const leftovers = async (): Promise<string> => {
    const links = (await inNs(h.netns, ['ip', '-o', 'link'])).out;
    const rules = (await inNs(h.netns, ['nft', 'list', 'ruleset'])).out;
    const procs = (await execa('ps', ['-eo', 'args'])).stdout.split('\n').filter((l) => l.includes(h.stateDir) && /dnsmasq|qemu/.test(l));
    return [
      ...links.split('\n').filter((l) => /vmd\d+i\d|vmdtbr1/.test(l)),
      ...(/table (inet|bridge|arp) vmd/.test(rules) ? ['nftables: vmd tables'] : []),
      ...procs,
    ].join('\n');
  };
  t.not(await leftovers(), '', 'there is something to clean up');
  t.equal((await h.vmctl(['stop', '-w', 'x'])).exitCode, 0);
  t.equal((await h.vmctl(['stop', '-w', 'y'])).exitCode, 0);
  t.equal((await h.vmctl(['reset'])).exitCode, 0);
  t.equal(await leftovers(), '', 'after stop and reset');

  // A crash: vmd is killed, its guests die meanwhile, vmd comes back.
  await h.vmctl(['reload']);
  await h.waitState('x', 'running', 30_000);
  await h.waitState('y', 'running', 30_000);
  await h.console('x', '\n', /vmd-guest: lease/, 40);
  await h.console('y', '\n', /vmd-guest: lease/, 40);
  const guests = h.guestPids();
  await h.killDaemon();
  for (const p of guests) process.kill(p, 'SIGKILL');
  await new Promise((r) => setTimeout(r, 500));
  await h.startDaemon();
  await h.waitState('x', 'running', 40_000);
  await h.waitState('y', 'running', 40_000);
  for (const name of ['x', 'y']) {
    const r = await h.vmctl(['stop', '-f', '-w', name]);
    t.equal(r.exitCode, 0, `stop ${name}: ${r.stderr}\n${h.daemonLog}`);
  }
  t.equal((await h.vmctl(['reset'])).exitCode, 0);
  t.equal(await leftovers(), '', 'after a crash, a restart and a reset');
});

t.test('rootless: an ordinary user runs vmd; user-mode NAT with a working forward; switches need root', async (t) => {
  const { mkdtempSync, chownSync, chmodSync, rmSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { createServer } = await import('node:net');
  const { vmdEntry, vmctlEntry } = await import('../../share/paths.js');
  const dir = mkdtempSync(join(tmpdir(), 'vmd-rootless-'));
  chmodSync(dir, 0o755);
  chownSync(dir, 65534, 65534);
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  const conf = join(dir, 'vm.conf');
  writeFileSync(conf, vm('u', `interface { forward tcp ${port} to 80 }`) + vm('sw', 'local interface'));
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', VMD_SOCKET: join(dir, 'vmd.sock'), VMD_STATE_DIR: join(dir, 'state') };
  const as = { uid: 65534, gid: 65534, env, extendEnv: false, reject: false, cwd: dir } as const;
  const daemon = execa(vmdEntry, ['-d', '-f', conf], { ...as, all: true });
  let log = '';
  daemon.all?.on('data', (c: Buffer) => { log += c.toString(); });
  t.teardown(async () => {
    daemon.kill('SIGTERM');
    await daemon.catch(() => undefined);
    for (const line of (await execa('ps', ['-eo', 'pid,args'])).stdout.split('\n')) {
      if (line.includes(dir) && line.includes('qemu')) process.kill(Number(line.trim().split(/\s+/)[0]), 'SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  });
  const vmctl = (args: string[], input?: string) =>
    execa('/usr/bin/env', [process.execPath, vmctlEntry, ...args], { ...as, ...(input === undefined ? { stdin: 'ignore' as const } : { input }) });
  const deadline = Date.now() + 60_000;
  let body = '';
  while (Date.now() < deadline) {
    const r = await fetch(`http://127.0.0.1:${port}/`).then((x) => x.text()).catch(() => '');
    if (r.trim() === 'u') { body = r.trim(); break; }
    await new Promise((r) => setTimeout(r, 500));
  }
  t.equal(body, 'u', 'the guest answers on 127.0.0.1 through its user-mode forward');
  const status = await vmctl(['status']);
  t.match(String(status.stdout), /nobody\s+running u/, 'runs as the ordinary user');
  const lease = await vmctl(['console', '-t', '2', 'u'], '\n');
  t.match(String(lease.stdout), /vmd-guest: lease eth0 10\.0\.2\.15\/24/, 'user-mode NAT address');
  t.match(log, /vm "sw": .*local interfaces need vmd to run as root/, 'a local interface is refused with a clear message');
});
