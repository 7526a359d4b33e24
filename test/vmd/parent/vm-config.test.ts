// Tests for VM configurations made from `vmctl start` options: names go through the one validator vm.conf uses.
// Pure functions: no daemon.

import t from 'tap';
import type { VmConfig } from '../../../share/config.js';
import { readStreamConfig } from '../../../share/stream.js';
import { streamConfigOf, vmFromOptions, vmFromStream } from '../../../vmd/parent/vm-config.js';

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

t.test('a sent VM keeps its NICs\' allowances: allow dhcp and allow router travel in the stream', async (t) => {
  const made = vmFromOptions('r', { boot: '/k', nets: [{ kind: 'switch', switch: 'lan' }, { kind: 'switch', switch: 'lan' }] }, 0, none, () => false).vm;
  const router: VmConfig = { ...made, interfaces: [{ ...made.interfaces[0]!, allow: ['dhcp', 'router'] }, made.interfaces[1]!] };
  const header = streamConfigOf(3, router);
  t.same(header.interfaces.map((n) => n.allow), [['dhcp', 'router'], undefined], 'only a NIC with allowances carries the field');
  const received = vmFromStream('r2', readStreamConfig(JSON.parse(JSON.stringify(header))));
  t.same(received.interfaces.map((n) => n.allow), [['dhcp', 'router'], undefined], 'the receiver gives them back');
});

t.test('the machine type and disk buses: from vmctl start, through a send stream, to the received VM', async (t) => {
  const made = vmFromOptions('m', { machine: 'pc', disks: ['ide:raw:/vm/a.img', 'nvme:qcow2:/vm/b.qcow2', 'raw:/vm/c.img'] }, 0, none, () => false).vm;
  t.equal(made.machine, 'pc');
  t.same(made.disks, [
    { path: '/vm/a.img', format: 'raw', bus: 'ide' }, { path: '/vm/b.qcow2', format: 'qcow2', bus: 'nvme' }, { path: '/vm/c.img', format: 'raw' },
  ], 'a bus only where one was given (virtio otherwise)');
  t.equal(made.bootDevice, null, '-B is never part of the VM: it is for one boot');
  const header = streamConfigOf(4, made);
  const received = vmFromStream('m2', readStreamConfig(JSON.parse(JSON.stringify(header))));
  t.equal(received.machine, 'pc', 'QEMU needs the same machine on both ends');
  t.same(received.disks, made.disks);
  const old = vmFromStream('m3', readStreamConfig(JSON.parse(JSON.stringify({ ...header, machine: undefined }))));
  t.equal(old.machine, undefined, 'a stream from before machine types: q35');
  t.throws(() => readStreamConfig({ ...JSON.parse(JSON.stringify(header)), machine: 'isapc' }), { message: /machine must be one of q35, pc, microvm/ });
});

t.test('an instance made by a user other than root sets its machine only with allow instance boot', async (t) => {
  const parent = vmFromOptions('p', { boot: '/k' }, 0, none, () => false).vm;
  const tmpl = (flags: VmConfig['allowInstance']) => ({ ...parent, allowInstance: flags });
  const asUser = (flags: VmConfig['allowInstance']) => () => vmFromOptions('c', { instanceOf: 'p', machine: 'pc' }, 1000, () => tmpl(flags), () => false);
  const owner = { uid: 1000, gid: null, user: 'u', group: null };
  t.throws(asUser({ flags: ['memory'], owner }), { code: 'ERR_PERMISSION', message: 'vm "c": no permission to set machine' });
  t.equal(asUser({ flags: ['boot'], owner })().vm.machine, 'pc');
});
