// Tests for vmd/net/nft: golden scripts for a set of plans, and real traffic through them inside network
// namespaces this test creates (bridge + veth "guests" + an "outside"): NAT, forwards, locking, flush, warnings.
import t from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { packageRoot } from '../../../share/paths.js';
import { addNetns, ip, request, server, stopServers } from '../../lib/netns.js';
import { VmdError } from '../../../share/errors.js';
import { nftScript } from '../../../vmd/net/nft.js';
import { foreignForwardDrop, nftApply, nftCheck, nftCounters, nftFlush, sysctlSet } from '../../../vmd/net/nft-apply.js';
import { forwardConflict, localnetInterfaces, type NetLink, type NetPlan } from '../../../vmd/net/nft-plan.js';

const goldenDir = join(packageRoot, 'test', 'vmd', 'net', 'golden', 'nft');
const update = process.env.VMD_UPDATE_GOLDEN === '1';
const isRoot = process.getuid?.() === 0;

const emptyPlan: NetPlan = { switches: [], links: [], forwards: [], masquerade: [] };

const link = (name: string, vmId: number, vm: string, over: Partial<NetLink> = {}): NetLink => ({
  name, vmId, vm, index: 0, bridge: null, mac: `fe:e1:bb:00:${vmId.toString(16).padStart(2, '0')}:00`,
  lockMac: false, lockIp: null, local: null, groups: [], ...over,
});

const localLink = (vmId: number, vm: string, index = 0): NetLink => {
  const host = `100.64.${vmId}.${2 * index + 2}`;
  const guest = `100.64.${vmId}.${2 * index + 3}`;
  return link(`vm${vmId}i${index}`, vmId, vm, {
    index, mac: `fe:e1:bb:00:${vmId.toString(16).padStart(2, '0')}:0${index}`, lockMac: true, lockIp: guest, local: { host, guest },
  });
};

const manyLinks = (n: number): NetPlan => ({
  switches: [{ name: 'lan', bridge: 'vmdbr0', subnet: '10.88.0.1/16', nat: true, group: null }],
  links: Array.from({ length: n }, (_, i) => link(`vm${i + 1}i0`, i + 1, `vm${i + 1}`, {
    bridge: 'vmdbr0', mac: `fe:e1:bb:00:${((i + 1) >> 8).toString(16).padStart(2, '0')}:${((i + 1) & 255).toString(16).padStart(2, '0')}`,
    lockMac: true, lockIp: `10.88.${(i + 1) >> 8}.${(i + 1) & 255}`,
  })),
  forwards: [],
  masquerade: [],
});

