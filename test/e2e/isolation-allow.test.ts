// End to end: `allow dhcp` and `allow router` let a deliberate server VM do on a dhcp switch what vmd drops
// from other guests: D's DHCP offers and router advertisements reach C, and D may send from any address.

import t from 'tap';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FirewallResponse, LinksResponse } from '../../share/protocol.js';
import { captured, initrdWithTools, sh, vm } from '../lib/guest-tools.js';
import { VmdHarness } from '../lib/vmd-harness.js';

const config = (initrd: string): string =>
  `switch "lan" {\n  interface vmdtia0\n  address 10.71.0.1/24\n  dhcp\n}\n` +
  vm('c', initrd, 'interface { switch "lan" }') +
  vm('d', initrd, 'interface {\n    switch "lan"\n    allow dhcp\n    allow router\n  }');

t.test('allow dhcp and allow router: a deliberate server VM serves and advertises', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-isolation-'));
  chmodSync(dir, 0o755);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const h = await VmdHarness.start({ config: config(await initrdWithTools(dir)) });
  t.teardown(() => h.teardown());
  for (const n of ['c', 'd']) await h.waitState(n, 'running', 40_000);
  const lease = async (n: string): Promise<string> => /vmd-guest: lease eth0 (10\.71\.0\.\d+)\/24/.exec(await h.console(n, '\n', /vmd-guest: lease eth0 (10\.71\.0\.\d+)\/24/, 60))![1]!;
  await lease('c');
  const ipD = await lease('d');
  const links = JSON.parse((await h.vmctl(['links', '--json'])).stdout) as LinksResponse;
  const linkOf = (n: string) => links.links.find((l) => l.vm === n)!;
  const macD = linkOf('d').lladdr;

  await t.test('D is not bound to its lease', async (t) => {
    const fw = JSON.parse((await h.vmctl(['firewall', '--json', 'd'])).stdout) as FirewallResponse;
    t.equal(fw.interfaces[0]!.lockedIp, null, 'no address lock');
    const fwC = JSON.parse((await h.vmctl(['firewall', '--json', 'c'])).stdout) as FirewallResponse;
    t.match(fwC.interfaces[0]!.lockedIp, /^10\.71\.0\.\d+$/, 'while C, without the options, is');
  });

  await t.test('D\'s DHCP offers reach C', async (t) => {
    for (const line of ['start 10.71.0.220', 'end 10.71.0.230', 'interface eth0', 'opt subnet 255.255.255.0', 'lease_file /tmp/u.leases']) {
      await sh(h, 'd', `echo '${line}' >> /tmp/u.conf`);
    }
    await sh(h, 'd', 'touch /tmp/u.leases; udhcpd -a 100 /tmp/u.conf; pidof udhcpd');
    const seen = await captured(h.netns, linkOf('c').link, 'udp src port 67', async () => {
      await sh(h, 'c', 'udhcpc -i eth0 -n -q -t 3 -T 1 -s /bin/true 2>&1', 30);
    });
    t.match(seen, new RegExp(`${ipD.replace(/\./g, '\\.')}\\.67 >`), 'an offer from D on C\'s link');
  });

  await t.test('D\'s router advertisements reach C, which takes D as its IPv6 router', async (t) => {
    const ll = /inet6 (fe80::[0-9a-f:]+)\//.exec(await sh(h, 'd', 'ip -6 addr show dev eth0 scope link'))![1]!;
    const seen = await captured(h.netns, linkOf('c').link, 'icmp6 and ip6[40] == 134', async () => {
      t.match(await sh(h, 'd', 'vmd-tool ra eth0 3'), /vmd-tool: sent 3/, 'D sent three');
    });
    t.match(seen, new RegExp(macD), 'on C\'s link');
    t.match(await sh(h, 'c', 'ip -6 route show default'), new RegExp(`default via ${ll}`), 'C\'s default route is D');
  });
});
