// End to end: one switch spanning three hosts. Three vmds in three namespaces joined by an underlay bridge the test
// makes; a guest on each leases from the one DHCP server and pings the other two; a host leaving disturbs no one.

import t from 'tap';
import { execa } from 'execa';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { capture } from '../lib/capture.js';
import { guestInitrd, guestKernel, pidsMatching, VmdHarness } from '../lib/vmd-harness.js';

const VNI = 4242;
const underlayAddr = (i: number): string => `10.96.42.${i + 1}`;

const vm = (name: string): string =>
  `vm "${name}" {\n  memory 256M\n  boot "${guestKernel}"\n  initrd "${guestInitrd}"\n` +
  `  cmdline "console=ttyS0 quiet panic=-1 vmd.hostname=${name}"\n  interface { switch "span" }\n}\n`;

/** Host i's vm.conf: the switch with every other host as a remote; only host 0 has an address and serves DHCP. */
function hostConfig(i: number, hosts: readonly number[]): string {
  const remotes = hosts.filter((j) => j !== i).map(underlayAddr).join(', ');
  return `switch "span" {\n  interface vmdtspan\n  locked lladdr\n  vxlan ${VNI} remote { ${remotes} } local ${underlayAddr(i)} dev ul0\n` +
    (i === 0 ? '  address 10.81.0.1/24\n  dhcp\n' : '') + '}\n' + vm(`g${i}`);
}

async function sh(args: string[]): Promise<string> {
  return String((await execa('ip', args)).stdout);
}

/** The destinations of the VXLAN port's all-zeros FDB entries on a host. */
async function fdbRemotes(h: VmdHarness): Promise<string[]> {
  const r = await execa('bridge', ['-n', h.netns, '-j', 'fdb', 'show', 'dev', `vx${VNI}`]);
  return (JSON.parse(String(r.stdout)) as Array<{ mac: string; dst?: string }>)
    .filter((e) => e.mac === '00:00:00:00:00:00').map((e) => e.dst ?? '').sort();
}

/** `vmctl capture ARGS` in the background; `listening` resolves once vmd said the capture runs. */
let checks = 0;

/**
 * Whether a shell command succeeds in a guest. The console echoes what is typed, so the verdict is one the shell
 * computes (`$((n+1))`), never text that also appears in the command line itself.
 */
async function guestOk(h: VmdHarness, vm: string, cmd: string): Promise<boolean> {
  const n = ++checks * 1000;
  const out = await h.console(vm, `${cmd} >/dev/null 2>&1 && echo CHECK-$((${n}+1)) || echo CHECK-$((${n}+2))\n`, new RegExp(`CHECK-(${n + 1}|${n + 2})\\b`), 40);
  return new RegExp(`CHECK-${n + 1}\\b`).test(out);
}

const leaseRe = /vmd-guest: lease eth0 (10\.81\.0\.\d+)\/24/;