const cases: Record<string, NetPlan> = {
  empty: emptyPlan,
  'nat-switch': {
    switches: [{ name: 'uplink', bridge: 'vmdbr0', subnet: '10.99.0.1/24', nat: true, group: null }],
    links: [link('vm1i0', 1, 'web', { bridge: 'vmdbr0' }), link('vm2i0', 2, 'db', { bridge: 'vmdbr0' })],
    forwards: [],
    masquerade: [],
  },
  'local-forwards': {
    switches: [],
    links: [localLink(2, 'db'), localLink(1, 'web'), localLink(1, 'web', 1)],
    forwards: [
      { proto: 'udp', hostPort: 5353, guest: '100.64.1.3', guestPort: 53, vm: 'web', via: 'vm1i0' },
      { proto: 'tcp', hostPort: 8080, guest: '100.64.1.3', guestPort: 80, vm: 'web', via: 'vm1i0' },
      { proto: 'tcp', hostPort: 2222, guest: '100.64.2.3', guestPort: 22, vm: 'db', via: 'vm2i0' },
    ],
    masquerade: ['100.64.2.2/31', '100.64.1.2/31', '100.64.1.4/31'],
  },
  'local-inet6': {
    switches: [],
    links: [{ ...localLink(1, 'six'), lockIp6: 'fd00:1:2:3:6440:103:0:2' }],
    forwards: [],
    masquerade: ['100.64.1.2/31'],
    // Host bits are dropped: the set holds the /96.
    masquerade6: ['fd00:1:2:3:6440:103:0:1/96'],
  },
  'nat-switch-forward': {
    switches: [{ name: 'uplink', bridge: 'vmdbr0', subnet: '10.99.0.1/24', nat: true, group: null }],
    links: [link('vm1i0', 1, 'web', { bridge: 'vmdbr0' })],
    forwards: [{ proto: 'tcp', hostPort: 8080, guest: '10.99.0.11', guestPort: 80, vm: 'web', via: 'vmdbr0' }],
    // Nested prefixes collapse into the widest one (overlaps are an error in an nft interval set).
    masquerade: ['10.99.0.0/24', '10.99.0.128/25'],
  },
  locked: {
    switches: [{ name: 'lan', bridge: 'vmdbr1', subnet: null, nat: false, group: null }],
    links: [
      link('vm3i0', 3, 'mac-only', { bridge: 'vmdbr1', lockMac: true }),
      link('vm4i0', 4, 'ip-only', { bridge: 'vmdbr1', lockIp: '10.1.0.4' }),
      link('vm5i0', 5, 'both', { bridge: 'vmdbr1', lockMac: true, lockIp: '10.1.0.5' }),
      link('vm6i0', 6, 'open', { bridge: 'vmdbr1' }),
      localLink(7, 'routed'),
    ],
    forwards: [],
    masquerade: ['100.64.7.2/31'],
  },
  // vmd's defaults on a dhcp switch and a local interface: bound addresses, no DHCP replies, RAs or redirects.
  guarded: {
    switches: [{ name: 'lan', bridge: 'vmdbr4', subnet: '10.4.0.1/24', nat: false, group: null }],
    links: [
      link('vm11i0', 11, 'bound', { bridge: 'vmdbr4', lockIp: '10.4.0.11', lockLinkLocal: 'fe80::fce1:bbff:fe00:b00', guard: { dhcp: true, router: true } }),
      link('vm12i0', 12, 'dhcp-server', { bridge: 'vmdbr4', lockIp: '10.4.0.12', lockLinkLocal: 'fe80::fce1:bbff:fe00:c00', guard: { dhcp: false, router: true } }),
      link('vm13i0', 13, 'router', { bridge: 'vmdbr4', guard: { dhcp: true, router: false } }),
      { ...localLink(14, 'routed'), guard: { dhcp: true, router: true } },
    ],
    forwards: [],
    masquerade: ['100.64.14.2/31'],
  },
  groups: {
    switches: [
      { name: 'dmz', bridge: 'vmdbr2', subnet: '192.168.50.1/24', nat: false, group: 'dmz' },
      { name: 'lab', bridge: 'vmdbr3', subnet: null, nat: false, group: null },
    ],
    links: [
      link('vm8i0', 8, 'www', { bridge: 'vmdbr2', groups: ['dmz', 'web'] }),
      link('vm9i0', 9, 'www2', { bridge: 'vmdbr2', groups: ['dmz', 'web'] }),
      link('vm10i0', 10, 'lab1', { bridge: 'vmdbr3', groups: ['lab'] }),
    ],
    forwards: [],
    masquerade: [],
    include: '/etc/vmd/nft.d/*.nft',
  },
  'many-links': manyLinks(64),
};

t.test('golden scripts', async (t) => {
  if (update) mkdirSync(goldenDir, { recursive: true });
  for (const [name, plan] of Object.entries(cases)) {
    const actual = nftScript(plan);
    const file = join(goldenDir, `${name}.nft`);
    if (update) writeFileSync(file, actual);
    t.ok(existsSync(file), `${name}.nft exists (VMD_UPDATE_GOLDEN=1 writes it)`);
    if (existsSync(file)) t.equal(actual, readFileSync(file, 'utf8'), name);
  }
});

t.test('deterministic: input order does not matter', async (t) => {
  const plan = cases['local-forwards']!;
  const shuffled: NetPlan = {
    switches: [...plan.switches].reverse(), links: [...plan.links].reverse(),
    forwards: [...plan.forwards].reverse(), masquerade: [...plan.masquerade].reverse(),
  };
  t.equal(nftScript(shuffled), nftScript(plan));
});

