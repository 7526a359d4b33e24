// Tests for the hypervisor firewall (vmd/net/firewall.ts through nftScript): golden nftables output for rule
// files, pf's last-match/quick semantics, counter seeding, and real traffic in namespaces this test creates:
// two "guests" on a bridge and one on a routed local link, with stateful rules in both directions.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { parseConfigText } from '../../../grammar/parse.js';
import type { FilterRule, VmConfig } from '../../../share/config.js';
import { packageRoot } from '../../../share/paths.js';
import { chainRules, ruleMatches, type CounterSeed } from '../../../vmd/net/firewall.js';
import { nftScript } from '../../../vmd/net/nft.js';
import { nftApply, nftCheck, nftCounters, sysctlSet } from '../../../vmd/net/nft-apply.js';
import type { NetLink, NetPlan } from '../../../vmd/net/nft-plan.js';
import { golden } from '../../lib/golden.js';
import { addNetns, ip, request, server, stopServers } from '../../lib/netns.js';

const fixtures = join(packageRoot, 'test', 'vmd', 'net', 'fixtures', 'firewall');
const isRoot = process.getuid?.() === 0;

function parse(text: string, file = 'vm.conf'): { vms: readonly VmConfig[] } {
  const r = parseConfigText(text, file);
  if (r.config === null) throw new Error(r.diagnostics.map((d) => d.message).join('\n'));
  return r.config;
}

/** One link per NIC of each VM: on br0 when it has a switch, routed (local) otherwise. */
function planOf(vms: readonly VmConfig[]): NetPlan {
  const links: NetLink[] = vms.flatMap((vm, v) => vm.interfaces.map((nic): NetLink => {
    const id = v + 1;
    const local = nic.local ? { host: `100.64.${id}.${2 * nic.index + 2}`, guest: `100.64.${id}.${2 * nic.index + 3}` } : null;
    return {
      name: `vmd${id}i${nic.index}`, vmId: id, vm: vm.name, index: nic.index, bridge: nic.switch === null ? null : 'br0',
      mac: `fe:e1:bb:00:0${id}:0${nic.index}`, lockMac: nic.locked || local !== null, lockIp: local?.guest ?? null, local, groups: [], rules: nic.rules,
    };
  }));
  return { switches: links.some((l) => l.bridge !== null) ? [{ name: 'lan', bridge: 'br0', subnet: null, nat: false, group: null }] : [], links, forwards: [], masquerade: [] };
}

const ruleFiles = readdirSync(fixtures).filter((f) => f.endsWith('.conf')).sort();

t.test('golden nftables for rule files', async (t) => {
  t.ok(ruleFiles.length >= 3, 'rule files found');
  for (const f of ruleFiles) {
    const config = parse(readFileSync(join(fixtures, f), 'utf8'), f);
    golden(t, 'test/vmd/net/golden/firewall', f.replace(/\.conf$/, '.nft'), nftScript(planOf(config.vms)));
  }
});

const rulesOf = (text: string): readonly FilterRule[] =>
  parse(`switch "lan" { interface br0 }\nvm "a" {\n interface {\n switch "lan"\n${text}\n }\n}\n`).vms[0]!.interfaces[0]!.rules;

t.test('pf order: quick rules first, in order; then the others, last first', async (t) => {
  const rules = rulesOf('block in\npass in quick proto udp\npass in proto tcp\nblock in quick proto tcp to port 23\nblock out');
  const lines = chainRules({ name: 'x', vm: 'a', index: 0, rules }, 'in', 'inet');
  t.same(lines.filter((l) => l.includes('comment')).map((l) => /rule (\d+)/.exec(l)![1]), ['2', '4', '3', '1']);
  t.match(lines.at(-1), /^counter drop comment "vm 'a' if0 rule 1"$/, 'a bare block is the last word');
  t.same(chainRules({ name: 'x', vm: 'a', index: 0, rules }, 'out', 'inet').filter((l) => l.includes('comment')), ['counter drop comment "vm \'a\' if0 rule 5"'],
    'each direction has only its own rules');
  t.same(chainRules({ name: 'x', vm: 'a', index: 0, rules: rulesOf('pass') }, 'out', 'inet').at(-1), 'counter return comment "vm \'a\' if0 rule 1"', 'pass is return');
});

