// End to end: on a switch where vmd serves DHCP, one guest cannot undo another's isolation. B forges state to
// reach A through A's `block in` (there and on a switch without dhcp, where nothing binds addresses); B runs a
// rogue DHCP server, sends router advertisements and answers ARP for the host's address towards C. Each attack
// is what a guest's root can do; vmd's defaults stop each one.

import t from 'tap';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type { FirewallResponse, LinksResponse } from '../../share/protocol.js';
import { captured, initrdWithTools, sh, vm } from '../lib/guest-tools.js';
import { VmdHarness } from '../lib/vmd-harness.js';

// "open" has no dhcp: vmd knows no addresses there and binds none; only per-link state stands in B's way.
const config = (initrd: string): string =>
  `switch "lan" {\n  interface vmdtis0\n  address 10.72.0.1/24\n  dhcp\n}\n` +
  `switch "open" {\n  interface vmdtis1\n  address 10.73.0.1/24\n}\n` +
  vm('a', initrd, 'interface {\n    switch "lan"\n    block in\n  }\n  interface {\n    switch "open"\n    block in\n  }') +
  vm('b', initrd, 'interface { switch "lan" }\n  interface { switch "open" }') +
  vm('c', initrd, 'interface { switch "lan" }');

t.test('on a dhcp switch a guest cannot forge state, serve DHCP, advertise routes or claim the host\'s address', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-isolation-'));
  chmodSync(dir, 0o755);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const h = await VmdHarness.start({ config: config(await initrdWithTools(dir)) });
  t.teardown(() => h.teardown());
  for (const n of ['a', 'b', 'c']) await h.waitState(n, 'running', 40_000);
  const lease = async (n: string): Promise<string> => /vmd-guest: lease eth0 (10\.72\.0\.\d+)\/24/.exec(await h.console(n, '\n', /vmd-guest: lease eth0 (10\.72\.0\.\d+)\/24/, 60))![1]!;
  const ipA = await lease('a');
  const ipB = await lease('b');
  await lease('c');
  const links = JSON.parse((await h.vmctl(['links', '--json'])).stdout) as LinksResponse;
  const linkOf = (n: string) => links.links.find((l) => l.vm === n && l.index === 0)!;
  const macB = linkOf('b').lladdr;
  const ipSpoofB = async (): Promise<number> =>
    (JSON.parse((await h.vmctl(['firewall', '--json', 'b'])).stdout) as FirewallResponse).interfaces[0]!.ipSpoof?.packets ?? 0;

  await t.test('B takes A\'s address to plant state, then cannot use it to pass A\'s block in', async (t) => {
    t.match(await sh(h, 'b', `nc -w 2 ${ipA} 80 </dev/null && echo CONNECTED || echo REFUSED`), /REFUSED/, 'B cannot reach A:80 directly');
    const before = await ipSpoofB();
    // "A:80 -> X:4444" through the host, X an address nobody holds yet; B's own httpd must free port 80.
    await sh(h, 'b', `killall httpd; ip addr add ${ipA}/32 dev eth0`);
    await sh(h, 'b', `ip route add 10.72.0.250/32 via 10.72.0.1 dev eth0 src ${ipA}`);
    await sh(h, 'b', `vmd-tool tcp ${ipA} 80 10.72.0.250 4444`);
    await sh(h, 'b', `ip route del 10.72.0.250/32; ip addr del ${ipA}/32 dev eth0`);
    // B becomes X and "answers": the reply direction of the planted connection, towards A:80.
    await sh(h, 'b', `ip addr add 10.72.0.250/32 dev eth0 && ip route add ${ipA}/32 dev eth0 src 10.72.0.250`);
    const page = await sh(h, 'b', `vmd-tool tcp 10.72.0.250 4444 ${ipA} 80`);
    await sh(h, 'b', `ip route del ${ipA}/32; ip addr del 10.72.0.250/32 dev eth0`);
    t.notMatch(page, /HTTP\/1\.[01] 200|^a\r?$/m, 'A\'s page does not come back: the forged state is not honoured');
    t.ok((await ipSpoofB()) > before, 'B\'s foreign source addresses were dropped and counted');
  });

  await t.test('on a switch without dhcp, B\'s forged state does not pass A\'s block in either', async (t) => {
    const ipA1 = '10.73.0.11';
    const X = '10.73.0.250';
    await sh(h, 'a', `ip link set eth1 up; ip addr add ${ipA1}/24 dev eth1`);
    await sh(h, 'b', `ip link set eth1 up; ip addr add 10.73.0.12/24 dev eth1`);
    t.match(await sh(h, 'b', `nc -w 2 ${ipA1} 80 </dev/null && echo CONNECTED || echo REFUSED`), /REFUSED/, 'B cannot reach A:80 directly');
    // Nothing binds B's addresses here: it sends "A:80 -> X:4444" through the host as A.
    await sh(h, 'b', `killall httpd; ip addr add ${ipA1}/32 dev eth1 && ip route add ${X}/32 via 10.73.0.1 dev eth1 src ${ipA1}`);
    t.match(await sh(h, 'b', `vmd-tool tcp ${ipA1} 80 ${X} 4444; echo SENT`), /SENT/);
    await sh(h, 'b', `ip route del ${X}/32; ip addr del ${ipA1}/32 dev eth1`);
    // The host holds the SYN while it asks for X; B waits until it gives up, so the SYN never reaches B as X.
    for (let i = 0; i < 50 && /INCOMPLETE/.test((await execa('ip', ['-n', h.netns, 'neigh', 'show', X])).stdout); i++) await new Promise((r) => setTimeout(r, 200));
    await sh(h, 'b', `ip addr add ${X}/32 dev eth1 && ip route add ${ipA1}/32 dev eth1 src ${X}`);
    const page = await sh(h, 'b', `vmd-tool tcp ${X} 4444 ${ipA1} 80`);
    await sh(h, 'b', `ip route del ${ipA1}/32; ip addr del ${X}/32 dev eth1`);
    t.notMatch(page, /HTTP\/1\.[01] 200|^a\r?$/m, 'A\'s page does not come back: the state is B\'s, not A\'s');
    t.match(await sh(h, 'a', `nc -w 2 10.73.0.12 80 </dev/null; ping -c 1 -W 2 10.73.0.12 >/dev/null && echo PONG`), /PONG/, 'A\'s own connections still get their replies');
  });

  await t.test('a rogue DHCP server in B hands C nothing', async (t) => {
    for (const line of ['start 10.72.0.220', 'end 10.72.0.230', 'interface eth0', 'opt router 10.72.0.66', 'opt subnet 255.255.255.0', 'lease_file /tmp/u.leases']) {
      await sh(h, 'b', `echo '${line}' >> /tmp/u.conf`);
    }
    await sh(h, 'b', 'touch /tmp/u.leases; udhcpd -a 100 /tmp/u.conf; pidof udhcpd');
    await sh(h, 'c', `printf '#!/bin/sh\\n' > /tmp/show.sh; chmod +x /tmp/show.sh`);
    await sh(h, 'c', `echo 'echo "DHCP $1 server=$serverid router=$router ip=$ip"' >> /tmp/show.sh`);
    const seen = await captured(h.netns, linkOf('c').link, 'udp src port 67', async () => {
      const got = await sh(h, 'c', 'for i in 1 2 3; do udhcpc -i eth0 -n -q -t 3 -T 1 -s /tmp/show.sh 2>&1 | grep "^DHCP bound"; done', 60);
      t.notMatch(got, /server=(?!10\.72\.0\.1 )/, 'every lease C takes comes from vmd\'s server');
      t.match(got, /DHCP bound server=10\.72\.0\.1 router=10\.72\.0\.1/, 'and C does get one');
    });
    t.notMatch(seen, new RegExp(`${ipB.replace(/\./g, '\\.')}\\.67 >`), 'no DHCP reply from B reaches C\'s link');
    const fwB = (JSON.parse((await h.vmctl(['firewall', '--json', 'b'])).stdout) as FirewallResponse).interfaces[0]!;
    t.same(fwB.guarded, ['dhcp', 'router'], 'vmctl firewall names what B may not offer');
    t.ok((fwB.guard?.packets ?? 0) > 0, 'and counts what it dropped');
    t.match((await h.vmctl(['firewall', 'b', '0'])).stdout, /\(dropped: DHCP replies and router advertisements and redirects from the guest\)/);
    await sh(h, 'b', 'killall udhcpd');
  });

  await t.test('B\'s router advertisements do not reach C', async (t) => {
    const seen = await captured(h.netns, linkOf('c').link, 'icmp6 and ip6[40] == 134', async () => {
      t.match(await sh(h, 'b', 'vmd-tool ra eth0 3'), /vmd-tool: sent 3/, 'B sent three');
    });
    t.notMatch(seen, new RegExp(macB), 'none from B on C\'s link');
    t.notMatch(await sh(h, 'c', 'ip -6 route show default; ip -6 addr show dev eth0'), /default via|2001:db8:66:/, 'C took no route and no address from them');
  });

  await t.test('B\'s ARP replies claiming the host\'s address do not reach C', async (t) => {
    const hostMac = /lladdr (\S+)/.exec(await sh(h, 'c', 'ping -c 1 -W 2 10.72.0.1 >/dev/null; ip neigh show 10.72.0.1'))?.[1];
    t.ok(hostMac !== undefined && hostMac !== macB, `C knows the host's MAC (${hostMac})`);
    await new Promise((r) => setTimeout(r, 1500));
    const seen = await captured(h.netns, linkOf('c').link, 'arp', async () => {
      await sh(h, 'b', 'sysctl -qw net.ipv4.ip_nonlocal_bind=1');
      await sh(h, 'b', 'arping -A -c 3 -I eth0 -s 10.72.0.1 10.72.0.1', 20);
    });
    t.notMatch(seen, new RegExp(`${macB} .*Reply 10\\.72\\.0\\.1 is-at`), 'no reply from B on C\'s link');
    t.match(await sh(h, 'c', 'ip neigh show 10.72.0.1'), new RegExp(`lladdr ${hostMac}`), 'C still has the host\'s MAC for it');
  });
});