t.test('only vmd tables are named', async (t) => {
  for (const [name, plan] of Object.entries(cases)) {
    const tables = nftScript(plan).split('\n').filter((l) => /^(delete )?table /.test(l));
    t.ok(tables.every((l) => /^(delete )?table (inet|bridge|arp) vmd( \{)?$/.test(l)), `${name}: ${tables.join(' | ')}`);
  }
  t.match(nftScript(emptyPlan), /^# [^\n]*\ntable inet vmd\ndelete table inet vmd\ntable bridge vmd\ndelete table bridge vmd\ntable arp vmd\ndelete table arp vmd\n$/);
});

t.test('per-packet dispatch does not grow with the number of links', async (t) => {
  const chainRules = (script: string, family: string, chain: string): string[] => {
    const table = script.slice(script.indexOf(`table ${family} vmd {`));
    const body = table.slice(table.indexOf(`\tchain ${chain} {\n`));
    return body.slice(0, body.indexOf('\n\t}')).split('\n').slice(1).map((l) => l.trim());
  };
  const one = nftScript(manyLinks(1));
  const many = nftScript(manyLinks(1000));
  t.same(chainRules(one, 'bridge', 'prerouting'), ['type filter hook prerouting priority -200; policy accept;', 'iifname vmap @links']);
  t.same(chainRules(many, 'bridge', 'prerouting'), chainRules(one, 'bridge', 'prerouting'), 'the hooked chain is one vmap lookup');
  t.same(chainRules(many, 'bridge', 'link_vm1000i0'), chainRules(one, 'bridge', 'link_vm1i0').map((r) => r.replaceAll('vm1i0', 'vm1000i0').replaceAll("vm 'vm1' ", "vm 'vm1000' ").replace('fe:e1:bb:00:00:01', 'fe:e1:bb:00:03:e8').replace('10.88.0.1', '10.88.3.232')));
});

t.test('a forward\'s counter starts from its seed, as the firewall\'s do (a replace, a migrated guest)', async (t) => {
  const seed = new Map([["vm 'web' forward tcp/8080", { packets: 7, bytes: 420 }]]);
  t.match(nftScript(cases['nat-switch-forward']!, seed), /meta l4proto tcp counter packets 7 bytes 420 dnat ip to 10\.99\.0\.11:80 comment "vm 'web' forward tcp\/8080"/);
  t.equal(seed.size, 0, 'the seed is taken');
});

t.test('forward conflicts', async (t) => {
  const f = (proto: 'tcp' | 'udp', hostPort: number, vm: string, guestPort = 80) => ({ proto, hostPort, guest: '10.0.0.2', guestPort, vm, via: 'br0' });
  t.equal(forwardConflict([f('tcp', 8080, 'web')], [f('tcp', 8080, 'db')]), 'port tcp/8080 is already forwarded to vm "web"');
  t.equal(forwardConflict([f('tcp', 8080, 'web')], [f('udp', 8080, 'db')]), null, 'udp and tcp are different ports');
  t.equal(forwardConflict([f('tcp', 8080, 'web')], [f('tcp', 8080, 'web')]), null, 'the same forward again is no conflict');
  t.equal(forwardConflict([], [f('tcp', 8080, 'web'), f('tcp', 8080, 'web', 81)]), 'port tcp/8080 is already forwarded to vm "web"');
  t.equal(forwardConflict([], []), null);
  t.throws(() => nftScript({ ...emptyPlan, forwards: [f('tcp', 1, 'a'), f('tcp', 1, 'b')] }),
    { code: 'ERR_INVALID', message: 'port tcp/1 is already forwarded to vm "a"' });
});

t.test('invalid plans are refused before anything reaches nft', async (t) => {
  const bad: Array<[string, NetPlan, RegExp]> = [
    ['link name', { ...emptyPlan, links: [link('a"b', 1, 'x')] }, /^link: invalid interface name/],
    ['long link name', { ...emptyPlan, links: [link('a'.repeat(16), 1, 'x')] }, /invalid interface name/],
    ['mac', { ...emptyPlan, links: [link('t0', 1, 'x', { mac: 'FE:E1:BB:00:00:01' })] }, /^link t0: invalid lladdr/],
    ['lock ip', { ...emptyPlan, links: [link('t0', 1, 'x', { lockIp: '10.0.0.256' })] }, /^link t0: invalid ipv4 address/],
    ['vm name', { ...emptyPlan, links: [link('t0', 1, 'x"y')] }, /^invalid vm name/],
    ['group', { ...emptyPlan, links: [link('t0', 1, 'x', { groups: ['no good'] })] }, /^link t0: invalid group name/],
    ['twice', { ...emptyPlan, links: [link('t0', 1, 'x'), link('t0', 2, 'y')] }, /^link t0: listed twice$/],
    ['local on bridge', { ...emptyPlan, links: [{ ...localLink(1, 'x'), bridge: 'br0' }] }, /a local link cannot be on a bridge/],
    ['cidr', { ...emptyPlan, masquerade: ['10.0.0.0/33'] }, /^masquerade: invalid cidr/],
    ['port', { ...emptyPlan, forwards: [{ proto: 'tcp', hostPort: 0, guest: '10.0.0.2', guestPort: 80, vm: 'a', via: 'br0' }] }, /^forward: invalid port 0$/],
    ['include', { ...emptyPlan, include: 'relative/*.nft' }, /^include: invalid path/],
    ['proto', { ...emptyPlan, forwards: [{ proto: 'sctp' as 'tcp', hostPort: 1, guest: '10.0.0.2', guestPort: 80, vm: 'a', via: 'br0' }] }, /invalid protocol/],
  ];
  for (const [name, plan, message] of bad) t.throws(() => nftScript(plan), { code: 'ERR_INVALID', message }, name);
  t.same(localnetInterfaces(cases['local-forwards']!), ['vm1i0', 'vm2i0']);
});

// ---------------------------------------------------------------------------------------------
// Real namespaces: H is the "host", G a guest on H's bridge, L a guest on a routed local link, O the outside.

const ns = {
  h: `vmdnft-${process.pid}-h`, g: `vmdnft-${process.pid}-g`, l: `vmdnft-${process.pid}-l`, o: `vmdnft-${process.pid}-o`,
};
const GUEST_MAC = '52:54:00:99:00:11';
const LOCAL_MAC = '52:54:00:99:01:03';

async function topology(): Promise<void> {
  await addNetns(...Object.values(ns));
  // H: the switch's bridge with the host address, the guest's "tap" (a veth) in it.
  await ip(ns.h, 'link', 'add', 'br0', 'type', 'bridge');
  await ip(ns.h, 'addr', 'add', '10.99.0.1/24', 'dev', 'br0');
  await ip(ns.h, 'link', 'set', 'br0', 'up');
  await ip(ns.h, 'link', 'add', 'tg', 'type', 'veth', 'peer', 'name', 'vg', 'netns', ns.g);
  await ip(ns.h, 'link', 'set', 'tg', 'master', 'br0', 'up');
  await ip(ns.g, 'link', 'set', 'vg', 'address', GUEST_MAC, 'up');
  await ip(ns.g, 'addr', 'add', '10.99.0.11/24', 'dev', 'vg');
  await ip(ns.g, 'route', 'add', 'default', 'via', '10.99.0.1');
  // L: a routed local link, host 100.64.1.2/31, guest 100.64.1.3.
  await ip(ns.h, 'link', 'add', 'tl', 'type', 'veth', 'peer', 'name', 'vl', 'netns', ns.l);
  await ip(ns.h, 'addr', 'add', '100.64.1.2/31', 'dev', 'tl');
  await ip(ns.h, 'link', 'set', 'tl', 'up');
  await ip(ns.l, 'link', 'set', 'vl', 'address', LOCAL_MAC, 'up');
  await ip(ns.l, 'addr', 'add', '100.64.1.3/31', 'dev', 'vl');
  await ip(ns.l, 'route', 'add', 'default', 'via', '100.64.1.2');
  // O: the outside world, which has no route to the guests' networks.
  await ip(ns.h, 'link', 'add', 'xh', 'type', 'veth', 'peer', 'name', 'xo', 'netns', ns.o);
  await ip(ns.h, 'addr', 'add', '10.97.0.1/24', 'dev', 'xh');
  await ip(ns.h, 'link', 'set', 'xh', 'up');
  await ip(ns.o, 'addr', 'add', '10.97.0.2/24', 'dev', 'xo');
  await ip(ns.o, 'link', 'set', 'xo', 'up');
}

const realPlan: NetPlan = {
  switches: [{ name: 'sw', bridge: 'br0', subnet: '10.99.0.1/24', nat: true, group: 'lan' }],
  links: [
    { name: 'tg', vmId: 1, vm: 'web', index: 0, bridge: 'br0', mac: GUEST_MAC, lockMac: true, lockIp: '10.99.0.11', local: null, groups: [] },
    {
      name: 'tl', vmId: 2, vm: 'loc', index: 0, bridge: null, mac: LOCAL_MAC, lockMac: true, lockIp: '100.64.1.3',
      local: { host: '100.64.1.2', guest: '100.64.1.3' }, groups: ['lan'],
    },
  ],
  forwards: [
    { proto: 'tcp', hostPort: 8080, guest: '10.99.0.11', guestPort: 80, vm: 'web', via: 'br0' },
    { proto: 'udp', hostPort: 5353, guest: '10.99.0.11', guestPort: 53, vm: 'web', via: 'br0' },
    { proto: 'tcp', hostPort: 8081, guest: '100.64.1.3', guestPort: 81, vm: 'loc', via: 'tl' },
  ],
  masquerade: ['100.64.1.2/31'],
};

t.test('in network namespaces', { skip: !isRoot && 'needs root' }, async (t) => {
  t.teardown(async () => {
    await stopServers();
    for (const n of Object.values(ns)) await execa('ip', ['netns', 'del', n], { reject: false });
  });
  await topology();

  await t.test('nft -c accepts every golden script', async (t) => {
    for (const [name, plan] of Object.entries(cases)) {
      await t.resolves(nftCheck(nftScript(plan), ns.h), name);
    }
    t.same(await listTables(ns.h), [], 'checking applied nothing');
  });

  await t.test('nft errors become ERR_INTERNAL with nft\'s message', async (t) => {
    const err = await nftApply('table inet vmd {\n\tchain fwd {\n\t}\n}\n', ns.h).catch((e: unknown) => e);
    t.ok(err instanceof VmdError);
    t.match(err, { code: 'ERR_INTERNAL', message: /^nftables: line 2: syntax error, unexpected fwd/ });
  });

  await t.test('sysctls, with the previous value returned', async (t) => {
    // A new namespace inherits ip_forward (and conf defaults) from the host's on some kernels: start from a known state.
    await sysctlSet('net.ipv4.ip_forward', '0', ns.h);
    t.equal(await sysctlSet('net.ipv4.ip_forward', '1', ns.h), '0', 'the previous value: forwarding was off');
    t.equal(await sysctlSet('net.ipv4.ip_forward', '1', ns.h), '1');
    for (const dev of localnetInterfaces(realPlan)) {
      await sysctlSet(`net.ipv4.conf.${dev}.route_localnet`, '0', ns.h);
      t.equal(await sysctlSet(`net.ipv4.conf.${dev}.route_localnet`, '1', ns.h), '0', `route_localnet on ${dev}`);
    }
    await t.rejects(sysctlSet('net.ipv4.conf.nosuch0.route_localnet', '1', ns.h), { code: 'ERR_INTERNAL', message: /^sysctl: / });
    await t.rejects(sysctlSet('net.ipv4.ip_forward; reboot', '1', ns.h), { code: 'ERR_INVALID' });
  });

  await server(ns.g, 'guest-web', ['tcp/80', 'udp/53']);
  await server(ns.l, 'guest-loc', ['tcp/81', 'tcp/7000']);
  await server(ns.o, 'outside', ['tcp/9000']);
  await server(ns.h, 'host', ['tcp/7000']);

  await t.test('without vmd rules: no NAT, no forwards', async (t) => {
    t.equal(await request(ns.g, 'tcp', '10.97.0.2', 9000), 'timeout', 'the outside has no route back to the guest');
    t.equal(await request(ns.o, 'tcp', '10.97.0.1', 8080), 'error ECONNREFUSED');
  });

  await t.test('masquerade and forwards', async (t) => {
    await nftApply(nftScript(realPlan), ns.h);
    t.equal(await request(ns.g, 'tcp', '10.97.0.2', 9000), 'outside 10.97.0.1', 'the bridged guest reaches the outside as the host');
    t.equal(await request(ns.l, 'tcp', '10.97.0.2', 9000), 'outside 10.97.0.1', 'the local-link guest too');
    t.equal(await request(ns.g, 'tcp', '10.99.0.1', 7000), 'host 10.99.0.11', 'no NAT towards the host itself');
    t.match(await request(ns.o, 'tcp', '10.97.0.1', 8080), /^guest-web 10\.97\.0\.2$/, 'forward from outside (prerouting)');
    t.match(await request(ns.o, 'udp', '10.97.0.1', 5353), /^guest-web 10\.97\.0\.2$/, 'udp forward from outside');
    t.match(await request(ns.h, 'tcp', '10.97.0.1', 8080), /^guest-web 10\.97\.0\.1$/, 'from the host to its outside address (output)');
    t.match(await request(ns.h, 'tcp', '10.99.0.1', 8080), /^guest-web 10\.99\.0\.1$/, 'from the host to its switch address');
    t.match(await request(ns.h, 'tcp', '127.0.0.1', 8080), /^guest-web 10\.99\.0\.1$/, 'from 127.0.0.1, masqueraded');
    t.match(await request(ns.o, 'tcp', '10.97.0.1', 8081), /^guest-loc 10\.97\.0\.2$/, 'forward to a local link from outside');
    t.match(await request(ns.h, 'tcp', '127.0.0.1', 8081), /^guest-loc 100\.64\.1\.2$/, 'and from 127.0.0.1');
    const c = await nftCounters(ns.h);
    t.ok((c.get("vm 'web' forward tcp/8080")?.packets ?? 0) >= 4, 'the forward counts its connections');
    t.ok((c.get("vm 'web' forward udp/5353")?.packets ?? 0) >= 1);
    t.ok((c.get('vmd nat')?.packets ?? 0) >= 2, 'the masquerade rule counts');
    t.equal(c.get("vm 'web' if0 mac-spoof")?.packets, 0, 'nothing spoofed yet');
  });

  await t.test('locked lladdr on a bridged link', async (t) => {
    const spoofed = async () => (await nftCounters(ns.h)).get("vm 'web' if0 mac-spoof")?.packets ?? 0;
    t.equal(await request(ns.g, 'tcp', '10.99.0.1', 7000), 'host 10.99.0.11');
    await ip(ns.g, 'link', 'set', 'vg', 'address', '52:54:00:99:00:99');
    t.equal(await request(ns.g, 'tcp', '10.99.0.1', 7000), 'timeout', 'another MAC: nothing gets through');
    t.ok(await spoofed() > 0, 'and the mac-spoof counter rises');
    await ip(ns.g, 'link', 'set', 'vg', 'address', GUEST_MAC);
    t.equal(await request(ns.g, 'tcp', '10.99.0.1', 7000), 'host 10.99.0.11', 'own MAC again: traffic flows');
  });

  await t.test('locked source address, bridged and routed', async (t) => {
    await ip(ns.g, 'addr', 'add', '10.99.0.50/32', 'dev', 'vg');
    t.equal(await request(ns.g, 'tcp', '10.99.0.1', 7000, '10.99.0.50'), 'timeout', 'bridged guest with a foreign source');
    t.equal(await request(ns.g, 'tcp', '10.99.0.1', 7000), 'host 10.99.0.11', 'its own address still works');
    await ip(ns.l, 'addr', 'add', '100.64.1.9/32', 'dev', 'vl');
    t.equal(await request(ns.l, 'tcp', '100.64.1.2', 7000, '100.64.1.9'), 'timeout', 'local-link guest with a foreign source');
    t.equal(await request(ns.l, 'tcp', '100.64.1.2', 7000), 'host 100.64.1.3', 'its own address still works');
    const c = await nftCounters(ns.h);
    t.ok((c.get("vm 'web' if0 ip-spoof")?.packets ?? 0) > 0, 'bridged ip-spoof counter');
    t.ok((c.get("vm 'loc' if0 ip-spoof")?.packets ?? 0) > 0, 'routed ip-spoof counter (inet and arp tables summed)');
    // A local-link guest with another MAC is stopped in the inet and arp tables.
    await ip(ns.l, 'link', 'set', 'vl', 'address', '52:54:00:99:01:99');
    await ip(ns.h, 'neigh', 'flush', 'dev', 'tl');
    t.equal(await request(ns.l, 'tcp', '100.64.1.2', 7000), 'timeout', 'local link, another MAC');
    t.ok(((await nftCounters(ns.h)).get("vm 'loc' if0 mac-spoof")?.packets ?? 0) > 0, 'routed mac-spoof counter');
    await ip(ns.l, 'link', 'set', 'vl', 'address', LOCAL_MAC);
    t.equal(await request(ns.l, 'tcp', '100.64.1.2', 7000), 'host 100.64.1.3', 'own MAC again');
  });

  await t.test('interface groups are sets in the inet table', async (t) => {
    const { stdout } = await execa('ip', ['netns', 'exec', ns.h, 'nft', '-j', 'list', 'set', 'inet', 'vmd', 'group_lan']);
    const set = (JSON.parse(stdout) as { nftables: Array<{ set?: { elem: string[] } }> }).nftables.find((e) => e.set)?.set;
    t.same([...(set?.elem ?? [])].sort(), ['br0', 'tl'], 'the switch\'s bridge and the link with that group');
    // A user's own chain, included into vmd's table, matches the group and survives a replace.
    const dir = mkdtempSync(join(tmpdir(), 'vmdnft-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'mine.nft'), 'chain user_lan {\n\ttype filter hook prerouting priority filter; policy accept;\n\tiifname @group_lan counter comment "user lan"\n}\n');
    const withInclude = { ...realPlan, include: join(dir, '*.nft') };
    await nftApply(nftScript(withInclude), ns.h);
    t.equal(await request(ns.l, 'tcp', '100.64.1.2', 7000), 'host 100.64.1.3');
    t.ok(((await nftCounters(ns.h)).get('user lan')?.packets ?? 0) > 0, 'the user\'s rule matched the group');
    await nftApply(nftScript(withInclude), ns.h);
    t.equal((await nftCounters(ns.h)).get('user lan')?.packets, 0, 'and is still there after a replace');
    await nftApply(nftScript(realPlan), ns.h);
  });

  await t.test('idempotent apply; flush removes only vmd tables', async (t) => {
    await execa('ip', ['netns', 'exec', ns.h, 'nft', '-f', '-'], { input: 'table inet mine {\n\tchain c {\n\t}\n}\n' });
    // vmd's tables without counters; table order in a listing follows creation, so each is listed on its own.
    const stateless = async () => {
      const out: string[] = [];
      for (const t of await listTables(ns.h)) {
        out.push((await execa('ip', ['netns', 'exec', ns.h, 'nft', '-s', 'list', 'table', ...t.split(' ')])).stdout);
      }
      return out.join('\n');
    };
    const before = await stateless();
    await nftApply(nftScript(realPlan), ns.h);
    await nftApply(nftScript(realPlan), ns.h);
    t.equal(await stateless(), before, 'applying the same plan again changes nothing');
    t.same(await listTables(ns.h), ['arp vmd', 'bridge vmd', 'inet mine', 'inet vmd']);
    t.match(await request(ns.o, 'tcp', '10.97.0.1', 8080), /^guest-web/, 'still forwarding after the replace');
    await nftApply(nftScript(emptyPlan), ns.h);
    t.same(await listTables(ns.h), ['inet mine'], 'the empty plan removes vmd\'s tables');
    await nftApply(nftScript(realPlan), ns.h);
    await nftFlush(ns.h);
    await nftFlush(ns.h);
    t.same(await listTables(ns.h), ['inet mine'], 'flush (twice) leaves the foreign table alone');
    t.notMatch(await stateless(), /vmd/);
    t.same(await nftCounters(ns.h), new Map(), 'no counters without vmd tables');
  });

  await t.test('a foreign forward policy drop is reported', async (t) => {
    t.equal(await foreignForwardDrop(ns.h), null);
    await nftApply(nftScript(realPlan), ns.h);
    t.equal(await foreignForwardDrop(ns.h), null, 'vmd\'s own tables are not foreign');
    await execa('ip', ['netns', 'exec', ns.h, 'nft', '-f', '-'], {
      input: 'table ip filter {\n\tchain FORWARD {\n\t\ttype filter hook forward priority filter; policy drop;\n\t}\n}\n',
    });
    const w = await foreignForwardDrop(ns.h);
    t.match(w, /table ip filter chain FORWARD has policy drop on the forward hook/);
    t.equal(await request(ns.g, 'tcp', '10.97.0.2', 9000), 'timeout', 'and it does drop the guest\'s traffic');
  });
});

async function listTables(netns: string): Promise<string[]> {
  const { stdout } = await execa('ip', ['netns', 'exec', netns, 'nft', '-j', 'list', 'tables']);
  const json = JSON.parse(stdout) as { nftables: Array<{ table?: { family: string; name: string } }> };
  return json.nftables.flatMap((e) => (e.table ? [`${e.table.family} ${e.table.name}`] : [])).sort();
}

t.test('IPv6 of local inet6: NAT66 sources and the source lock', async (t) => {
  const script = nftScript(cases['local-inet6']!);
  t.match(script, /set nat6_sources \{\n\t\ttype ipv6_addr\n\t\tflags interval\n\t\telements = \{ fd00:1:2:3:6440:103::\/96 \}/);
  t.match(script, 'ip6 saddr @nat6_sources ip6 daddr != @nat6_sources counter masquerade comment "vmd nat6"');
  t.match(script, `meta nfproto ipv6 ip6 saddr != :: ip6 saddr != fe80::/10 ip6 saddr != fd00:1:2:3:6440:103:0:2 counter drop comment "vm 'six' if0 ip-spoof"`);
  t.throws(() => nftScript({ ...emptyPlan, masquerade6: ['fd00::/129'] }), { code: 'ERR_INVALID', message: /masquerade6: invalid cidr/ });
  t.throws(() => nftScript({ ...emptyPlan, masquerade6: ['10.0.0.0/8'] }), { code: 'ERR_INVALID' });
  t.throws(() => nftScript({ ...cases['local-inet6']!, links: [{ ...localLink(1, 'six'), lockIp6: 'fd00::1 } accept {' }] }), { code: 'ERR_INVALID' });
});

t.test('declared groups: a set for every group vm.conf names, members or not', async (t) => {
  const plan = { ...cases.groups!, groups: ['web', 'idle'] };
  const script = nftScript(plan);
  t.match(script, /\tset group_idle \{\n\t\ttype ifname\n\t\}\n/, 'an empty set, no elements line');
  t.match(script, /\tset group_web \{\n\t\ttype ifname\n\t\telements = \{ "vm8i0", "vm9i0" \}\n/, 'a declared group with members keeps them');
  t.equal(nftScript({ ...cases.groups!, groups: [] }), nftScript(cases.groups!), 'no declared groups: the same script');
  t.throws(() => nftScript({ ...plan, groups: ['bad name'] }), { code: 'ERR_INVALID', message: 'invalid group name "bad name"' });
});
