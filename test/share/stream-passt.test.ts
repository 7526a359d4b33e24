// Tests for passt NICs in a send stream: the settings travel and come back, the reader refuses bad ones, and
// the daemon's conversions keep them (a received passt guest is a passt guest again).
import t from 'tap';
import { readStreamConfig, type StreamConfig } from '../../share/stream.js';
import { streamConfigOf, vmFromStream } from '../../vmd/parent/vm-config.js';
import type { VmConfig } from '../../share/config.js';

const nic = { local: false, switch: null, lladdr: 'fe:e1:bb:01:02:03', locked: false, group: null, rdomain: null, forwards: [], rules: [] };
const config = (passt: unknown): StreamConfig => ({
  name: 'web', memory: 256 * 1024 * 1024, cpus: 1, boot: '/k', initrd: null, cmdline: null, cdrom: null, disks: [],
  interfaces: [{ ...nic, passt } as StreamConfig['interfaces'][number]], owner: null,
});

t.test('passt settings travel and are checked', async (t) => {
  const ok = config({ dev: 'eth1', address: '10.0.2.15/24' });
  t.same(readStreamConfig(JSON.parse(JSON.stringify(ok))), ok);
  t.same(readStreamConfig(config({ dev: null, address: null })).interfaces[0]!.passt, { dev: null, address: null });
  t.throws(() => readStreamConfig(config({ dev: 'bad/name', address: null })), /passt dev is invalid/);
  t.throws(() => readStreamConfig(config({ dev: null, address: 'fe80::1/64' })), /passt address is invalid/);
  t.throws(() => readStreamConfig(config({ dev: null, address: '999.0.2.15/24' })), /passt address must be IPv4/);
  t.throws(() => readStreamConfig(config({ dev: null, address: null, extra: 1 })), /unknown field "extra"/);
});

t.test('send and receive keep a passt interface', async (t) => {
  const received = vmFromStream('web', config({ dev: null, address: '10.0.2.15/24' }));
  t.same(received.interfaces[0]!.passt, { dev: null, address: '10.0.2.15/24' });
  const again = streamConfigOf(1, received as VmConfig);
  t.same(again.interfaces[0]!.passt, { dev: null, address: '10.0.2.15/24' });
  t.notOk('passt' in streamConfigOf(1, { ...received, interfaces: [{ ...received.interfaces[0]!, passt: null }] }).interfaces[0]!, 'no passt field on other NICs');
});
