// Tests for vmd/net/dnsmasq: the generated command lines (exact arrays), lease parsing, and real dnsmasq instances
// in network namespaces this test creates and removes: a switch bridge with a udhcpc client, a /31 local link with the real guest.

import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { DnsmasqInstance } from '../../../vmd/net/dnsmasq.js';
import { dnsmasqArgs, type DnsmasqLocalSpec, type DnsmasqSwitchSpec } from '../../../vmd/net/dnsmasq-args.js';
import { fixedLeaseFor, readLeases } from '../../../vmd/net/leases.js';
import { STALE_MAX, SwitchDhcp } from '../../../vmd/net/switch-dhcp.js';
import { parseConfigText } from '../../../grammar/parse.js';
import { localAddr4, stableMac } from '../../../vmd/net/addr.js';
import { DEFAULT_LOCAL_PREFIX } from '../../../share/config.js';
import { LEASE_RE, guestBuildScript, guestCmdline, guestDir, guestFiles } from '../../../share/guest/guest.js';
import { DirectGuest } from '../../lib/qemu-direct.js';

const isRoot = process.getuid?.() === 0;
const has = (cmd: string, args: string[]) => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
const files = (dir: string, name: string) => ({
  leaseFile: join(dir, `${name}.leases`), pidFile: join(dir, `${name}.pid`), logFile: join(dir, `${name}.log`),
});

t.test('dnsmasqArgs: a switch with dhcp on a /24', async (t) => {
  const spec: DnsmasqSwitchSpec = {
    kind: 'switch', name: 'switch-uplink', interface: 'br0', address: '10.99.0.1/24', ...files('/var/lib/vmd/net', 'switch-uplink'),
  };
  t.same(dnsmasqArgs(spec), [
    '--keep-in-foreground', '--conf-file=/dev/null', '--no-hosts', '--user=nobody', '--group=nogroup',
    '--pid-file=/var/lib/vmd/net/switch-uplink.pid', '--log-facility=/var/lib/vmd/net/switch-uplink.log',
    '--dhcp-leasefile=/var/lib/vmd/net/switch-uplink.leases',
    '--interface=br0', '--except-interface=lo', '--bind-dynamic',
    '--dhcp-range=10.99.0.100,10.99.0.199,255.255.255.0,1h',
    '--dhcp-option=option:router,10.99.0.1', '--dhcp-option=option:dns-server,10.99.0.1',
    '--dhcp-authoritative', '--no-ping',
  ]);
  const more = dnsmasqArgs({
    ...spec, address: '10.99.0.150/24', dns: false, mtu: 1450, leaseTime: '12h', verbose: true, user: 'dnsmasq', group: 'dnsmasq',
    hosts: [{ mac: '52:54:00:99:00:11', address: '10.99.0.11' }, { mac: 'FE:E1:BB:00:00:01', address: '10.99.0.12', hostname: 'web' }],
  });
  t.same(more.filter((a) => !a.includes('/var/lib/vmd')), [
    '--keep-in-foreground', '--conf-file=/dev/null', '--no-hosts', '--user=dnsmasq', '--group=dnsmasq',
    '--interface=br0', '--except-interface=lo', '--bind-dynamic', '--port=0',
    '--dhcp-range=10.99.0.100,10.99.0.149,255.255.255.0,12h', '--dhcp-range=10.99.0.151,10.99.0.199,255.255.255.0,12h',
    '--dhcp-host=52:54:00:99:00:11,10.99.0.11', '--dhcp-host=fe:e1:bb:00:00:01,10.99.0.12,web',
    '--dhcp-option=option:router,10.99.0.150', '--dhcp-option=option:mtu,1450',
    '--dhcp-authoritative', '--no-ping', '--log-dhcp',
  ], 'host address split out of the range, reservations, no DNS, MTU');
  t.ok(dnsmasqArgs({ ...spec, address: '192.168.7.1/28' }).includes('--dhcp-range=192.168.7.8,192.168.7.14,255.255.255.240,1h'), 'upper half of a small subnet');
  t.ok(dnsmasqArgs({ ...spec, address: '10.0.0.1/16' }).includes('--dhcp-range=10.0.0.100,10.0.0.199,255.255.0.0,1h'));
  t.ok(dnsmasqArgs({ ...spec, range: { start: '10.99.0.10', end: '10.99.0.20' } }).includes('--dhcp-range=10.99.0.10,10.99.0.20,255.255.255.0,1h'));
  t.ok(dnsmasqArgs({ ...spec, dns: { servers: ['10.99.9.9', '10.99.9.8#5353'] } }).join(' ').includes('--no-resolv --server=10.99.9.9 --server=10.99.9.8#5353'));
  t.ok(dnsmasqArgs({ ...spec, dns: { resolvFile: '/run/systemd/resolve/resolv.conf' } }).includes('--resolv-file=/run/systemd/resolve/resolv.conf'));
  t.throws(() => dnsmasqArgs({ ...spec, address: '10.99.0.1/31' }), { code: 'ERR_INVALID', message: /too small/ });
  t.throws(() => dnsmasqArgs({ ...spec, address: '10.99.0.1' }), { message: 'dhcp switch-uplink: address 10.99.0.1 is not IPv4 CIDR' });
  t.throws(() => dnsmasqArgs({ ...spec, range: { start: '10.98.0.10', end: '10.99.0.20' } }), { message: /is not inside 10\.99\.0\.0\/24/ });
  t.throws(() => dnsmasqArgs({ ...spec, hosts: [{ mac: '52:54:00:99:00:11', address: '10.98.0.5' }] }), { message: /reservation/ });
  t.throws(() => dnsmasqArgs({ ...spec, mtu: 100 }), { message: /mtu 100/ });
  t.throws(() => dnsmasqArgs({ ...spec, interface: 'br0 --x' }), { message: /bad interface name/ });
  t.throws(() => dnsmasqArgs({ ...spec, leaseFile: 'rel.leases' }), { message: /not an absolute path/ });
  t.ok(dnsmasqArgs({ ...spec, hostsDir: '/var/lib/vmd/net/switch-uplink.hosts.d' }).includes('--dhcp-hostsdir=/var/lib/vmd/net/switch-uplink.hosts.d'), 'fixed leases as files');
  t.throws(() => dnsmasqArgs({ ...spec, hostsDir: 'x.hosts.d' }), { message: 'dhcp switch-uplink: directory x.hosts.d is not an absolute path' });
});

