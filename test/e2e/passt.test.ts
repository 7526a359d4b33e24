// End to end: passt-backed NICs with real guests. Real-addr style in a namespace whose outward interface has
// 10.96.0.5/24 behind router 10.96.0.1 (a second namespace is the router and the outside); qemu style; the
// forward clashes; and no passt left that no guest owns after a stop, a vmd crash and a restart.

import t from 'tap';
import { execa } from 'execa';
import { addNetns, httpGet, ip, request, server, stopServers } from '../lib/netns.js';
import { guestInitrd, guestKernel, VmdHarness } from '../lib/vmd-harness.js';

const vm = (name: string, iface: string): string =>
  `vm "${name}" {\n  disable\n  memory 256M\n  boot "${guestKernel}"\n  initrd "${guestInitrd}"\n` +
  `  cmdline "console=ttyS0 quiet panic=-1 vmd.hostname=${name}"\n  ${iface}\n}\n`;

const config =
  vm('real', 'passt interface {\n    forward tcp 8080 to 80\n  }') +
  vm('qemu', 'passt interface {\n    nat\n    forward tcp 8081 to 80\n  }') +
  vm('clash-host', 'passt interface { forward tcp 22 }') +
  vm('clash-vm', 'passt interface { forward tcp 8080 to 80 }') +
  vm('clash-local', 'local interface { forward tcp 8081 to 80 }');

/** A console line that connects from the guest and prints the reply; busybox nc need not exit, so it is backgrounded. */
const guestConnect = (host: string, port: number, n: number): string =>
  `(nc ${host} ${port} </dev/null >/tmp/nc.${n} 2>&1 &); sleep 2; cat /tmp/nc.${n}; echo done-$((${n}*7))\n`;

/** The pids of passt processes serving a socket under `dir`. */
async function passtPids(dir: string): Promise<number[]> {
  const ps = await execa('ps', ['-eo', 'pid,args']);
  return ps.stdout.split('\n').filter((l) => /\bpasst(\.avx2)? /.test(l) && l.includes(dir)).map((l) => Number(l.trim().split(/\s+/)[0]));
}

