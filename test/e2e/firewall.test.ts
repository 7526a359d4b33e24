// End to end: the hypervisor firewall with real guests on a switch and on a local interface. Rules from
// vm.conf filter what reaches a guest, statefully; `vmctl reload` changes them while the guest runs; a guest
// that takes another MAC or source address is cut off until it gives it back; counters show all of it.

import t from 'tap';
import { writeFileSync } from 'node:fs';
import { execa } from 'execa';
import type { FirewallResponse, LinksResponse } from '../../share/protocol.js';
import { guestInitrd, guestKernel, VmdHarness } from '../lib/vmd-harness.js';

const vm = (name: string, iface: string): string =>
  `vm "${name}" {\n  memory 256M\n  boot "${guestKernel}"\n  initrd "${guestInitrd}"\n` +
  `  cmdline "console=ttyS0 quiet panic=-1 vmd.hostname=${name}"\n  ${iface}\n}\n`;

const config = (rulesA: string): string =>
  `web_ports = "{ 80 }"\n` +
  `switch "lan" {\n  interface vmdtfw0\n  address 10.76.0.1/24\n  dhcp\n}\n` +
  vm('a', `interface {\n    switch "lan"\n${rulesA}\n  }`) +
  vm('b', 'interface { switch "lan"\n locked lladdr }') +
  vm('l', 'local interface {\n    block in\n    pass in proto tcp to port 80\n  }') +
  `switch "red" {\n  interface vmdtfwr\n  rdomain 7\n  address 10.75.0.1/24\n  dhcp\n}\n` +
  vm('r', 'interface {\n    switch "red"\n    block out proto icmp to 10.75.0.1\n  }');

const RULES_1 = '    block in\n    pass in proto tcp to port $web_ports';
const RULES_2 = '    block in\n    pass in proto tcp to port { 80 8081 }\n    pass in proto icmp';

let seq = 0;
/** Runs a shell command on a guest's console and returns its output up to a unique end marker. */
async function sh(h: VmdHarness, name: string, cmd: string, timeoutSec = 25): Promise<string> {
  const tag = `E${++seq}X`;
  const out = await h.console(name, `${cmd}; echo ${tag}-$?-END\n`, new RegExp(`${tag}-\\d+-END`), timeoutSec);
  return out.slice(0, out.lastIndexOf(`${tag}-`));
}

async function inNs(ns: string, cmd: string[]): Promise<{ out: string; code: number }> {
  const r = await execa('ip', ['netns', 'exec', ns, ...cmd], { reject: false, timeout: 15_000, all: true });
  return { out: String(r.all ?? ''), code: r.exitCode ?? 1 };
}

/** A TCP connection from inside a namespace: the first line the server sends, or 'FAIL'. */
async function tcp(ns: string, host: string, port: number): Promise<string> {
  const r = await inNs(ns, [process.execPath, '-e',
    `const s = require('net').connect(${port}, ${JSON.stringify(host)}); s.setTimeout(3000, () => { console.log('FAIL'); process.exit(0); });
     s.on('connect', () => s.write('GET / HTTP/1.0\\r\\n\\r\\n')); let d = ''; s.on('data', (c) => { d += c; });
     s.on('end', () => { console.log(d.split('\\r\\n\\r\\n')[1] ?? d); process.exit(0); }); s.on('error', () => { console.log('FAIL'); process.exit(0); });`]);
  return r.out.trim();
}

const firewall = async (h: VmdHarness, name: string): Promise<FirewallResponse> =>
  JSON.parse((await h.vmctl(['firewall', '--json', name])).stdout) as FirewallResponse;