t.test('dnsmasqArgs: a local interface /31', async (t) => {
  const local = localAddr4(DEFAULT_LOCAL_PREFIX, 1, 0);
  const spec: DnsmasqLocalSpec = {
    kind: 'local', name: 'vmd1i0', interface: 'vmd1i0', address: `${local.host}/31`, guest: local.guest, mac: 'FE:E1:BB:D1:00:01',
    ...files('/var/lib/vmd/net', 'vmd1i0'),
  };
  t.same(dnsmasqArgs(spec), [
    '--keep-in-foreground', '--conf-file=/dev/null', '--no-hosts', '--user=nobody', '--group=nogroup',
    '--pid-file=/var/lib/vmd/net/vmd1i0.pid', '--log-facility=/var/lib/vmd/net/vmd1i0.log', '--dhcp-leasefile=/var/lib/vmd/net/vmd1i0.leases',
    '--interface=vmd1i0', '--except-interface=lo', '--bind-dynamic',
    '--dhcp-range=100.64.1.3,static,255.255.255.254,infinite', '--dhcp-host=fe:e1:bb:d1:00:01,100.64.1.3',
    '--dhcp-option=option:router,100.64.1.2', '--dhcp-option=option:dns-server,100.64.1.2',
    '--dhcp-authoritative', '--no-ping',
  ]);
  t.ok(dnsmasqArgs({ ...spec, hostname: 'web' }).includes('--dhcp-host=fe:e1:bb:d1:00:01,100.64.1.3,web'));
  const six = dnsmasqArgs({ ...spec, hostname: 'web', inet6: { host: 'fd00:1:2:3:6440:103:0:1', guest: 'FD00:1:2:3:6440:103::2' } });
  t.same(six.slice(11), [
    '--dhcp-range=100.64.1.3,static,255.255.255.254,infinite',
    '--dhcp-range=fd00:1:2:3:6440:103:0:2,fd00:1:2:3:6440:103:0:2,96,infinite', '--enable-ra',
    '--dhcp-host=fe:e1:bb:d1:00:01,100.64.1.3,[fd00:1:2:3:6440:103:0:2],web',
    '--dhcp-option=option:router,100.64.1.2', '--dhcp-option=option:dns-server,100.64.1.2',
    '--dhcp-option=option6:dns-server,[fd00:1:2:3:6440:103:0:1]',
    '--dhcp-authoritative', '--no-ping',
  ], 'local inet6: RA for the /96, DHCPv6 of exactly the guest address, DNS on the host side');
  t.notOk(dnsmasqArgs({ ...spec, dns: false, inet6: { host: 'fd00::1', guest: 'fd00::2' } }).some((a) => a.startsWith('--dhcp-option=option6')), 'no DNS, no DNS option');
  t.throws(() => dnsmasqArgs({ ...spec, inet6: { host: 'fd00::1', guest: 'fd01::2' } }), { message: 'dhcp vmd1i0: inet6 fd01::2 is not in the /96 of fd00::1' });
  t.throws(() => dnsmasqArgs({ ...spec, inet6: { host: 'fd00::1', guest: 'fd00::1' } }), { message: /is not in the \/96/ });
  t.throws(() => dnsmasqArgs({ ...spec, inet6: { host: 'x', guest: 'fd00::2' } }), { message: /are not IPv6 addresses/ });
  t.throws(() => dnsmasqArgs({ ...spec, address: '100.64.1.2/24' }), { message: 'dhcp vmd1i0: local interface address 100.64.1.2/24 is not a /31' });
  t.throws(() => dnsmasqArgs({ ...spec, guest: '100.64.1.5' }), { message: 'dhcp vmd1i0: guest 100.64.1.5 is not the other half of 100.64.1.2/31' });
  t.throws(() => dnsmasqArgs({ ...spec, mac: 'fe:e1:bb' }), { message: /bad MAC/ });
});