t.test('matches: families, protocols, sets', async (t) => {
  t.same(ruleMatches(rulesOf('pass in')[0]!), [''], 'no conditions');
  t.same(ruleMatches(rulesOf('pass in proto { tcp udp } to port { 80 443 8000:8080 81 }')[0]!), ['meta l4proto { tcp, udp } th dport { 80-81, 443, 8000-8080 }'], 'ports merged and sorted');
  t.same(ruleMatches(rulesOf('pass from { 10.0.0.0/8 10.1.0.0/16 2001:db8::/32 }')[0]!), ['ip saddr 10.0.0.0/8', 'ip6 saddr 2001:db8::/32'], 'one nft rule per family; nested prefixes collapse');
  t.same(ruleMatches(rulesOf('pass proto { icmp icmp6 } from { 10.0.0.1 2001:db8::1 }')[0]!), ['ip saddr 10.0.0.1 meta l4proto icmp', 'ip6 saddr 2001:db8::1 meta l4proto ipv6-icmp'], 'icmp per family');
  t.same(ruleMatches(rulesOf('pass proto icmp6 from 10.0.0.1')[0]!), [], 'icmp6 from an IPv4 source matches nothing');
  t.same(ruleMatches(rulesOf('pass from 10.0.0.1 to 2001:db8::1')[0]!), [], 'IPv4 to IPv6 matches nothing');
  t.same(ruleMatches(rulesOf('block out proto tcp from any port 1024:65535 to 192.0.2.1 port 25')[0]!), ['ip daddr 192.0.2.1 meta l4proto tcp th sport 1024-65535 th dport 25']);
});

t.test('counter seeds are taken once', async (t) => {
  const rules = rulesOf('pass from { 10.0.0.1 2001:db8::1 }');
  const seed: CounterSeed = new Map([["vm 'a' if0 rule 1", { packets: 7, bytes: 700 }]]);
  const lines = chainRules({ name: 'x', vm: 'a', index: 0, rules }, 'in', 'inet', seed);
  t.same(lines.filter((l) => l.includes('packets 7 bytes 700')).length, 1, 'the first nft rule of the pf rule carries the total');
  t.equal(seed.size, 0, 'consumed');
  const plan = planOf(parse(readFileSync(join(fixtures, 'local.conf'), 'utf8')).vms);
  const script = nftScript(plan, new Map([["vm 'app' if0 mac-spoof", { packets: 3, bytes: 180 }]]));
  t.match(script, /ether saddr != \S+ counter packets 3 bytes 180 drop comment "vm 'app' if0 mac-spoof"/, 'a lock\'s counter too');
  t.equal(script.match(/packets 3 bytes 180/g)?.length, 1, 'once, though inet and arp both count mac spoofing');
});

// ---------------------------------------------------------------------------------------------
// Real namespaces: H is the host with bridge br0 (10.98.0.1/24); A (.11) and B (.12) are guests on it;
// L is a guest on a routed local link (host 100.64.9.2, guest 100.64.9.3).

const ns = { h: `vmdfw-${process.pid}-h`, a: `vmdfw-${process.pid}-a`, b: `vmdfw-${process.pid}-b`, l: `vmdfw-${process.pid}-l` };
const MAC = { a: '52:54:00:98:00:11', b: '52:54:00:98:00:12', l: '52:54:00:98:01:03' };

