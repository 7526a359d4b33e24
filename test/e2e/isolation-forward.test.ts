// End to end: a forward never carries the host's own connections past a guest's `block in`. Real guests on
// local interfaces and on a `nat` switch; the host (vmd's namespace) connects through 127.0.0.1, its own
// addresses and the local link's host address; the block rule counts each refused connection.

import t from 'tap';
import { httpGet } from '../lib/netns.js';
import { execa } from 'execa';
import type { FirewallResponse } from '../../share/protocol.js';
import { guestInitrd, guestKernel, VmdHarness } from '../lib/vmd-harness.js';

const vm = (name: string, iface: string): string =>
  `vm "${name}" {\n  memory 256M\n  boot "${guestKernel}"\n  initrd "${guestInitrd}"\n` +
  `  cmdline "console=ttyS0 quiet panic=-1 vmd.hostname=${name}"\n  ${iface}\n}\n`;

const PASS80 = '\n    pass in proto tcp to port 80';
const config =
  `switch "natsw" {\n  interface vmdtif0\n  address 10.73.0.1/24\n  dhcp\n  nat\n}\n` +
  vm('l', 'local interface {\n    forward tcp 8081 to 80\n    block in\n  }') +
  vm('p', `local interface {\n    forward tcp 8082 to 80\n    block in${PASS80}\n  }`) +
  vm('n', 'interface {\n    switch "natsw"\n    forward tcp 8083 to 80\n    block in\n  }') +
  vm('q', `interface {\n    switch "natsw"\n    forward tcp 8084 to 80\n    block in${PASS80}\n  }`);

/** An address of the host's own that no guest link carries, as an uplink's would be. */
const HOST_ADDR = '192.0.2.1';

t.test('forwards and block in: the host is refused like anyone else, and counted', async (t) => {
  const h = await VmdHarness.start({ config });
  t.teardown(() => h.teardown());
  await execa('ip', ['-n', h.netns, 'address', 'add', `${HOST_ADDR}/32`, 'dev', 'lo']);
  for (const n of ['l', 'p', 'n', 'q']) await h.waitState(n, 'running', 40_000);
  const lease = async (n: string, re: RegExp): Promise<string> => re.exec(await h.console(n, '\n', re, 60))![1]!;
  const gw = (guest: string): string => guest.replace(/\d+$/, (x) => String(Number(x) - 1));
  const gwL = gw(await lease('l', /vmd-guest: lease eth0 (100\.64\.\d+\.\d+)\/31/));
  const gwP = gw(await lease('p', /vmd-guest: lease eth0 (100\.64\.\d+\.\d+)\/31/));
  await lease('n', /vmd-guest: lease eth0 (10\.73\.0\.\d+)\/24/);
  await lease('q', /vmd-guest: lease eth0 (10\.73\.0\.\d+)\/24/);
  const blockCount = async (name: string): Promise<number> => {
    const fw = JSON.parse((await h.vmctl(['firewall', '--json', name])).stdout) as FirewallResponse;
    const rule = fw.interfaces[0]!.rules.find((r) => r.text === 'block in')!;
    return rule.count!.packets;
  };

  const cases: Array<[vm: string, port: number, addrs: string[]]> = [
    ['l', 8081, ['127.0.0.1', HOST_ADDR, '10.73.0.1', gwL]],
    ['n', 8083, ['127.0.0.1', HOST_ADDR, '10.73.0.1']],
  ];
  for (const [name, port, addrs] of cases) {
    await t.test(`vm ${name}: forward ${port} and block in`, async (t) => {
      const before = await blockCount(name);
      for (const a of addrs) t.equal(await httpGet(h.netns, a, port), 'FAIL', `${a}:${port} from the host is refused`);
      const after = await blockCount(name);
      t.ok(after >= before + addrs.length, `block in counted every attempt (${before} → ${after})`);
    });
  }

  const passes: Array<[vm: string, port: number, addrs: string[]]> = [
    ['p', 8082, ['127.0.0.1', HOST_ADDR, '10.73.0.1', gwP]],
    ['q', 8084, ['127.0.0.1', HOST_ADDR, '10.73.0.1']],
  ];
  for (const [name, port, addrs] of passes) {
    await t.test(`vm ${name}: block in, pass in tcp/80: the forward still works from the host`, async (t) => {
      for (const a of addrs) t.equal(await httpGet(h.netns, a, port), name, `${a}:${port} from the host gets the page`);
    });
  }
});
