// Unit tests of a UEFI guest's variable store (vmd/parent/nvram.ts) and the real-OS fields of vmctl-made VMs.

import t from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { VmConfig } from '../../../share/config.js';
import { Descriptors } from '../../../vmd/parent/images.js';
import { nvramOpen, nvramPath, nvramRemove } from '../../../vmd/parent/nvram.js';
import { osFromOptions, osInherit } from '../../../vmd/parent/vm-os.js';

const vm = (extra: Partial<VmConfig>): VmConfig => ({
  name: 'v', instanceOf: null, enabled: true, memory: null, cpus: null, boot: null, initrd: null, cmdline: null, bootDevice: null,
  cdrom: null, disks: [], interfaces: [], owner: null, allowInstance: null, sev: false, seves: false, accel: null,
  location: { file: 'x', line: 1 }, ...extra,
});

t.test('the store is copied once from the template, kept across starts, one per flavour, removed with the VM', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-nvram-'));
  const ovmf = join(dir, 'ovmf');
  mkdirSync(ovmf);
  for (const f of ['OVMF_CODE_4M.fd', 'OVMF_CODE_4M.secboot.fd']) writeFileSync(join(ovmf, f), 'code');
  writeFileSync(join(ovmf, 'OVMF_VARS_4M.fd'), 'template');
  writeFileSync(join(ovmf, 'OVMF_VARS_4M.ms.fd'), 'ms-template');
  const saved = process.env.VMD_OVMF_DIR;
  process.env.VMD_OVMF_DIR = ovmf;
  t.teardown(() => {
    if (saved === undefined) delete process.env.VMD_OVMF_DIR; else process.env.VMD_OVMF_DIR = saved;
    rmSync(dir, { recursive: true, force: true });
  });
  const state = join(dir, 'state');
  const open = (v: VmConfig) => {
    const fds = new Descriptors();
    try {
      return { uefi: nvramOpen(state, 7, v, fds), passed: fds.passed.length };
    } finally {
      fds.closeAll();
    }
  };
  t.same(open(vm({})), { uefi: null, passed: 0 }, 'bios: nothing opened');
  t.same(open(vm({ firmware: 'uefi' })), { uefi: { code: 3, vars: 4, secureBoot: false }, passed: 2 });
  const store = nvramPath(state, 7, false);
  t.equal(readFileSync(store, 'utf8'), 'template');
  writeFileSync(store, 'boot entries');
  open(vm({ firmware: 'uefi' }));
  t.equal(readFileSync(store, 'utf8'), 'boot entries', 'a second start keeps what the guest wrote');
  t.same(open(vm({ firmware: 'uefi', secureBoot: true })).uefi, { code: 3, vars: 4, secureBoot: true });
  t.equal(readFileSync(nvramPath(state, 7, true), 'utf8'), 'ms-template', 'Secure Boot has its own store, with the keys enrolled');
  nvramRemove(state, 8);
  t.ok(existsSync(store), 'another id leaves it alone');
  nvramRemove(state, 7);
  t.notOk(existsSync(store) || existsSync(nvramPath(state, 7, true)), 'removed with the VM');
  process.env.VMD_OVMF_DIR = join(dir, 'none');
  t.throws(() => open(vm({ firmware: 'uefi' })), /^vm "v": firmware uefi: .*OVMF_CODE_4M\.fd: /);
});

t.test('vmctl start options and instances', async (t) => {
  t.same(osFromOptions({}), {});
  t.same(osFromOptions({ secureBoot: true }), { firmware: 'uefi', secureBoot: true }, '--secure-boot implies uefi');
  t.same(osFromOptions({ firmware: 'bios' }), { firmware: 'bios' });
  t.same(osFromOptions({ cloudInit: { user: 'a' } }).cloudInit, { hostname: null, user: 'a', sshKeys: [], userData: null });
  const parent = vm({ firmware: 'uefi', secureBoot: true, cloudInit: { hostname: 'p', user: null, sshKeys: [], userData: null } });
  t.same(osInherit(parent, vm({})), { firmware: 'uefi', secureBoot: true, cloudInit: parent.cloudInit }, 'unset: the parent\'s');
  t.same(osInherit(parent, vm({ firmware: 'bios' })), { firmware: 'bios', cloudInit: parent.cloudInit }, 'the firmware as one: no stray secure boot');
});
