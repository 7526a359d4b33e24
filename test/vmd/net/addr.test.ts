// Unit tests for vmd/net/addr: link names, aliases, stable MACs and OpenBSD's local-interface address rule
// (ids 1, 255, 256, 4096, interfaces 0–3, prefix exhaustion, the /96 IPv6 form).

import t from 'tap';
import { DEFAULT_LOCAL_PREFIX } from '../../../share/config.js';
import {
  formatIPv6, linkAlias, linkName, localAddr4, localAddr6, localHostMac, parseIPv4, parseIPv6, rdomainNetns, stableMac,
} from '../../../vmd/net/addr.js';

t.test('link names fit IFNAMSIZ and aliases follow OpenBSD', async (t) => {
  t.equal(linkName(1, 0), 'vmd1i0');
  t.equal(linkName(4096, 3), 'vmd4096i3');
  t.equal(linkName(999_999_999, 3), 'vmd999999999i3');
  t.ok(linkName(999_999_999, 99).length <= 15);
  t.throws(() => linkName(1_000_000_000, 0), { code: 'ERR_INVALID' });
  t.throws(() => linkName(-1, 0), { code: 'ERR_INVALID' });
  t.throws(() => linkName(1, 1.5), { code: 'ERR_INVALID' });
  t.equal(linkAlias(1, 0, 'myvm'), 'vm1-if0-myvm');
  t.equal(linkAlias(12, 3, 'web'), 'vm12-if3-web');
  t.equal(rdomainNetns(0), 'vmd-rdomain0');
  t.equal(rdomainNetns(7), 'vmd-rdomain7');
  t.throws(() => rdomainNetns(256), { code: 'ERR_INVALID' });
});

t.test('localHostMac: the host side of a local link follows the guest MAC, never equals it', async (t) => {
  t.equal(localHostMac('fe:e1:bb:12:34:50'), 'fe:e1:ba:12:34:50');
  t.equal(localHostMac('52:54:00:AB:CD:EF'), 'fe:e1:ba:ab:cd:ef', 'any guest MAC');
  t.equal(localHostMac('fe:e1:ba:01:02:03'), 'fe:e1:b9:01:02:03', 'a guest that took the host prefix');
});