t.test('fixedLeaseFor: outside the dynamic range, from the VM id and NIC index, never twice', async (t) => {
  t.equal(fixedLeaseFor('10.0.0.1/24', 1, 0), '10.0.0.2', 'vm 1 if0: first address after the host');
  t.equal(fixedLeaseFor('10.0.0.1/24', 1, 3), '10.0.0.5');
  t.equal(fixedLeaseFor('10.0.0.1/24', 2, 0), '10.0.0.6', 'four slots per VM');
  t.equal(fixedLeaseFor('10.0.0.1/24', 25, 1), '10.0.0.99', 'last address below .100');
  t.equal(fixedLeaseFor('10.0.0.1/24', 25, 2), '10.0.0.200', 'then above the dynamic range .100–.199');
  t.equal(fixedLeaseFor('10.0.0.1/24', 39, 0), '10.0.0.254', 'the last slot of a /24 (98 + 55 addresses)');
  t.equal(fixedLeaseFor('10.0.0.1/24', 39, 1), '10.0.0.2', 'beyond the pool it wraps around');
  t.equal(fixedLeaseFor('10.0.0.50/24', 13, 0), '10.0.0.49', 'with the host at .50, .1 is free and counts');
  t.equal(fixedLeaseFor('10.0.0.50/24', 13, 1), '10.0.0.51', 'the host address is skipped wherever it is');
  t.equal(fixedLeaseFor('10.0.0.1/24', 1, 0, new Set(['10.0.0.2', '10.0.0.3'])), '10.0.0.4', 'taken: the next free one');
  t.equal(fixedLeaseFor('10.1.0.1/16', 300, 0), '10.1.5.18', 'a /16: slot 1196 = 98 below the range, then 1098 after 10.1.0.200');
  t.equal(fixedLeaseFor('192.168.7.1/28', 1, 0), '192.168.7.2', 'a small subnet: the lower half');
  t.equal(fixedLeaseFor('192.168.7.1/28', 2, 1), '192.168.7.7', 'slot 5 of the 6 free addresses .2–.7');
  t.equal(fixedLeaseFor('192.168.7.1/28', 2, 3), '192.168.7.3', 'slot 7 wraps to slot 1');
  const all = new Set(['192.168.7.2', '192.168.7.3', '192.168.7.4', '192.168.7.5', '192.168.7.6', '192.168.7.7']);
  t.throws(() => fixedLeaseFor('192.168.7.1/28', 1, 0, all), { code: 'ERR_INVALID', message: 'dhcp address range exceeded, vm id 1 interface 0: no fixed lease left in 192.168.7.0/28' });
  t.throws(() => fixedLeaseFor('10.0.0.1/31', 1, 0), { message: /not an IPv4 CIDR/ });
  t.throws(() => fixedLeaseFor('10.0.0.1/24', 0, 0), { message: /no fixed lease for vm id 0/ });
  t.throws(() => fixedLeaseFor('10.0.0.1/24', 1, 4), { message: /interface 4/ });
  // Every VM id and NIC of a full /24 gets its own address while the pool lasts.
  const seen = new Set<string>();
  for (let id = 1; id <= 38; id++) for (let i = 0; i < 4; i++) seen.add(fixedLeaseFor('10.0.0.1/24', id, i));
  t.equal(seen.size, 152, 'collision-free for 38 VMs of 4 NICs');
  t.notOk([...seen].some((a) => { const o = Number(a.split('.')[3]); return o === 1 || (o >= 100 && o <= 199); }), 'never the host or the dynamic range');
});

