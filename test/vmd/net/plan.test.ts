// Tests for vmd/net/plan: what a link is bound to and guarded against by default, and how `allow dhcp` and
// `allow router` (parsed from vm.conf) change it.

import t from 'tap';
import { parseConfigText } from '../../../grammar/parse.js';
import { guardOf, linkLocalOf, lockedIpOf, netPlanOf, type LinkState } from '../../../vmd/net/plan.js';
import { nftScript } from '../../../vmd/net/nft.js';

type Binding = Pick<LinkState, 'local' | 'lockMac' | 'fixed' | 'allow' | 'spanned'>;
const onSwitch = (over: Partial<Binding> = {}): Binding => ({ local: null, lockMac: false, fixed: '10.0.0.7', allow: [], ...over });

t.test('where vmd gave the address, the link is bound to it and guarded', async (t) => {
  t.equal(lockedIpOf(onSwitch()), '10.0.0.7', 'a dhcp switch: the fixed lease');
  t.same(guardOf(onSwitch()), { dhcp: true, router: true }, 'no DHCP replies, RAs or redirects');
  const local = { local: { host: '100.64.1.2', guest: '100.64.1.3' }, lockMac: false, fixed: null, allow: [] };
  t.equal(lockedIpOf(local), '100.64.1.3', 'a local interface: its half of the /31');
  t.same(guardOf(local), { dhcp: true, router: true });
  t.equal(lockedIpOf(onSwitch({ fixed: null })), null, 'a switch without dhcp binds nothing');
  t.equal(guardOf(onSwitch({ fixed: null })), null, 'and guards nothing');
  t.same(guardOf(onSwitch({ fixed: null, spanned: true })), { dhcp: true, router: true }, 'unless it spans hosts: the server may be on another');
  t.same(guardOf(onSwitch({ fixed: null, spanned: true, allow: ['dhcp'] })), { dhcp: false, router: true }, 'allow dhcp lifts that too');
  t.equal(lockedIpOf(onSwitch({ fixed: null, spanned: true })), null, 'and no address is bound there');
});

t.test('allow dhcp and allow router lift what they name', async (t) => {
  t.same(guardOf(onSwitch({ allow: ['dhcp'] })), { dhcp: false, router: true });
  t.equal(lockedIpOf(onSwitch({ allow: ['dhcp'] })), '10.0.0.7', 'a DHCP server stays bound');
  t.same(guardOf(onSwitch({ allow: ['router'] })), { dhcp: true, router: false });
  t.equal(lockedIpOf(onSwitch({ allow: ['router'] })), null, 'a router may send from any address');
  t.equal(lockedIpOf(onSwitch({ allow: ['router'], lockMac: true })), '10.0.0.7', 'unless locked lladdr binds it');
  t.equal(guardOf(onSwitch({ allow: ['dhcp', 'router'] })), null, 'both: nothing guarded');
  const local = { local: { host: '100.64.1.2', guest: '100.64.1.3' }, lockMac: false, fixed: null, allow: ['router' as const] };
  t.equal(lockedIpOf(local), '100.64.1.3', 'a local interface stays bound');
});

t.test('the link-local address a kernel derives from the lladdr (EUI-64)', async (t) => {
  t.equal(linkLocalOf('fe:e1:bb:00:0b:00'), 'fe80::fce1:bbff:fe00:b00');
  t.equal(linkLocalOf('52:54:00:12:34:56'), 'fe80::5054:ff:fe12:3456');
});

t.test('vm.conf: allow dhcp and allow router in an interface block', async (t) => {
  const text = 'vm "x" {\n  memory 64M\n  interface {\n    allow router\n    allow dhcp\n    allow dhcp\n  }\n  interface\n}\n';
  const r = parseConfigText(text, 'vm.conf');
  t.same(r.diagnostics.filter((d) => d.severity === 'error'), []);
  t.same(r.config!.vms[0]!.interfaces.map((i) => i.allow ?? []), [['dhcp', 'router'], []], 'sorted, once each; absent is nothing');
  const bad = parseConfigText('vm "x" {\n  interface {\n    allow ssh\n  }\n}\n', 'vm.conf');
  t.match(bad.diagnostics.filter((d) => d.severity === 'error').map((d) => `${d.line}: ${d.message}`), ['3: invalid allow: ssh: want dhcp or router'], 'refused with its line');
});

t.test('an unchanged link is planned as the same object; rules replaced by a reload are planned anew', async (t) => {
  const sw = { name: 'lan', interface: 'br0', address: '10.0.0.1/24', nat: false, group: null, enabled: true };
  const lookup = { switches: [sw] as never[], nsOf: () => null, switchByName: () => undefined };
  const l: LinkState = {
    vmId: 1, vm: 'a', index: 0, name: 'vmd1i0', netns: null, mac: 'fe:e1:bb:00:01:00', switch: 'lan', bridge: 'br0', local: null,
    lockMac: false, forwards: [], groups: [], rules: [], dhcp: null, fixed: '10.0.0.7',
  };
  const first = netPlanOf(null, [l], lookup).links[0];
  t.equal(netPlanOf(null, [l], lookup).links[0], first, 'the same object while nothing changed');
  const before = nftScript(netPlanOf(null, [l], lookup));
  const parsed = parseConfigText('vm "a" {\n interface {\n  block in\n }\n}\n', 'vm.conf').config!;
  l.rules = parsed.vms[0]!.interfaces[0]!.rules;
  t.equal(l.rules.length, 1, 'a rule to load');
  const next = netPlanOf(null, [l], lookup).links[0];
  t.not(next, first, 'a new object once its rules were replaced');
  t.equal(next?.rules, l.rules, 'with the new rules');
  t.not(nftScript(netPlanOf(null, [l], lookup)), before, 'and the tables say so');
});
