// Tests for vmd/net/passt and vmd/net/host-ports: passt's argv in both styles against golden files, the
// qemu-style addresses, and reading which host ports are taken from /proc/net text.
import t from 'tap';
import { hostPortsOf } from '../../../vmd/net/host-ports.js';
import { passtArgv, passtNatOf, type PasstSpec } from '../../../vmd/net/passt.js';
import { golden } from '../../lib/golden.js';

const files = { socket: '/run/vmd/7/passt0.sock', pidFile: '/run/vmd/7/passt0.pid', logFile: '/run/vmd/7/passt0.log' };

const cases: Record<string, PasstSpec> = {
  'real-addr': { ...files, config: { dev: null, address: null }, forwards: [{ proto: 'tcp', hostPort: 8080, guestPort: 80 }] },
  'real-addr-dev': { ...files, config: { dev: 'eth1', address: null }, forwards: [] },
  'nat': {
    ...files, config: { dev: null, address: '10.0.2.15/24' },
    forwards: [{ proto: 'tcp', hostPort: 2222, guestPort: 22 }, { proto: 'tcp', hostPort: 8081, guestPort: 8081 }, { proto: 'udp', hostPort: 5353, guestPort: 53 }],
  },
  'nat-other': { ...files, config: { dev: 'eth0', address: '192.168.77.9/28' }, forwards: [] },
};

t.test('golden argv', async (t) => {
  for (const [name, spec] of Object.entries(cases)) golden(t, 'test/vmd/golden/passt', `${name}.argv`, `${passtArgv(spec).join('\n')}\n`);
});

t.test('argv: foreground, one client, no inbound port but the forwards', async (t) => {
  const real = passtArgv(cases['real-addr']!);
  t.ok(real.includes('--one-off'), 'exits when QEMU disconnects');
  t.ok(real.includes('--no-map-gw'), "real-addr: the router is the host's router");
  t.same(real.slice(real.indexOf('-t'), real.indexOf('-t') + 2), ['-t', '8080:80']);
  t.notOk(real.includes('-u'), 'no udp forwards, no -u');
  const none = passtArgv(cases['real-addr-dev']!);
  t.same(none.slice(-4), ['-t', 'none', '-u', 'none'], 'no forwards: none, said explicitly');
  t.same(none.slice(none.indexOf('--interface'), none.indexOf('--interface') + 2), ['--interface', 'eth1']);
  const nat = passtArgv(cases.nat!);
  t.notOk(nat.includes('--no-map-gw'), 'qemu style: the router is the host');
  t.same(nat.slice(nat.indexOf('-t'), nat.indexOf('-t') + 4), ['-t', '2222:22,8081', '-u', '5353:53']);
});

t.test('qemu-style addresses: router is network + 2', async (t) => {
  t.same(passtNatOf('10.0.2.15/24'), { address: '10.0.2.15', length: 24, router: '10.0.2.2' });
  t.same(passtNatOf('192.168.77.9/28'), { address: '192.168.77.9', length: 28, router: '192.168.77.2' });
});

t.test('host ports from /proc/net: TCP listeners and bound UDP sockets', async (t) => {
  const tcp = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 2222 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000   995        0 3333 1 0000000000000000 100 0 0 10 0
`;
  t.same(hostPortsOf('tcp', tcp), [{ proto: 'tcp', port: 22, inode: '1111' }, { proto: 'tcp', port: 8081, inode: '3333' }], 'established connections hold no port');
  const udp = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4444 2 0000000000000000 0
`;
  t.same(hostPortsOf('udp', udp), [{ proto: 'udp', port: 5353, inode: '4444' }]);
  t.same(hostPortsOf('tcp', ''), [], 'empty file');
});