t.test('stableMac: locally administered, fe:e1:bb prefix, stable per VM and NIC', async (t) => {
  const a = stableMac(1, 'web', 0);
  t.match(a, /^fe:e1:bb:[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$/);
  t.equal(parseInt(a.slice(0, 2), 16) & 0x02, 0x02, 'locally administered bit');
  t.equal(parseInt(a.slice(0, 2), 16) & 0x01, 0, 'unicast');
  t.equal(stableMac(1, 'web', 0), a, 'same input, same MAC');
  t.not(stableMac(1, 'web', 1), a);
  t.not(stableMac(2, 'web', 0), a);
  t.not(stableMac(1, 'db', 0), a);
  t.equal(parseInt(stableMac(3, 'x', 2).slice(-1), 16), 2, 'low nibble is the NIC index');
  // Pinned values (computed by parent.ts's original): moving the code must not change the MACs of existing VMs.
  t.equal(stableMac(1, 'web', 0), 'fe:e1:bb:dc:c7:c0');
  t.equal(stableMac(4096, 'db', 3), 'fe:e1:bb:bd:e4:93');
});

t.test('localAddr4: OpenBSD rule with the default 100.64.0.0/10', async (t) => {
  const p = DEFAULT_LOCAL_PREFIX;
  const cases: Array<[number, number, string, string]> = [
    [1, 0, '100.64.1.2', '100.64.1.3'],
    [1, 1, '100.64.1.4', '100.64.1.5'],
    [1, 2, '100.64.1.6', '100.64.1.7'],
    [1, 3, '100.64.1.8', '100.64.1.9'],
    [255, 0, '100.64.255.2', '100.64.255.3'],
    [255, 3, '100.64.255.8', '100.64.255.9'],
    [256, 0, '100.65.0.2', '100.65.0.3'],
    [256, 1, '100.65.0.4', '100.65.0.5'],
    [257, 0, '100.65.1.2', '100.65.1.3'],
    [4096, 0, '100.80.0.2', '100.80.0.3'],
    [4096, 3, '100.80.0.8', '100.80.0.9'],
    [16383, 0, '100.127.255.2', '100.127.255.3'],
    [16383, 126, '100.127.255.254', '100.127.255.255'],
  ];
  for (const [id, idx, host, guest] of cases) t.same(localAddr4(p, id, idx), { host, guest, prefixLen: 31 }, `vm ${id} if ${idx}`);
});

t.test('localAddr4: exhaustion and bad indexes give OpenBSD\'s message', async (t) => {
  const p = DEFAULT_LOCAL_PREFIX;
  t.throws(() => localAddr4(p, 16384, 0), { code: 'ERR_INVALID', message: 'dhcp address range exceeded, vm id 16384 interface 0' });
  t.throws(() => localAddr4(p, 1, 0x7f), { code: 'ERR_INVALID', message: 'dhcp address range exceeded, vm id 1 interface 127' });
  t.throws(() => localAddr4(p, 2 ** 40, 0), { message: /^dhcp address range exceeded/ });
  t.throws(() => localAddr4(p, -1, 0), { message: /^dhcp address range exceeded/ });
  const p16 = { address: '10.1.0.0', length: 16 };
  t.same(localAddr4(p16, 255, 3), { host: '10.1.255.8', guest: '10.1.255.9', prefixLen: 31 });
  t.throws(() => localAddr4(p16, 256, 0), { message: 'dhcp address range exceeded, vm id 256 interface 0' });
  const p24 = { address: '192.168.5.0', length: 24 };
  t.same(localAddr4(p24, 0, 0), { host: '192.168.5.2', guest: '192.168.5.3', prefixLen: 31 }, 'only id 0 fits a /24');
  t.throws(() => localAddr4(p24, 1, 0), { message: 'dhcp address range exceeded, vm id 1 interface 0' });
  // Host bits in the configured prefix do not leak into the addresses.
  t.same(localAddr4({ address: '100.64.7.9', length: 10 }, 1, 0).host, '100.64.1.2');
});

t.test('IPv4/IPv6 text helpers', async (t) => {
  t.equal(parseIPv4('100.64.1.2'), 0x64400102);
  t.equal(parseIPv4('255.255.255.255'), 0xffffffff);
  t.throws(() => parseIPv4('1.2.3.256'), { code: 'ERR_INVALID' });
  t.throws(() => parseIPv4('1.2.3'), { code: 'ERR_INVALID' });
  t.equal(formatIPv6(parseIPv6('fd00::')), 'fd00::');
  t.equal(formatIPv6(parseIPv6('::')), '::');
  t.equal(formatIPv6(parseIPv6('2001:DB8:0:0:1:0:0:1')), '2001:db8::1:0:0:1');
  t.equal(formatIPv6(parseIPv6('::ffff:1.2.3.4')), '::ffff:102:304');
  t.equal(formatIPv6(parseIPv6('1:2:3:4:5:6:7:8')), '1:2:3:4:5:6:7:8');
  t.throws(() => parseIPv6('1::2::3'), { code: 'ERR_INVALID' });
  t.throws(() => parseIPv6('1:2:3'), { code: 'ERR_INVALID' });
  t.throws(() => parseIPv6('12345::'), { code: 'ERR_INVALID' });
});

t.test('localAddr6: prefix, bytes 8–11 = guest IPv4, byte 15 = 1 host / 2 guest, /96', async (t) => {
  const v4 = localAddr4(DEFAULT_LOCAL_PREFIX, 1, 0);
  t.same(localAddr6({ address: 'fd00:1:2:3::', length: 64 }, v4), {
    host: 'fd00:1:2:3:6440:103:0:1', guest: 'fd00:1:2:3:6440:103:0:2', prefixLen: 96,
  });
  t.same(localAddr6({ address: 'fd12:3456:789a::', length: 48 }, '100.65.0.3'), {
    host: 'fd12:3456:789a:0:6441:3:0:1', guest: 'fd12:3456:789a:0:6441:3:0:2', prefixLen: 96,
  });
  t.throws(() => localAddr6({ address: 'fd00::', length: 80 }, v4), { code: 'ERR_INVALID' });
});
