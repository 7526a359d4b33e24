// Tests of the value syntaxes: ether_aton, prefixes, CIDRs, IPv6 text (names: test/share/names.test.ts; sizes: test/vmctl/scaled.test.ts).
import t from 'tap';
import { etherAton, parseCidr, parseHostAddress, parsePrefix4, parsePrefix6, strtonum } from '../../grammar/values.js';

t.test('ether_aton', async (t) => {
  t.equal(etherAton('00:11:22:AA:BB:CC'), '00:11:22:aa:bb:cc');
  t.equal(etherAton('0:1:2:a:b:c'), '00:01:02:0a:0b:0c');
  t.equal(etherAton('00:11:22:aa:bb'), null);
  t.equal(etherAton('00:11:22:aa:bb:cc:dd'), '00:11:22:aa:bb:cc', 'OpenBSD ignores what follows a sixth octet ending in :');
  t.equal(etherAton('00:11:22:aa:bb:100'), null);
  t.equal(etherAton('00-11-22-aa-bb-cc'), null);
});

t.test('prefixes and addresses', async (t) => {
  t.same(parsePrefix4('100.64.0.0/10'), { address: '100.64.0.0', length: 10 });
  t.equal(parsePrefix4('1.2.3.4/33'), 'too large');
  t.equal(parsePrefix4('1.2.3.4/x'), 'invalid');
  t.same(parsePrefix6('fd00::/8'), { address: 'fd00::', length: 8 });
  t.equal(parseCidr('10.1.2.3/8'), '10.0.0.0/8');
  t.equal(parseCidr('2001:DB8:0:0:0:0:0:1'), '2001:db8::1/128');
  t.equal(parseCidr('::ffff:1.2.3.4'), '::ffff:102:304/128');
  t.equal(parseCidr('1.2.3.4/'), null);
  t.equal(parseCidr('any'), null);
  t.equal(parseHostAddress('fe80:0:0::1'), 'fe80::1');
  t.equal(parseHostAddress('1.2.3'), null);
  t.equal(strtonum('7', 1, 5), 'too large');
});