async function topology(): Promise<void> {
  await addNetns(...Object.values(ns));
  await ip(ns.h, 'link', 'add', 'br0', 'type', 'bridge');
  await ip(ns.h, 'addr', 'add', '10.98.0.1/24', 'dev', 'br0');
  await ip(ns.h, 'link', 'set', 'br0', 'up');
  for (const [g, n] of [['a', 11], ['b', 12]] as const) {
    await ip(ns.h, 'link', 'add', `t${g}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns[g]);
    await ip(ns.h, 'link', 'set', `t${g}`, 'master', 'br0', 'up');
    await ip(ns[g], 'link', 'set', 'eth0', 'address', MAC[g], 'up');
    await ip(ns[g], 'addr', 'add', `10.98.0.${n}/24`, 'dev', 'eth0');
    await ip(ns[g], 'route', 'add', 'default', 'via', '10.98.0.1');
  }
  await ip(ns.h, 'link', 'add', 'tl', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.l);
  await ip(ns.h, 'addr', 'add', '100.64.9.2/31', 'dev', 'tl');
  await ip(ns.h, 'link', 'set', 'tl', 'up');
  await ip(ns.l, 'link', 'set', 'eth0', 'address', MAC.l, 'up');
  await ip(ns.l, 'addr', 'add', '100.64.9.3/31', 'dev', 'eth0');
  await ip(ns.l, 'route', 'add', 'default', 'via', '100.64.9.2');
  await sysctlSet('net.ipv4.ip_forward', '1', ns.h);
  for (const k of ['net.bridge.bridge-nf-call-iptables', 'net.bridge.bridge-nf-call-ip6tables']) await sysctlSet(k, '1', ns.h);
}

async function ping(netns: string, host: string): Promise<boolean> {
  const r = await execa('ip', ['netns', 'exec', netns, 'busybox', 'ping', '-c', '1', '-W', '1', host], { reject: false, timeout: 5000 });
  return r.exitCode === 0;
}

function livePlan(rulesA: string, rulesL: string): NetPlan {
  const link = (name: string, vmId: number, vm: string, mac: string, bridge: string | null, rules: readonly FilterRule[]): NetLink => ({
    name, vmId, vm, index: 0, bridge, mac, lockMac: true, lockIp: bridge === null ? '100.64.9.3' : null,
    local: bridge === null ? { host: '100.64.9.2', guest: '100.64.9.3' } : null, groups: [], rules,
  });
  return {
    switches: [{ name: 'lan', bridge: 'br0', subnet: '10.98.0.1/24', nat: false, group: null }],
    links: [
      link('ta', 1, 'a', MAC.a, 'br0', rulesOf(rulesA)),
      link('tb', 2, 'b', MAC.b, 'br0', []),
      link('tl', 3, 'l', MAC.l, null, rulesOf(rulesL)),
    ],
    forwards: [],
    masquerade: [],
  };
}

t.test('in network namespaces', { skip: !isRoot && 'needs root' }, async (t) => {
  t.teardown(async () => {
    await stopServers();
    for (const n of Object.values(ns)) await execa('ip', ['netns', 'del', n], { reject: false });
  });
  await topology();
  await server(ns.a, 'a', ['tcp/80', 'tcp/81']);
  await server(ns.b, 'b', ['tcp/80']);
  await server(ns.l, 'l', ['tcp/80', 'tcp/81']);
  await server(ns.h, 'host', ['tcp/7000']);

  const plan = livePlan('block in\npass in proto tcp to port 80', 'block in\npass in proto tcp from 10.98.0.0/24 to port 80');

  await t.test('every golden script and the live plan pass nft -c', async (t) => {
    for (const f of ruleFiles) await t.resolves(nftCheck(nftScript(planOf(parse(readFileSync(join(fixtures, f), 'utf8')).vms)), ns.h), f);
    await t.resolves(nftCheck(nftScript(plan), ns.h), 'live plan');
  });

  await t.test('bridged guest: block in, pass in tcp/80, state for its own traffic', async (t) => {
    await nftApply(nftScript(plan), ns.h);
    t.equal(await request(ns.b, 'tcp', '10.98.0.11', 80), 'a 10.98.0.12', 'B gets A\'s port 80');
    t.equal(await request(ns.b, 'tcp', '10.98.0.11', 81), 'timeout', 'not another port A listens on');
    t.notOk(await ping(ns.b, '10.98.0.11'), 'B cannot ping A');
    t.ok(await ping(ns.a, '10.98.0.12'), 'A pings B and the replies come back (state)');
    t.equal(await request(ns.a, 'tcp', '10.98.0.12', 80), 'b 10.98.0.11', 'A opens connections out');
    t.equal(await request(ns.h, 'tcp', '10.98.0.11', 80), 'a 10.98.0.1', 'the host reaches A\'s port 80 (bridge output)');
    t.equal(await request(ns.h, 'tcp', '10.98.0.11', 81), 'timeout', 'but not port 81');
    t.equal(await request(ns.a, 'tcp', '10.98.0.1', 7000), 'host 10.98.0.11', 'A reaches the host, and its replies pass');
    t.equal(await request(ns.l, 'tcp', '10.98.0.11', 80), 'a 100.64.9.3', 'routed into the bridge, the rule still applies');
    t.equal(await request(ns.l, 'tcp', '10.98.0.11', 81), 'timeout', 'and blocks');
    const c = await nftCounters(ns.h);
    t.ok((c.get("vm 'a' if0 rule 2")?.packets ?? 0) >= 3, 'the pass rule counted the connections it let in');
    t.ok((c.get("vm 'a' if0 rule 1")?.packets ?? 0) >= 3, 'the block rule counted what it dropped');
    const mark = await execa('ip', ['netns', 'exec', ns.h, 'nft', 'list', 'chain', 'inet', 'vmd', 'fw_state_pre']);
    t.match(mark.stdout, /iifname @fw_bridges ct state established,related ct direction reply meta mark set ct mark & 0x[0-9a-f]+ \| 0x4000c000/);
  });

  await t.test('routed local link: stateful in the inet table', async (t) => {
    t.equal(await request(ns.a, 'tcp', '100.64.9.3', 80), 'l 10.98.0.11', 'from the switch network to port 80');
    t.equal(await request(ns.a, 'tcp', '100.64.9.3', 81), 'timeout', 'port 81 blocked');
    t.equal(await request(ns.h, 'tcp', '100.64.9.3', 80), 'timeout', 'the host is not in 10.98.0.0/24 as a source here');
    t.ok(await ping(ns.l, '10.98.0.12'), 'L pings out and its replies return');
    t.equal(await request(ns.l, 'tcp', '100.64.9.2', 7000), 'host 100.64.9.3', 'L reaches the host');
    t.ok(((await nftCounters(ns.h)).get("vm 'l' if0 rule 1")?.packets ?? 0) > 0);
  });

  // B (unfiltered, its addresses unbound) plants an entry "victim:81 -> X:4444" by sending from the victim's
  // address to an X nobody holds, then becomes X and "answers" towards the victim's blocked port 81: the reply
  // direction of B's own entry, which only B's link originated.
  await t.test('a guest cannot open a connection through another\'s block in by forging state', async (t) => {
    const X = '10.98.0.250';
    const plant = async (victim: string, xPort: number): Promise<void> => {
      await ip(ns.b, 'addr', 'add', `${victim}/32`, 'dev', 'eth0', 'nodad');
      await ip(ns.b, 'route', 'add', `${X}/32`, 'via', '10.98.0.1', 'src', victim);
      t.equal(await request(ns.b, 'tcp', X, xPort, `${victim}:81`), 'timeout', `B sent "${victim}:81 -> X:${xPort}" into the host`);
      await ip(ns.b, 'route', 'del', `${X}/32`);
      await ip(ns.b, 'addr', 'del', `${victim}/32`, 'dev', 'eth0');
      // The host holds the SYN while it asks for X; were B to answer as X now, the SYN would reach B, whose
      // reset would close the planted entry. B waits until the host gives up on X, as an attacker would.
      for (let i = 0; i < 50 && /INCOMPLETE/.test((await ip(ns.h, 'neigh', 'show', X)).stdout); i++) await new Promise((r) => setTimeout(r, 200));
    };
    const asX = async (victim: string, xPort: number, via: string[]): Promise<string> => {
      await ip(ns.b, 'addr', 'add', `${X}/32`, 'dev', 'eth0', 'nodad');
      await ip(ns.b, 'route', 'add', `${victim}/32`, ...via, 'src', X);
      try {
        return await request(ns.b, 'tcp', victim, 81, `${X}:${xPort}`);
      } finally {
        await ip(ns.b, 'route', 'del', `${victim}/32`);
        await ip(ns.b, 'addr', 'del', `${X}/32`, 'dev', 'eth0');
      }
    };
    t.equal(await request(ns.b, 'tcp', '10.98.0.11', 81), 'timeout', 'B cannot reach A:81 directly');
    await plant('10.98.0.11', 4444);
    t.equal(await asX('10.98.0.11', 4444, ['dev', 'eth0']), 'timeout', 'bridged A: the planted state is not A\'s, its block in holds');
    t.equal(await request(ns.b, 'tcp', '100.64.9.3', 81), 'timeout', 'B cannot reach L:81 directly');
    await plant('100.64.9.3', 4445);
    t.equal(await asX('100.64.9.3', 4445, ['via', '10.98.0.1']), 'timeout', 'routed L: the planted state is not L\'s, its block in holds');
    t.equal(await request(ns.b, 'tcp', '10.98.0.11', 80), 'a 10.98.0.12', 'what A\'s rules pass still passes');
  });

  await t.test('block out: replies of what a link let in pass, and only those', async (t) => {
    await nftApply(nftScript(livePlan('block\npass in proto tcp to port 80', 'block\npass in proto tcp from 10.98.0.0/24 to port 80')), ns.h);
    t.equal(await request(ns.b, 'tcp', '10.98.0.11', 80), 'a 10.98.0.12', 'bridged A answers B (A admitted it)');
    t.equal(await request(ns.h, 'tcp', '10.98.0.11', 80), 'a 10.98.0.1', 'and the host (a connection the host made)');
    t.equal(await request(ns.a, 'tcp', '10.98.0.12', 80), 'timeout', 'but opens nothing itself');
    t.equal(await request(ns.b, 'tcp', '100.64.9.3', 80), 'l 10.98.0.12', 'routed L answers B');
    t.equal(await request(ns.l, 'tcp', '10.98.0.12', 80), 'timeout', 'and opens nothing itself');
    await nftApply(nftScript(plan), ns.h);
  });

  await t.test('a replace keeps counters, new rules change what passes', async (t) => {
    const before = await nftCounters(ns.h);
    await nftApply(nftScript(plan, await nftCounters(ns.h)), ns.h);
    const after = await nftCounters(ns.h);
    t.equal(after.get("vm 'a' if0 rule 2")?.packets, before.get("vm 'a' if0 rule 2")?.packets, 'seeded from the old tables');
    t.equal(await request(ns.b, 'tcp', '10.98.0.11', 81), 'timeout');
    const changed = livePlan('block in\npass in proto tcp to port { 80 81 }\npass in proto icmp', 'pass');
    await nftApply(nftScript(changed), ns.h);
    t.equal(await request(ns.b, 'tcp', '10.98.0.11', 81), 'a 10.98.0.12', 'port 81 opened');
    t.ok(await ping(ns.b, '10.98.0.11'), 'ping allowed');
    t.equal(await request(ns.h, 'tcp', '100.64.9.3', 81), 'l 100.64.9.2', 'L passes everything now');
    await nftApply(nftScript(livePlan('block in proto tcp', 'pass')), ns.h);
    t.equal(await request(ns.b, 'tcp', '10.98.0.11', 80), 'timeout', 'and closed again');
  });

  await t.test('without rules, nothing of the firewall is loaded', async (t) => {
    await nftApply(nftScript({ ...plan, links: plan.links.map((l) => ({ ...l, rules: [] })) }), ns.h);
    const { stdout } = await execa('ip', ['netns', 'exec', ns.h, 'nft', 'list', 'ruleset']);
    t.notMatch(stdout, /fw_/, 'no firewall chains or sets');
    t.equal(await request(ns.b, 'tcp', '10.98.0.11', 81), 'a 10.98.0.12');
  });
});
