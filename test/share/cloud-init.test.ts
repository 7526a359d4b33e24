// Unit tests of share/cloud-init.ts and the start options reader: what goes into a NoCloud seed, and what never may.

import t from 'tap';
import { defaultHostname, hostnameError, seedFiles, sshKeyError, userError } from '../../share/cloud-init.js';
import { readStartOptions } from '../../share/read-request.js';

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ0cG9zdGVkLWJ5LXRoZS10ZXN0cy1vbmx5IQ== alice@host';
const none = { hostname: null, user: null, sshKeys: [], userData: null };

t.test('names and keys', async (t) => {
  for (const ok of ['web1', 'a.b-c.example', 'x'.repeat(63)]) t.equal(hostnameError(ok), null, ok);
  for (const bad of ['', 'a_b', '-a', 'a-', 'x'.repeat(64), 'a..b', 'a\nb']) t.not(hostnameError(bad), null, JSON.stringify(bad));
  for (const ok of ['alice', '_svc', 'a-b_1']) t.equal(userError(ok), null, ok);
  for (const bad of ['Root', '1a', 'a b', 'a:b', 'x'.repeat(33), 'a\n']) t.not(userError(bad), null, JSON.stringify(bad));
  t.equal(sshKeyError(KEY), null);
  t.equal(sshKeyError('ecdsa-sha2-nistp256 AAAAE2VjZHNh'), null);
  for (const bad of ['AAAA', 'ssh-ed25519', `${KEY}\nssh-ed25519 AAAA`, `${KEY}\r`, `command="sh" ${KEY}`]) t.not(sshKeyError(bad), null, JSON.stringify(bad));
  t.equal(defaultHostname('my_vm.1'), 'my-vm.1');
  t.equal(defaultHostname('_'), 'vm');
});

t.test('seed files', async (t) => {
  const plain = seedFiles('web_1', none, null, [], 'vmd-1-x');
  t.equal(plain['meta-data'], 'instance-id: "vmd-1-x"\nlocal-hostname: "web-1"\n', 'the VM name as the hostname');
  t.equal(plain['user-data'], '#cloud-config\nhostname: "web-1"\npreserve_hostname: false\n');
  t.notOk('network-config' in plain, 'no network-config when vmd knows no address');
  const user = seedFiles('v', { hostname: 'h', user: 'alice', sshKeys: [KEY], userData: null }, null, [], 'i')['user-data'];
  t.match(user, /^users:\n {2}- name: "alice"\n/m);
  t.match(user, `    ssh_authorized_keys: [${JSON.stringify(KEY)}]`);
  t.match(user, /lock_passwd: true/);
  const keysOnly = seedFiles('v', { ...none, sshKeys: [KEY] }, null, [], 'i')['user-data'];
  t.match(keysOnly, `\nssh_authorized_keys: [${JSON.stringify(KEY)}]\n`, 'no user: the image default user gets the keys');
  const own = seedFiles('v', { ...none, userData: '/u' }, Buffer.from('#!/bin/sh\necho hi\n'), [], 'i');
  t.equal(own['user-data'], '#!/bin/sh\necho hi\n', 'a user-data file is used as written');
  const net = seedFiles('v', none, null, [{ mac: 'fe:e1:bb:00:00:01', address: '100.64.1.3/31', gateway: '100.64.1.2', dns: ['100.64.1.2'] }], 'i');
  t.equal(net['network-config'], 'version: 2\nethernets:\n  nic0:\n    match:\n      macaddress: "fe:e1:bb:00:00:01"\n    addresses: ["100.64.1.3/31"]\n' +
    '    routes:\n      - to: "0.0.0.0/0"\n        via: "100.64.1.2"\n    nameservers:\n      addresses: ["100.64.1.2"]\n');
  // Quoting: a hostname can never break out of its YAML string (the checks refuse such names anyway).
  t.match(seedFiles('v', { ...none, hostname: 'a"\nb' }, null, [], 'i')['meta-data'], 'local-hostname: "a\\"\\nb"');
});

t.test('start options: firmware and cloud-init', async (t) => {
  t.same(readStartOptions({ firmware: 'uefi', secureBoot: true, cloudInit: { user: 'alice', sshKeys: [KEY] } }),
    { firmware: 'uefi', secureBoot: true, cloudInit: { user: 'alice', sshKeys: [KEY] } });
  t.throws(() => readStartOptions({ firmware: 'efi' }), /firmware/);
  t.throws(() => readStartOptions({ secureBoot: 'yes' }), /secureBoot/);
  t.throws(() => readStartOptions({ cloudInit: { user: 'alice', shell: '/bin/sh' } }), /unknown|shell/);
  t.throws(() => readStartOptions({ cloudInit: { sshKeys: [`${KEY}\nssh-rsa AAAA`] } }), /sshKeys entry: not an OpenSSH public key/);
  t.throws(() => readStartOptions({ cloudInit: { hostname: 'a_b' } }), /invalid hostname/);
  t.throws(() => readStartOptions({ cloudInit: { sshKeys: Array(17).fill(KEY) } }), /sshKeys/);
});
