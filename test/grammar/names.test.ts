// Names a later stage would refuse (nft sets, bridges, ip(8), dnsmasq's files) are refused by `vmd -n` already,
// at their line: a config that passes the test must not fail at every start afterwards. Paths and command lines
// with control characters, which QEMU's argv builder refuses, too.

import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { vmdEntry } from '../../share/paths.js';
import { errorsOf } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'vmd-names-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

function vmdConfigTest(text: string): Promise<{ code: number; output: string }> {
  writeFileSync(join(dir, 'x.conf'), text);
  return new Promise((resolve) => {
    execFile(process.execPath, [vmdEntry, '-n', '-f', 'x.conf'], { cwd: dir }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, output: stdout + stderr });
    });
  });
}

const cases: { kind: string; text: string; error: string }[] = [
  { kind: 'switch group', text: 'switch "s" {\n interface br0\n group "a;flush ruleset"\n}\n', error: 'x.conf:3: invalid group name: a;flush ruleset' },
  { kind: 'interface group', text: 'vm "v" {\n disable\n interface {\n group "g}x"\n }\n}\n', error: 'x.conf:4: invalid group name: g}x' },
  { kind: 'group with a blank', text: 'switch "s" {\n interface br0\n group "a b"\n}\n', error: 'x.conf:3: invalid group name: a b' },
  { kind: 'switch interface', text: 'switch "s" {\n interface "br;x"\n}\n', error: 'x.conf:2: invalid switch interface: br;x' },
  { kind: 'switch interface ip(8) reads as an option', text: 'switch "s" {\n\n interface "-br"\n}\n', error: 'x.conf:3: invalid switch interface: -br' },
  { kind: 'vxlan device', text: 'switch "s" {\n interface br0\n vxlan 1 remote 192.0.2.1 dev "e;x"\n}\n', error: 'x.conf:3: invalid vxlan device: e;x' },
  { kind: 'switch name', text: 'switch "../x" {\n interface br0\n}\n', error: 'x.conf:1: invalid switch name: ../x' },
  { kind: 'switch of an interface', text: 'vm "v" {\n disable\n interface { switch "a/b" }\n}\n', error: 'x.conf:3: invalid switch name: a/b' },
  { kind: 'vm name', text: 'vm "v" {\n disable\n}\nvm "a;b" {\n disable\n}\n', error: 'x.conf:4: invalid VM name: a;b' },
];

for (const c of cases) {
  t.test(`vmd -n refuses an unsafe ${c.kind} at its line`, async (t) => {
    t.same(await vmdConfigTest(c.text), { code: 1, output: `vmd: ${c.error}\n` });
  });
}

t.test('the names the rules keep are still fine', async (t) => {
  const text = 'switch "my uplink;1" {\n interface br-lan.10\n group "web.servers"\n vxlan 1 remote 192.0.2.1 dev eth0\n}\n'
    + 'vm "v" {\n disable\n interface { switch "my uplink;1"\n group "_db-x" }\n}\n';
  t.same(await vmdConfigTest(text), { code: 0, output: 'configuration OK\n' });
});


t.test('paths and command lines with control characters are refused at their line', async (t) => {
  const files = { 'd\tx.img': '', 'k\tx': '', k: '' };
  t.equal(errorsOf('vm "v" {\n disable\n disk "d\tx.img"\n}\n', files),
    'vmd: disk "$DIR/d\\tx.img": path contains control characters\nvmd: vm.conf:3: failed to parse disks: d\tx.img');
  t.equal(errorsOf('vm "v" {\n disable\n boot "k\tx"\n}\n', files), 'vmd: vm.conf:3: kernel path contains control characters: "$DIR/k\\tx"');
  t.equal(errorsOf('vm "v" {\n disable\n boot k\n initrd "k\tx"\n}\n', files), 'vmd: vm.conf:4: initrd path contains control characters: "$DIR/k\\tx"');
  t.equal(errorsOf('vm "v" {\n disable\n cdrom "c\tx.iso"\n}\n', files), 'vmd: vm.conf:3: cdrom path contains control characters: "c\\tx.iso"');
  t.equal(errorsOf('vm "v" {\n disable\n boot k\n cmdline "console=ttyS0\tquiet"\n}\n', files),
    'vmd: vm.conf:4: cmdline contains control characters: "console=ttyS0\\tquiet"');
});