t.test('firewall, reload, address locks: real guests', async (t) => {
  const h = await VmdHarness.start({ config: config(RULES_1) });
  t.teardown(() => h.teardown());
  for (const n of ['a', 'b', 'l', 'r']) await h.waitState(n, 'running', 40_000);
  const lease = async (n: string, re: RegExp): Promise<string> => re.exec(await h.console(n, '\n', re, 60))![1]!;
  const ipA = await lease('a', /vmd-guest: lease eth0 (10\.76\.0\.\d+)\/24/);
  const ipB = await lease('b', /vmd-guest: lease eth0 (10\.76\.0\.\d+)\/24/);
  const ipL = await lease('l', /vmd-guest: lease eth0 (100\.64\.\d+\.\d+)\/31/);
  const gwL = ipL.replace(/\d+$/, (x) => String(Number(x) - 1));
  // A second service on A and on L that the rules do not let in.
  await sh(h, 'a', 'httpd -p 8081 -h /www');
  await sh(h, 'l', 'httpd -p 8081 -h /www');

  await t.test('block in + pass in tcp/80: B gets the page, not the other port, no ping; A\'s own traffic flows', async (t) => {
    t.match(await sh(h, 'b', `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${ipA} 80`), /\ba\r?\n/, 'B gets A\'s HTTP page');
    t.match(await sh(h, 'b', `nc -w 2 ${ipA} 8081 </dev/null && echo CONNECTED || echo REFUSED`), /REFUSED/, 'but not port 8081');
    t.match(await sh(h, 'b', `ping -c 2 -W 1 ${ipA}`), /0 packets received/, 'B cannot ping A');
    t.match(await sh(h, 'a', `ping -c 2 -W 2 ${ipB}`), /[12] packets received/, 'A pings B and the replies come back');
    t.equal(await tcp(h.netns, ipA, 80), 'a', 'the host gets the page too');
    t.equal(await tcp(h.netns, ipA, 8081), 'FAIL', 'and is refused the other port');
    const fw = await firewall(h, 'a');
    const rules = fw.interfaces[0]!.rules;
    t.same(rules.map((r) => r.text), ['block in', 'pass in proto tcp to port { 80 }'], 'the rules as written, macro expanded');
    t.ok(rules[0]!.count!.packets > 0, 'the block rule counted');
    t.ok(rules[1]!.count!.packets > 0, 'the pass rule counted');
    const table = await h.vmctl(['firewall', 'a']);
    t.match(table.stdout, /^VM\s+IF\s+#\s+PACKETS\s+BYTES\s+RULE\n/);
    t.match(table.stdout, /\ba\s+0\s+2\s+[1-9]\d*\s+\S+\s+pass in proto tcp to port \{ 80 \}\n/);
    const links = JSON.parse((await h.vmctl(['links', '--json', 'a'])).stdout) as LinksResponse;
    t.ok(links.links[0]!.blocked > 0, 'vmctl links counts the blocked packets');
  });

  await t.test('reload while A runs changes what B can reach', async (t) => {
    const pid = (await h.vmctl(['status', 'a'])).stdout.split('\n')[1]!.trim().split(/\s+/)[1];
    writeFileSync(h.configPath, config(RULES_2));
    const r = await h.vmctl(['reload']);
    t.equal(r.exitCode, 0, r.stderr);
    t.match(await sh(h, 'b', `nc -w 3 ${ipA} 8081 </dev/null && echo CONNECTED || echo REFUSED`), /CONNECTED/, 'port 8081 open now');
    t.match(await sh(h, 'b', `ping -c 2 -W 1 ${ipA}`), /[12] packets received/, 'and ping');
    t.equal((await h.vmctl(['status', 'a'])).stdout.split('\n')[1]!.trim().split(/\s+/)[1], pid, 'A was not restarted');
    const fw = await firewall(h, 'a');
    t.same(fw.interfaces[0]!.rules.map((r) => r.text), ['block in', 'pass in proto tcp to port { 80 8081 }', 'pass in proto icmp']);
    writeFileSync(h.configPath, config(RULES_1));
    t.equal((await h.vmctl(['reload'])).exitCode, 0);
    t.match(await sh(h, 'b', `nc -w 2 ${ipA} 8081 </dev/null && echo CONNECTED || echo REFUSED`), /REFUSED/, 'closed again');
  });

  await t.test('locked lladdr: another MAC is cut off, the counter rises, the own MAC works again', async (t) => {
    const mac = /link\/ether (\S+)/.exec(await sh(h, 'b', 'ip link show eth0'))![1]!;
    t.match(await sh(h, 'b', 'ping -c 1 -W 2 10.76.0.1'), /1 packets received/, 'B reaches the host');
    const before = (await firewall(h, 'b')).interfaces[0]!.macSpoof!.packets;
    const spoofed = await sh(h, 'b', 'ip link set eth0 address 52:54:00:de:ad:01 && ping -c 2 -W 1 10.76.0.1; ip link set eth0 address ' + mac);
    t.match(spoofed, /0 packets received/, 'with another MAC nothing gets through');
    const after = (await firewall(h, 'b')).interfaces[0]!.macSpoof!.packets;
    t.ok(after > before, `mac-spoof drops rose (${before} → ${after})`);
    t.match(await sh(h, 'b', 'ping -c 1 -W 2 10.76.0.1'), /1 packets received/, 'own MAC again: traffic flows');
    const links = JSON.parse((await h.vmctl(['links', '--json', 'b'])).stdout) as LinksResponse;
    t.ok(links.links[0]!.spoofDropped > 0, 'vmctl links shows the spoofing drops');
  });

  await t.test('locked lladdr on a dhcp switch also locks the source address to the lease', async (t) => {
    t.equal((await firewall(h, 'b')).interfaces[0]!.lockedIp, ipB, 'locked to the lease vmd gave it');
    const spoofed = await sh(h, 'b', `ip addr add 10.76.0.250/32 dev eth0 && ping -c 2 -W 1 -I 10.76.0.250 10.76.0.1; ip addr del 10.76.0.250/32 dev eth0`);
    t.match(spoofed, /0 packets received/, 'another source address gets nowhere');
    t.ok((await firewall(h, 'b')).interfaces[0]!.ipSpoof!.packets > 0, 'ip-spoof drops counted');
    t.match(await sh(h, 'b', 'ping -c 1 -W 2 10.76.0.1'), /1 packets received/, 'the leased address still works');
  });

  await t.test('local interface: rules in the routed path, and a foreign source address is dropped', async (t) => {
    t.equal(await tcp(h.netns, ipL, 80), 'l', 'port 80 from the host');
    t.equal(await tcp(h.netns, ipL, 8081), 'FAIL', 'not port 8081');
    t.match(await sh(h, 'l', `ping -c 1 -W 2 ${gwL}`), /1 packets received/, 'L pings its gateway (state)');
    const spoofed = await sh(h, 'l', `ip addr add 100.64.250.9/32 dev eth0 && ping -c 2 -W 1 -I 100.64.250.9 ${gwL}; ip addr del 100.64.250.9/32 dev eth0`);
    t.match(spoofed, /0 packets received/, 'a source address it was not given gets nowhere');
    const fw = (await firewall(h, 'l')).interfaces[0]!;
    t.equal(fw.lockedIp, ipL);
    t.ok(fw.ipSpoof!.packets > 0, 'ip-spoof drops counted');
    t.match(await sh(h, 'l', `ping -c 1 -W 2 ${gwL}`), /1 packets received/, 'its own address works again');
  });

  await t.test('in an rdomain: the lease still comes, the rule applies in the namespace', async (t) => {
    await lease('r', /vmd-guest: lease eth0 (10\.75\.0\.\d+)\/24/);
    t.match(await sh(h, 'r', 'ping -c 2 -W 1 10.75.0.1'), /0 packets received/, 'ICMP to the gateway is blocked');
    const fw = (await firewall(h, 'r')).interfaces[0]!;
    t.ok(fw.rules[0]!.count!.packets >= 2, 'the block rule counted in the rdomain\'s own tables');
  });

  await t.test('a stopped VM shows its rules without counters; errors name the VM', async (t) => {
    t.equal((await h.vmctl(['stop', '-w', 'l'])).exitCode, 0);
    const fw = (await firewall(h, 'l')).interfaces[0]!;
    t.same(fw.rules.map((r) => r.count), [null, null]);
    t.equal(fw.link, null);
    const bad = await h.vmctl(['firewall', 'l', '3']);
    t.equal(bad.exitCode, 1);
    t.match(bad.stderr, /vmctl: vm "l": interface 3: no such interface/);
    t.match((await h.vmctl(['firewall', 'nosuch'])).stderr, /vm "nosuch": not found|nosuch/);
  });
});
