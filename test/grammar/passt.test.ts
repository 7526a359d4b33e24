// Tests for `passt interface`: both address styles, its own options and forwards, and the options it refuses
// (filter rules above all: they could not be enforced, so they are an error naming the line, not a no-op).
import t from 'tap';
import { errorsOf, parse } from './helpers.js';

const nicsOf = (text: string) => {
  const p = parse(text);
  if (p.errors !== '' || p.result.config === null) throw new Error(`unexpected errors: ${p.errors}`);
  return p.result.config.vms[0]!.interfaces;
};

t.test('both styles, forwards, inline and braced', async (t) => {
  const nics = nicsOf('vm "v" {\n disable\n passt interface { forward tcp 8080 to 80\n  forward udp 53 }\n'
    + ' passt interface { dev eth1\n  nat\n }\n passt interface address 192.168.5.9/24 lladdr fe:e1:bb:00:00:09\n'
    + ' passt interface tap3\n}\n');
  t.same(nics.map((n) => n.passt ?? null), [
    { dev: null, address: null },
    { dev: 'eth1', address: '10.0.2.15/24' },
    { dev: null, address: '192.168.5.9/24' },
    { dev: null, address: null },
  ], 'real-addr by default; nat and address are qemu style');
  t.equal(nicsOf('vm "v" {\n disable\n interface\n}\n')[0]!.passt ?? null, null, 'a plain interface is no passt one');
  t.same(nics[0]!.forwards.map(({ location, ...f }) => f), [{ proto: 'tcp', hostPort: 8080, guestPort: 80 }, { proto: 'udp', hostPort: 53, guestPort: 53 }]);
  t.equal(nics[2]!.lladdr, 'fe:e1:bb:00:00:09');
  t.equal(nics[3]!.name, 'tap3');
});

t.test('passt is a word only where a vm option starts', async (t) => {
  const p = parse('vm passt { disable }\nswitch passt { interface br9 }\n');
  t.equal(p.errors, '');
  t.equal(p.result.config!.vms[0]!.name, 'passt');
});

t.test('refused options name the line', async (t) => {
  t.equal(errorsOf('vm "v" {\n passt interface {\n  forward tcp 80\n  block in\n }\n}\n'),
    'vmd: vm.conf:4: filter rules cannot apply to a passt interface: its traffic never crosses the forwarding path (only its forward ports reach the guest)');
  t.equal(errorsOf('vm "v" {\n passt interface { pass out proto tcp }\n}\n'),
    'vmd: vm.conf:2: filter rules cannot apply to a passt interface: its traffic never crosses the forwarding path (only its forward ports reach the guest)');
  t.equal(errorsOf('vm "v" { passt interface { switch s } }\n'), 'vmd: vm.conf:1: switch: not available on a passt interface');
  t.equal(errorsOf('vm "v" { passt interface { rdomain 3 } }\n'), 'vmd: vm.conf:1: rdomain: not available on a passt interface');
  t.equal(errorsOf('vm "v" { passt interface { locked lladdr } }\n'), 'vmd: vm.conf:1: locked lladdr: not available on a passt interface');
  t.equal(errorsOf('vm "v" { passt interface { allow dhcp } }\n'), 'vmd: vm.conf:1: allow: not available on a passt interface');
});

t.test('qemu-style addresses are checked', async (t) => {
  t.equal(errorsOf('vm "v" { passt interface address 10.0.2.2/24 }\n'), "vmd: vm.conf:1: invalid address: 10.0.2.2/24: 10.0.2.2 is the router's address");
  t.equal(errorsOf('vm "v" { passt interface address 10.0.2.0/24 }\n'), 'vmd: vm.conf:1: invalid address: 10.0.2.0/24: a network or broadcast address');
  t.equal(errorsOf('vm "v" { passt interface address 10.0.2.15 }\n'), 'vmd: vm.conf:1: invalid address: 10.0.2.15: want an IPv4 ADDRESS/LENGTH');
  t.equal(errorsOf('vm "v" { passt interface address 10.0.2.15/31 }\n'), 'vmd: vm.conf:1: invalid address: 10.0.2.15/31: length must be 8 to 30');
  t.equal(errorsOf('vm "v" { passt interface address fe80::1/64 }\n'), 'vmd: vm.conf:1: invalid address: fe80::1/64: want an IPv4 ADDRESS/LENGTH');
  t.equal(errorsOf('vm "v" { passt interface dev "bad/name" }\n'), 'vmd: vm.conf:1: invalid interface: bad/name');
});

t.test('dev, nat and address are only passt options', async (t) => {
  t.match(errorsOf('vm "v" { interface { nat } }\n'), /vm\.conf:1: syntax error/);
});
