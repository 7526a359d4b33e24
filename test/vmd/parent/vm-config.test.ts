// Tests for VM configurations made from `vmctl start` options: names go through the one validator vm.conf uses.
// Pure functions: no daemon.

import t from 'tap';
import { vmFromOptions } from '../../../vmd/parent/vm-config.js';

const none = (): undefined => undefined;
const start = (name: string, o: Parameters<typeof vmFromOptions>[1]) => () => vmFromOptions(name, o, 0, none, () => false);

t.test('a start names only VMs and switches vm.conf could name', async (t) => {
  t.throws(start('-x', { boot: '/k' }), { code: 'ERR_INVALID', message: 'vm name "-x": invalid VM name' });
  t.throws(start('a'.repeat(64), { boot: '/k' }), { code: 'ERR_INVALID', message: /vm name too long$/ });
  t.throws(start('a', { boot: '/k', nets: [{ kind: 'switch', switch: '../etc' }] }),
    { code: 'ERR_INVALID', message: 'switch "../etc": invalid switch name: no "/" or control characters' });
  t.throws(start('a', { boot: '/k', nets: [{ kind: 'switch', switch: 'a\nb' }] }), { code: 'ERR_INVALID' });
  const ok = vmFromOptions('a', { boot: '/k', nets: [{ kind: 'switch', switch: 'uplink' }] }, 0, none, () => false);
  t.equal(ok.vm.interfaces[0]!.switch, 'uplink', 'a good switch name is kept');
});
