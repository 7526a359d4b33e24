// The one rule set for names that reach interfaces, nft sets, ip(8) and file names, as vm.conf, the stream
// reader and the network code apply it (the config side of it: test/grammar/names.test.ts).
import t from 'tap';
import { groupNameError, IFNAME_TOO_LONG, ifNameError, netnsNameError, switchNameError, vmNameError } from '../../share/names.js';

t.test('linux interface names', async (t) => {
  for (const ok of ['bridge0', 'veb1', 'br-lan.10', 'vmd12i0', '_x', 'a'.repeat(15)]) t.equal(ifNameError(ok), null, ok);
  t.equal(ifNameError('a'.repeat(16)), IFNAME_TOO_LONG);
  for (const bad of ['a:b', '..', '.', '', '-x', '.x', 'a b', 'br;x', 'a/b', 'a"b', 'a\nb', 'é']) t.not(ifNameError(bad), null, JSON.stringify(bad));
});

t.test('group names: nft set name characters, at most 15, not ending in a digit', async (t) => {
  for (const ok of ['web', 'web-servers', 'a', 'db_2x', 'x.y', '_', 'g'.repeat(15)]) t.equal(groupNameError(ok), null, ok);
  for (const bad of ['a;flush ruleset', 'g1', 'eth0', 'g'.repeat(16), '', '1a', '-a', '.a', 'a b', 'a"b', 'a}b', 'a\nb']) {
    t.not(groupNameError(bad), null, JSON.stringify(bad));
  }
});

t.test('switch names: anything vm.conf can spell but "/" and control characters, at most 63 bytes', async (t) => {
  for (const ok of ['sw', 'my switch', 'a;b', 'uplink-1', 's'.repeat(63)]) t.equal(switchNameError(ok), null, ok);
  for (const bad of ['', 'a/b', '../x', 'a\nb', 'a\tb', 's'.repeat(64), 'é'.repeat(32)]) t.not(switchNameError(bad), null, JSON.stringify(bad));
});

t.test('vm names: OpenBSD vm_register', async (t) => {
  for (const ok of ['test', '1vm', 'a.b_c-d', 'v'.repeat(63)]) t.equal(vmNameError(ok), null, ok);
  for (const bad of ['', '-v', '.v', '_v', 'a b', 'a/b', 'v'.repeat(64)]) t.not(vmNameError(bad), null, JSON.stringify(bad));
});

t.test('namespace names', async (t) => {
  for (const ok of ['vmd-rdomain1', 'vmd-rdomain255-0123abcd', 'n'.repeat(63)]) t.equal(netnsNameError(ok), null, ok);
  for (const bad of ['', '-n', '.n', 'a/b', 'a b', 'n'.repeat(64)]) t.not(netnsNameError(bad), null, JSON.stringify(bad));
});