t.test('readLeases: the format of HOST-FACTS §3, missing and partial files', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-leases-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const f = join(dir, 'x.leases');
  t.same(readLeases(f), [], 'missing file');
  writeFileSync(f, '');
  t.same(readLeases(f), [], 'empty file');
  writeFileSync(f, [
    '1795392915 52:54:00:99:00:11 10.99.0.11 * 01:52:54:00:99:00:11',
    '0 FE:E1:BB:D1:00:01 100.64.1.3 web *',
    'duid 00:01:00:01:2c:aa:bb:cc:52:54:00:00:00:01',
    '1795392999 1234 fd00::5 * 00:01:00:01',
    'garbage',
    '1795392915 52:54:00:99:00:12 10.99.0.1', // complete line, missing fields
    '1795392915 52:54:00:99:00:13 10.99.0.13 *',
    '1795392915 52:54:00:99:00:14 10.9',
  ].join('\n'));
  t.same(readLeases(f), [
    { expiry: 1795392915, mac: '52:54:00:99:00:11', address: '10.99.0.11', hostname: null, clientId: '01:52:54:00:99:00:11' },
    { expiry: 0, mac: 'fe:e1:bb:d1:00:01', address: '100.64.1.3', hostname: 'web', clientId: null },
    { expiry: 1795392915, mac: '52:54:00:99:00:13', address: '10.99.0.13', hostname: null, clientId: null },
  ], 'v6 lines, garbage and the unterminated last line are skipped');
});

// ---- real dnsmasq, only inside namespaces made here ----

// dnsmasq, ip, busybox and QEMU are what share/setup installs: missing, they fail here loudly, never skip.
const canRun = isRoot;
t.test('the programs share/setup installs are on this host', { skip: !isRoot && 'needs root' }, async (t) => {
  for (const [cmd, args] of [['dnsmasq', ['--version']], ['ip', ['-V']], ['busybox', ['--help']], ['qemu-system-x86_64', ['--version']]] as const) {
    t.ok(has(cmd, [...args]), `${cmd} is installed (run share/setup)`);
  }
});
const tag = `${process.pid % 100000}`;
// The switch SwitchDhcp serves in the switch test: its files are that test's `switch-test.*`.
const testSwitch = parseConfigText('switch "test" {\n interface br0\n address 10.99.0.1/24\n dhcp\n}\n', 'vm.conf').config!.switches[0]!;

