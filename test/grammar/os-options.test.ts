// Unit tests of vm.conf's real-OS options: `firmware bios|uefi [secure-boot]` and the `cloud-init { … }` block,
// what they put in the model and what `vmd -n` refuses, with the line it names.

import t from 'tap';
import { parse, errorsOf } from './helpers.js';

const files = { 'a.img': '', 'ud.yaml': '#cloud-config\n' };
const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ0cG9zdGVkLWJ5LXRoZS10ZXN0cy1vbmx5IQ== alice@host';
const vmOf = (body: string) => {
  const p = parse(`vm "v" {\n  disk "a.img"\n${body}\n}\n`, files);
  if (p.result.config === null) throw new Error(`unexpected errors:\n${p.out}`);
  return p.result.config.vms[0]!;
};
const errs = (body: string) => errorsOf(`vm "v" {\n  disk "a.img"\n${body}\n}\n`, files);

t.test('firmware', async (t) => {
  t.equal(vmOf('').firmware, undefined, 'absent: no field, configs without it are unchanged');
  t.equal(vmOf('firmware bios').firmware, 'bios');
  const uefi = vmOf('firmware uefi');
  t.equal(uefi.firmware, 'uefi');
  t.equal(uefi.secureBoot, undefined);
  const sb = vmOf('firmware uefi secure-boot');
  t.same([sb.firmware, sb.secureBoot], ['uefi', true]);
  t.equal(errs('firmware efi'), 'vmd: vm.conf:3: invalid firmware: efi');
  t.equal(errs('firmware bios secure-boot'), 'vmd: vm.conf:3: secure-boot needs firmware uefi');
  t.equal(errs('firmware uefi fast'), 'vmd: vm.conf:3: invalid firmware option: fast');
  t.equal(errs('firmware uefi\n  firmware bios'), 'vmd: vm.conf:4: firmware specified more than once');
  t.equal(vmOf('firmware "uefi"').firmware, 'uefi', 'a quoted value is the same word');
});

t.test('firmware uefi without the ovmf files is refused by vmd -n', async (t) => {
  const saved = process.env.VMD_OVMF_DIR;
  process.env.VMD_OVMF_DIR = '/nonexistent-ovmf';
  t.teardown(() => { if (saved === undefined) delete process.env.VMD_OVMF_DIR; else process.env.VMD_OVMF_DIR = saved; });
  t.match(errs('firmware uefi secure-boot'), /^vmd: vm\.conf:3: firmware uefi secure-boot: \/nonexistent-ovmf\/OVMF_CODE_4M\.secboot\.fd: No such file or directory \(install the ovmf package\)$/);
  t.equal(vmOf('firmware bios').firmware, 'bios', 'bios needs no files');
});

t.test('cloud-init', async (t) => {
  t.same(vmOf('cloud-init').cloudInit, { hostname: null, user: null, sshKeys: [], userData: null }, 'bare: the defaults');
  t.same(vmOf(`cloud-init {\n    hostname "web1"\n    user alice\n    ssh-key "${KEY}"\n    ssh-key "${KEY}2"\n  }`).cloudInit,
    { hostname: 'web1', user: 'alice', sshKeys: [KEY, `${KEY}2`], userData: null }, 'block form, keys repeat');
  t.same(vmOf(`cloud-init { hostname a.example, user bob }`).cloudInit, { hostname: 'a.example', user: 'bob', sshKeys: [], userData: null }, 'commas separate');
  const ud = parse('vm "v" {\n  disk "a.img"\n  cloud-init { user-data "ud.yaml" }\n}\n', files);
  t.equal(ud.result.config!.vms[0]!.cloudInit!.userData, `${ud.dir}/ud.yaml`, 'user-data is resolved to an absolute path');
  t.equal(vmOf('').cloudInit, undefined);
});

t.test('cloud-init refusals', async (t) => {
  t.equal(errs('cloud-init { hostname "bad_name" }'), 'vmd: vm.conf:3: cloud-init hostname "bad_name": letters, digits and "-" in dot-separated labels of at most 63, 253 in all');
  t.match(errs('cloud-init { user Root }'), /^vmd: vm\.conf:3: cloud-init user "Root": lowercase letters/);
  t.match(errs('cloud-init { ssh-key "not a key" }'), /^vmd: vm\.conf:3: cloud-init ssh-key: not an OpenSSH public key/);
  // The lexer drops a newline inside quotes (OpenBSD's rule): no second line reaches authorized_keys.
  t.same(vmOf(`cloud-init { ssh-key "${KEY}\ncommand=x" }`).cloudInit!.sshKeys, [`${KEY}command=x`], 'one line, always');
  t.equal(errs('cloud-init { password x }'), 'vmd: vm.conf:3: invalid cloud-init option: password');
  t.equal(errs('cloud-init { hostname a, hostname b }'), 'vmd: vm.conf:3: cloud-init hostname specified more than once');
  t.match(errs('cloud-init { user-data "missing.yaml" }'), /^vmd: vm\.conf:3: cloud-init user-data path not found: /);
  t.equal(errs('cloud-init { user-data "ud.yaml", user alice }'), 'vmd: vm.conf:3: cloud-init: user-data is used as written: put the user and ssh keys in it, not beside it');
  t.equal(errs('cloud-init\n  cloud-init'), 'vmd: vm.conf:4: cloud-init specified more than once');
});

t.test('the new words stay plain strings elsewhere', async (t) => {
  const p = parse('vm firmware { disable }\nvm "cloud-init" { disable }\n', files);
  t.same(p.result.config!.vms.map((v) => v.name), ['firmware', 'cloud-init']);
});