t.test('passt interfaces: real-addr and qemu style, forwards, clashes, no orphans', async (t) => {
  const h = await VmdHarness.start({ config });
  const out = `pout-${process.pid}`;
  t.teardown(async () => {
    await stopServers();
    await h.teardown();
    await execa('ip', ['netns', 'del', out], { reject: false });
  });
  await addNetns(out);
  await ip(h.netns, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'down0', 'netns', out);
  await ip(h.netns, 'address', 'add', '10.96.0.5/24', 'dev', 'up0');
  await ip(h.netns, 'link', 'set', 'up0', 'up');
  await ip(out, 'address', 'add', '10.96.0.1/24', 'dev', 'down0');
  await ip(out, 'link', 'set', 'down0', 'up');
  await ip(h.netns, 'route', 'add', 'default', 'via', '10.96.0.1');
  await server(h.netns, 'host', ['tcp/22']);
  await server(out, 'outside', ['tcp/9000']);

  for (const n of ['real', 'qemu']) t.equal((await h.vmctl(['start', n])).exitCode, 0, `vm ${n} starts`);
  await h.waitState('real', 'running', 40_000);
  await h.waitState('qemu', 'running', 40_000);

  await t.test('real-addr: the guest is the host, port by port', async (t) => {
    const lease = await h.console('real', '\n', /vmd-guest: lease eth0 (\S+)/, 90);
    t.match(lease, /vmd-guest: lease eth0 10\.96\.0\.5\/24/, "DHCP gives the guest the host's address");
    const route = await h.console('real', 'ip route; echo done-$((6*7))\n', /done-42/, 30);
    t.match(route, /default via 10\.96\.0\.1 dev eth0/, "and the host's router");
    t.equal(await httpGet(out, '10.96.0.5', 8080), 'real', 'outside → 10.96.0.5:8080 reaches the guest\'s port 80');
    t.equal(await request(out, 'tcp', '10.96.0.5', 22), 'host 10.96.0.1', "outside → 10.96.0.5:22 still reaches the host's listener");
    const nc = await h.console('real', guestConnect('10.96.0.1', 9000, 7), /done-49/, 30);
    t.match(nc, /outside 10\.96\.0\.5/, "the guest's own connection arrives outside from 10.96.0.5");
  });

  await t.test('qemu style: 10.0.2.15, the router is the host, a forward from loopback', async (t) => {
    const lease = await h.console('qemu', '\n', /vmd-guest: lease eth0 (\S+)/, 90);
    t.match(lease, /vmd-guest: lease eth0 10\.0\.2\.15\/24/, 'the guest has 10.0.2.15/24');
    const gw = await h.console('qemu', `ip route; ${guestConnect('10.0.2.2', 22, 6)}`, /done-42/, 30);
    t.match(gw, /default via 10\.0\.2\.2 dev eth0/, 'its router is 10.0.2.2');
    t.match(gw, /host 127\.0\.0\.1/, "10.0.2.2 is the host (its listener sees loopback)");
    const nc = await h.console('qemu', guestConnect('10.96.0.1', 9000, 7), /done-49/, 30);
    t.match(nc, /outside 10\.96\.0\.5/, 'it reaches the outside, leaving as the host');
    t.equal(await httpGet(h.netns, '127.0.0.1', 8081), 'qemu', "the forward works from the host's loopback");
  });

  await t.test('a forward that clashes fails the start naming both sides', async (t) => {
    const host = await h.vmctl(['start', 'clash-host']);
    t.equal(host.exitCode, 1);
    t.match(host.stderr, /vm "clash-host": forward tcp 22: host port in use by node \(pid \d+\)/, 'names the host listener');
    const other = await h.vmctl(['start', 'clash-vm']);
    t.equal(other.exitCode, 1);
    t.match(other.stderr, /vm "clash-vm": forward tcp 8080: host port already forwarded to vm "real"/, 'names the other guest');
    const local = await h.vmctl(['start', 'clash-local']);
    t.equal(local.exitCode, 1);
    t.match(local.stderr, /vm "clash-local": forward tcp 8081: host port already forwarded to vm "qemu"/, 'a local link clashes with a passt forward too');
    t.equal((await h.vmctl(['links', 'clash-local'])).stdout.split('\n').filter((l) => l.includes('clash-local')).length, 0, 'and left no link');
    t.equal((await passtPids(h.stateDir)).length, 2, 'one passt per running passt NIC');
  });

  await t.test('links shows the passt NICs', async (t) => {
    const links = await h.vmctl(['links']);
    t.match(links.stdout, /real\s+0\s+passt\/\d+\s+\S+\s+\(passt\)\s+10\.96\.0\.5\/24\s.*tcp 8080>80/, 'real-addr row: address and forward');
    t.match(links.stdout, /qemu\s+0\s+passt\/\d+\s+\S+\s+\(passt\)\s+10\.0\.2\.15\/24\s.*tcp 8081>80/, 'qemu-style row');
  });

  await t.test('stop, kill -9 of vmd, restart: no passt that no guest owns', async (t) => {
    const before = await passtPids(h.stateDir);
    t.equal((await h.vmctl(['stop', '-w', 'qemu'], { timeoutMs: 90_000 })).exitCode, 0, 'qemu stops');
    t.equal((await passtPids(h.stateDir)).length, 1, "the stopped guest's passt is gone");
    await h.killDaemon();
    const realPassts = await passtPids(h.stateDir);
    t.equal(realPassts.length, 1, 'a running guest keeps its passt while vmd is down');
    t.ok(realPassts.every((p) => before.includes(p)));
    // The guest dies too while vmd is down; its passt may still be waiting, or gone with QEMU's socket.
    for (const pid of h.guestPids().filter((p) => !realPassts.includes(p))) process.kill(pid, 'SIGKILL');
    await h.startDaemon();
    await h.waitState('real', 'stopped', 30_000);
    t.same(await passtPids(h.stateDir), [], 'after the restart no passt is left');
  });
});