async function ns(t: Test, name: string): Promise<string> {
  await execa('ip', ['netns', 'add', name]);
  t.teardown(async () => {
    await execa('ip', ['netns', 'del', name], { reject: false });
  });
  await execa('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return name;
}

const ip = (netns: string, ...args: string[]) => execa('ip', ['-n', netns, ...args]);

// Every live process whose command line mentions `dir`: after teardown there must be none.
function processesUsing(dir: string): string[] {
  const out: string[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const c = readFileSync(`/proc/${p}/cmdline`, 'utf8');
      if (c.includes(dir)) out.push(`${p}: ${c.replace(/\0/g, ' ')}`);
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

t.test('a switch: dnsmasq on a bridge in a netns, busybox udhcpc in another', { skip: !canRun && 'needs root' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-dnsmasq-sw-'));
  // dnsmasq reads the fixed leases' files as nobody: the directory must be searchable, as vmd's state directory is.
  chmodSync(dir, 0o755);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const sw = await ns(t, `vmdt-dsw-${tag}`);
  const cl = await ns(t, `vmdt-dcl-${tag}`);
  await ip(sw, 'link', 'add', 'br0', 'address', '02:00:00:00:99:01', 'type', 'bridge');
  await ip(sw, 'addr', 'add', '10.99.0.1/24', 'dev', 'br0');
  await ip(sw, 'link', 'set', 'br0', 'up');
  await ip(sw, 'link', 'add', 've0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', cl);
  await ip(sw, 'link', 'set', 've0', 'master', 'br0', 'up');
  await ip(cl, 'link', 'set', 'eth0', 'address', '52:54:00:99:00:21', 'up');

  const spec: DnsmasqSwitchSpec = { kind: 'switch', name: 'switch-test', interface: 'br0', address: '10.99.0.1/24', ...files(dir, 'switch-test') };
  const inst = await DnsmasqInstance.start(spec, { netns: sw, cleanup: true });
  t.teardown(() => inst.stop());
  t.ok(inst.pid > 0 && inst.running);
  t.equal(readFileSync(spec.pidFile, 'utf8').trim(), String(inst.pid), 'the pid file names the process we hold');

  const ss = await execa('ip', ['netns', 'exec', sw, 'ss', '-Hulpn']);
  t.match(ss.stdout, /0\.0\.0\.0%br0:67/, 'DHCP socket bound to the bridge only');
  t.match(ss.stdout, /10\.99\.0\.1:53/, 'DNS on the switch address');
  t.notMatch(ss.stdout, /(^|\s)(0\.0\.0\.0|\*):53\s/m, 'no wildcard DNS socket');

  const script = join(dir, 'udhcpc.sh');
  writeFileSync(script, '#!/bin/sh\n[ "$1" = bound ] && echo "BOUND ip=$ip mask=$mask router=$router dns=$dns"\nexit 0\n');
  chmodSync(script, 0o755);
  const r = await execa('ip', ['netns', 'exec', cl, 'busybox', 'udhcpc', '-i', 'eth0', '-f', '-q', '-n', '-t', '5', '-T', '1', '-s', script], {
    reject: false, timeout: 20_000,
  });
  const m = /BOUND ip=(\S+) mask=(\d+) router=(\S+) dns=(\S+)/.exec(r.stdout);
  t.ok(m, `udhcpc bound: ${r.stdout} ${r.stderr}`);
  if (m) {
    const last = Number(m[1]!.split('.')[3]);
    t.ok(m[1]!.startsWith('10.99.0.') && last >= 100 && last <= 199, `address ${m[1]} in .100–.199`);
    t.equal(m[2], '24');
    t.equal(m[3], '10.99.0.1');
    t.equal(m[4], '10.99.0.1');
    t.match(readLeases(spec.leaseFile), [{ mac: '52:54:00:99:00:21', address: m[1], expiry: Number }], 'the lease is on file');
  }

  await t.test('fixed leases as vmd keeps them: files read as they appear, a re-read only where a record must go', async (t) => {
    await inst.stop();
    const dhcp = new SwitchDhcp(dir);
    t.teardown(() => dhcp.prune(() => false));
    await dhcp.start({ ...testSwitch, address: spec.address }, sw, []);
    const fixed = dhcp.instances.get('test')!;
    t.equal(fixed.spec.logFile, spec.logFile, 'the same files as the instance before: its lease is still on file');
    t.teardown(() => { if (!t.passing()) t.comment(readFileSync(spec.logFile, 'utf8')); });
    const udhcpc = async (mac: string) => {
      await ip(cl, 'link', 'set', 'eth0', 'address', mac);
      const r = await execa('ip', ['netns', 'exec', cl, 'busybox', 'udhcpc', '-i', 'eth0', '-f', '-q', '-n', '-t', '5', '-T', '1', '-s', script], {
        reject: false, timeout: 20_000,
      });
      return /BOUND ip=(\S+) /.exec(r.stdout)?.[1] ?? `nothing: ${r.stdout} ${r.stderr}`;
    };
    // dnsmasq logs each hosts file it reads, and "cleared cache" on each SIGHUP: the test waits for the one (bounded)
    // rather than for a guessed time, and counts the other.
    const entry = (mac: string) => join(dir, 'switch-test.hosts.d', mac.replaceAll(':', '-'));
    const logged = (line: string) => readFileSync(spec.logFile, 'utf8').split('\n').filter((l) => l.endsWith(line)).length;
    const waitLogged = async (line: string, before: number) => {
      for (let i = 0; i < 100 && logged(line) === before; i++) await new Promise((r) => setTimeout(r, 50));
      return logged(line) > before;
    };
    const link = {
      vmId: 3, vm: 'c', index: 1, name: 'vmd3i1', netns: sw, mac: '52:54:00:99:00:21', switch: 'test', bridge: 'br0', local: null, lockMac: false,
      forwards: [], groups: [], rules: [], dhcp: null, fixed: fixedLeaseFor(spec.address, 3, 1),
    };
    const hups = logged('cleared cache');
    dhcp.leaseAdd(link);
    t.ok(await waitLogged(`read ${entry(link.mac)}`, 0), 'a new file is read by inotify');
    t.equal(dhcp.instances.get('test'), fixed, 'by the same dnsmasq');
    t.equal(await udhcpc(link.mac), '10.99.0.11', 'the reservation wins over the earlier dynamic lease');
    t.equal(logged('cleared cache'), hups, 'without a SIGHUP');

    const moved = { ...link, fixed: '10.99.0.12' };
    dhcp.leaseAdd(moved);
    t.ok(await waitLogged('cleared cache', hups), 'a changed address: dnsmasq is told to forget the old record (SIGHUP)');
    t.equal(await udhcpc(link.mac), '10.99.0.12', 'the new address is handed out');

    dhcp.leaseDrop(moved, []);
    t.notOk(existsSync(entry(link.mac)), 'a dropped lease\'s file goes');
    t.equal(await udhcpc(link.mac), '10.99.0.12', 'dnsmasq keeps the record (the guest is gone: harmless)');
    t.equal(logged('cleared cache'), hups + 1, 'so a guest\'s stop costs it no re-read of every file');
    // dnsmasq refuses a record for an address another one has ("duplicate dhcp-host IP address"), and never hands
    // out an address leased to another MAC: the address moved here is one whose guest took no lease.
    const unused = { ...link, mac: '52:54:00:99:00:23', fixed: '10.99.0.13' };
    dhcp.leaseAdd(unused);
    dhcp.leaseDrop(unused, []);
    t.equal(logged('cleared cache'), hups + 1, 'no SIGHUP for that stop either');
    dhcp.leaseAdd({ ...link, mac: '52:54:00:99:00:22', fixed: '10.99.0.13' });
    t.ok(await waitLogged('cleared cache', hups + 1), 'until its address is given to another MAC: SIGHUP');
    t.equal(await udhcpc('52:54:00:99:00:22'), '10.99.0.13', 'which gets it');
    const got = await udhcpc(link.mac);
    t.ok(/^10\.99\.0\.1\d\d$/.test(got), `and the dropped MACs no fixed lease any more, an address of the dynamic range: ${got}`);

    // Records of removed files pile up in dnsmasq only to STALE_MAX: then one re-read drops them all.
    const before = logged('cleared cache');
    for (let i = 1; i <= STALE_MAX; i++) {
      const other = { ...link, mac: `52:54:00:98:${[i >> 8, i & 255].map((b) => b.toString(16).padStart(2, '0')).join(':')}`, fixed: `10.99.1.${i % 256}` };
      dhcp.leaseAdd(other);
      if (i === STALE_MAX) {
        // Once dnsmasq has read this file, it has had every signal sent before it.
        await waitLogged(`read ${entry(other.mac)}`, 0);
        t.equal(logged('cleared cache'), before, `${STALE_MAX - 1} stops: no SIGHUP`);
      }
      dhcp.leaseDrop(other, []);
    }
    t.ok(await waitLogged('cleared cache', before), `the ${STALE_MAX}th: one`);
    await new Promise((r) => setTimeout(r, 300));
    t.equal(logged('cleared cache'), before + 1, 'and only one');
    await dhcp.prune(() => false);
  });
  const restarted = await DnsmasqInstance.start(spec, { netns: sw, cleanup: true });
  t.teardown(() => restarted.stop());
  await t.test('a second instance on the same bridge fails with dnsmasq\'s own reason', async (t) => {
    const err = await DnsmasqInstance.start({ ...spec, name: 'switch-dup', ...files(dir, 'switch-dup') }, { netns: sw, cleanup: true }).catch((e: unknown) => e);
    t.match(err, { code: 'ERR_INTERNAL', message: /^dhcp switch-dup on br0 in vmdt-dsw-\d+: .*(in use|Address)/ });
  });
  await t.test('a missing interface is an error, never a DHCP socket on every interface', async (t) => {
    const err = await DnsmasqInstance.start({ ...spec, name: 'switch-none', interface: 'br9', ...files(dir, 'switch-none') }, { netns: sw, cleanup: true }).catch((e: unknown) => e);
    t.match(err, { code: 'ERR_INTERNAL', message: 'dhcp switch-none on br9 in ' + sw + ': interface br9 does not currently exist' });
  });
  await t.test('killStale kills only a dnsmasq with that pid file on its command line', async (t) => {
    const other = join(dir, 'other.pid');
    writeFileSync(other, `${process.pid}\n`);
    t.equal(await DnsmasqInstance.killStale(other), false, 'not a dnsmasq: left alone');
    t.notOk(existsSync(other), 'the stale pid file is removed');
    t.equal(await DnsmasqInstance.killStale(join(dir, 'absent.pid')), false);
    t.equal(await DnsmasqInstance.killStale(spec.pidFile, join(dir, 'wrong.leases')), false, 'lease file differs: left alone');
    t.ok(restarted.running);
    t.ok(existsSync(spec.pidFile), 'and so is its pid file');
    t.equal(await DnsmasqInstance.killStale(spec.pidFile, spec.leaseFile), true, 'ours: killed');
    await Promise.race([restarted.exited, new Promise((r) => setTimeout(r, 5_000))]);
    t.notOk(restarted.running);
    await restarted.stop();
  });
  t.same(processesUsing(dir), [], 'no process of this test remains');
});

t.test('a local interface: /31 lease for the real guest over a tap fd, ping to the host side', {
  skip: !canRun && 'needs root',
}, async (t) => {
  await execa(guestBuildScript, [guestDir()], { timeout: 300_000 });
  const { closeFd, tunOpen } = await import('../../../vmd/native.js');
  const dir = mkdtempSync(join(tmpdir(), 'vmd-dnsmasq-local-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const netns = await ns(t, `vmdt-dloc-${tag}`);
  const vmId = 1;
  const name = `vmdt${tag}i0`.slice(0, 15);
  const local = localAddr4(DEFAULT_LOCAL_PREFIX, vmId, 0);
  const mac = stableMac(vmId, 'dhcp-test', 0);
  // tunOpen acts on the caller's netns: made here, moved at once; the fd stays attached. Not persistent, so the
  // tap vanishes with the last fd (QEMU's) even if this test dies.
  const tap = tunOpen(name, { vnetHdr: true, persist: false, owner: 0 });
  let tapFd: number | null = tap.fd;
  t.teardown(() => {
    if (tapFd !== null) closeFd(tapFd);
  });
  await execa('ip', ['link', 'set', name, 'netns', netns]);
  await ip(netns, 'addr', 'add', `${local.host}/31`, 'dev', name);
  await ip(netns, 'link', 'set', name, 'up');

  const spec: DnsmasqLocalSpec = {
    kind: 'local', name, interface: name, address: `${local.host}/31`, guest: local.guest, mac, ...files(dir, name),
  };
  const inst = await DnsmasqInstance.start(spec, { netns, cleanup: true });
  t.teardown(() => inst.stop());

  const g = await DirectGuest.boot({
    ...(() => {
      const f = guestFiles(guestDir());
      return { kernel: f.kernel, initrd: f.initrd };
    })(),
    machine: 'q35',
    append: guestCmdline({ hostname: 'dhcp-test' }),
    args: ['-netdev', 'tap,id=n0,fd=3', '-device', `virtio-net-pci,netdev=n0,mac=${mac},romfile=`],
    fds: [tap.fd],
  });
  t.teardown(() => g.destroy());
  closeFd(tap.fd);
  tapFd = null;

  const lease = await g.waitFor(LEASE_RE, 60_000);
  t.equal(lease[0].trim(), 'vmd-guest: lease eth0 100.64.1.3/31');
  await g.waitFor('vmd-guest: ready', 60_000);
  const ping = await g.run(`ping -c 1 -W 2 ${local.host}`, 15_000);
  t.match(ping, /1 packets received/, `guest pings its gateway: ${ping}`);
  const route = await g.run('ip route; cat /etc/resolv.conf');
  t.match(route, /default via 100\.64\.1\.2 dev eth0/, 'router = host side');
  t.match(route, /nameserver 100\.64\.1\.2/, 'DNS = host side');
  t.match(readLeases(spec.leaseFile), [{ expiry: 0, mac, address: '100.64.1.3' }], 'an infinite lease on file');
  const ss = await execa('ip', ['netns', 'exec', netns, 'ss', '-Hulpn']);
  t.match(ss.stdout, new RegExp(`0\\.0\\.0\\.0%${name}:67`), 'DHCP bound to the tap alone');

  await inst.stop();
  t.notOk(inst.running);
  t.notOk(existsSync(spec.pidFile), 'stop() removes the pid file');
  await g.destroy();
  const links = await execa('ip', ['-n', netns, '-j', 'link', 'show']);
  t.notOk((JSON.parse(links.stdout) as Array<{ ifname: string }>).some((l) => l.ifname === name), 'the tap went with QEMU\'s fd');
  t.same(processesUsing(dir), [], 'no dnsmasq of this test remains');
});

t.test('the test left no namespace behind', { skip: !canRun && 'needs root' }, async (t) => {
  const { stdout } = await execa('ip', ['netns', 'list']);
  t.notMatch(stdout, new RegExp(`vmdt-d(sw|cl|loc)-${tag}\\b`));
});