t.test('a switch over three hosts: one DHCP server, a full mesh of pings, a host leaving, nothing left', async (t) => {
  const ul = `vmdt-${process.pid}-ul`;
  const hosts: VmdHarness[] = [];
  const stateDirs: string[] = [];
  t.teardown(async () => {
    for (const h of hosts) await h.teardown();
    await execa('ip', ['netns', 'del', ul], { reject: false });
  });
  for (let i = 0; i < 3; i++) {
    const h = await VmdHarness.start();
    hosts.push(h);
    stateDirs.push(h.stateDir);
  }
  // The underlay: a bridge in a namespace of its own, a veth to each host (ul0 there, 10.96.42.N).
  await execa('ip', ['netns', 'add', ul]);
  await sh(['-n', ul, 'link', 'add', 'ulbr', 'type', 'bridge']);
  await sh(['-n', ul, 'link', 'set', 'ulbr', 'up']);
  for (const [i, h] of hosts.entries()) {
    await sh(['-n', ul, 'link', 'add', `uh${i}`, 'type', 'veth', 'peer', 'name', 'ul0', 'netns', h.netns]);
    await sh(['-n', ul, 'link', 'set', `uh${i}`, 'master', 'ulbr', 'up']);
    await sh(['-n', h.netns, 'addr', 'add', `${underlayAddr(i)}/24`, 'dev', 'ul0']);
    await sh(['-n', h.netns, 'link', 'set', 'ul0', 'up']);
  }
  for (const [i, h] of hosts.entries()) {
    writeFileSync(h.configPath, hostConfig(i, [0, 1, 2]));
    const r = await h.vmctl(['reload']);
    t.equal(r.exitCode, 0, `host ${i}: reload: ${r.stderr}`);
  }
  for (const [i, h] of hosts.entries()) await h.waitState(`g${i}`, 'running', 60_000);

  for (const [i, h] of hosts.entries()) {
    t.same(await fdbRemotes(h), [0, 1, 2].filter((j) => j !== i).map(underlayAddr), `host ${i}: one all-zeros FDB entry per other host`);
    const link = JSON.parse(await sh(['-n', h.netns, '-j', 'link', 'show', 'vmdtspan'])) as Array<{ mtu: number }>;
    t.equal(link[0]?.mtu, 1450, `host ${i}: the bridge has the underlay's MTU less VXLAN's 50 bytes`);
  }

  const ips: string[] = [];
  for (const [i, h] of hosts.entries()) ips.push(leaseRe.exec(await h.console(`g${i}`, '\n', leaseRe, 90))![1]!);
  t.equal(new Set(ips).size, 3, `three different leases: ${ips.join(' ')}`);
  // Host 0's dnsmasq handed out all three; the others run no DHCP server at all.
  const leases = readFileSync(join(hosts[0]!.stateDir, 'net', 'switch-span.leases'), 'utf8');
  for (const ip of ips) t.match(leases, ` ${ip} `, `host 0's lease file has ${ip}`);
  for (const i of [1, 2]) {
    t.same(pidsMatching('dnsmasq').filter((p) => readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(hosts[i]!.stateDir)), [], `host ${i} serves no DHCP`);
  }
  const mtu = await hosts[1]!.console('g1', 'printf \'#!/bin/sh\\necho GOT-MTU=$mtu\\n\' > /tmp/m; chmod +x /tmp/m; udhcpc -i eth0 -n -q -O mtu -s /tmp/m\n', /GOT-MTU=\d+/, 30);
  t.match(mtu, /GOT-MTU=1450/, 'DHCP tells a guest on another host the switch\'s MTU');

  for (const [i, h] of hosts.entries()) {
    for (const [j, ip] of ips.entries()) {
      if (i === j) continue;
      t.ok(await guestOk(h, `g${i}`, `ping -c 2 -W 3 ${ip}`), `g${i} on host ${i} pings g${j} on host ${j}`);
    }
  }

  // Capture works on a spanned switch as on any: host 1 sees g0's pings arrive on g1's link.
  // Only g0's packets: the other guests' earlier pings may still be arriving.
  const cap = capture(hosts[1]!, ['-c', '2', 'g1', '0', 'icmp', 'and', 'src', 'host', ips[0]!]);
  await cap.listening;
  t.ok(await guestOk(hosts[0]!, 'g0', `ping -c 4 ${ips[1]}`), 'g0 pings g1 while host 1 captures');
  const capped = await cap.proc;
  t.equal(capped.exitCode, 0, cap.stderr());
  t.match(String(capped.stdout), `IP ${ips[0]} > ${ips[1]}: ICMP echo request`, 'the captured echo requests come from g0 on host 0');

  // locked lladdr holds on the remote hosts' links: g2 with another MAC reaches no one, its own MAC again does.
  t.notOk(await guestOk(hosts[2]!, 'g2', `ip link set eth0 address 52:54:00:66:66:66 && ping -c 2 -W 2 ${ips[0]}`), 'a foreign source MAC is dropped on host 2');
  const mac = (JSON.parse((await hosts[2]!.vmctl(['links', '--json'])).stdout) as { links: Array<{ lladdr: string }> }).links[0]!.lladdr;
  t.ok(await guestOk(hosts[2]!, 'g2', `ip link set eth0 address ${mac} && ping -c 2 -W 3 ${ips[0]}`), 'its own MAC passes again');

  // Host 2 leaves: its guest stops, its vmd goes, its namespace with it. The other two keep their segment, and
  // a reload on each drops host 2 from the head-end replication list.
  const gone = await hosts[2]!.vmctl(['stop', '-w', 'g2'], { timeoutMs: 60_000 });
  t.equal(gone.exitCode, 0, gone.stderr);
  await hosts[2]!.teardown();
  // Before anyone reconfigures: the two left behind still share their segment with host 2's tunnel end gone.
  t.ok(await guestOk(hosts[1]!, 'g1', `ping -c 3 -W 3 ${ips[0]}`), 'g1 reaches g0 right after host 2 left, before any reload');
  for (const i of [0, 1]) {
    writeFileSync(hosts[i]!.configPath, hostConfig(i, [0, 1]));
    const r = await hosts[i]!.vmctl(['reload']);
    t.equal(r.exitCode, 0, r.stderr);
    t.same(await fdbRemotes(hosts[i]!), [underlayAddr(1 - i)], `host ${i}: the FDB follows the reload`);
  }
  t.equal((await hosts[0]!.vmctl(['status', 'g0'])).stdout.includes('running'), true, 'g0 still runs');
  t.ok(await guestOk(hosts[0]!, 'g0', `ping -c 3 -W 3 ${ips[1]}`), 'g0 and g1 still reach each other');
  t.ok(await guestOk(hosts[1]!, 'g1', 'udhcpc -i eth0 -n -q -t 5 -T 1 -s /tmp/m'), 'host 1\'s guest still gets answers from host 0\'s DHCP server');

  for (const [i, h] of hosts.slice(0, 2).entries()) {
    t.equal((await h.vmctl(['stop', '-w', `g${i}`], { timeoutMs: 60_000 })).exitCode, 0, `g${i} stops`);
    await h.teardown();
  }
  await execa('ip', ['netns', 'del', ul], { reject: false });
  const names = existsSync('/run/netns') ? readdirSync('/run/netns') : [];
  t.same(names.filter((n) => n.startsWith(`vmdt-${process.pid}-`)), [], 'no namespace left');
  t.same(stateDirs.flatMap((d) => pidsMatching(d)), [], 'no guest, vmd or dnsmasq left');
});
