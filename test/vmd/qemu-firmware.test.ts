// Unit tests of the UEFI and cloud-init seed parts of QEMU's argv (vmd/qemu-firmware.ts, vmd/qemu-seed.ts):
// what the builder refuses; the argv itself is in the golden files (uefi-*.json, cloud-init-seed.json).

import t from 'tap';
import { VmdError } from '../../share/errors.js';
import { qemuArgv } from '../../vmd/qemu-argv.js';
import type { QemuSpec } from '../../vmd/qemu-spec.js';

const base: QemuSpec = {
  id: 1, name: 'g', memory: 256 * 1024 * 1024, cpus: 1, accel: 'tcg',
  disks: [{ fd: 3, format: 'raw' }], nics: [],
  qmpSocket: '/run/vmd/1/qmp.sock', consoleSocket: '/run/vmd/1/console', sandbox: true,
};

t.test('refused firmware and seed specs', async (t) => {
  const bad: Array<[string, Partial<QemuSpec>, RegExp]> = [
    ['uefi and -bios', { uefi: { code: 4, vars: 5, secureBoot: false }, firmware: { fd: 6 } }, /uefi and a firmware image \(boot PATH\) exclude each other/],
    ['secure boot on pc', { machine: 'pc', uefi: { code: 4, vars: 5, secureBoot: true } }, /uefi secure boot needs the q35 machine \(SMM\)/],
    ['vars on the disk fd', { uefi: { code: 4, vars: 3, secureBoot: false } }, /descriptor 3 used twice/],
    ['stdio code fd', { uefi: { code: 2, vars: 5, secureBoot: false } }, /uefi code: invalid descriptor 2/],
    ['secureBoot not boolean', { uefi: { code: 4, vars: 5, secureBoot: 'yes' as never } }, /secureBoot must be true or false/],
    ['seed on the disk fd', { seed: 3 }, /descriptor 3 used twice/],
  ];
  for (const [what, change, message] of bad) {
    let caught: unknown = null;
    try {
      qemuArgv({ ...base, ...change });
    } catch (err) {
      caught = err;
    }
    t.ok(caught instanceof VmdError, `${what}: a VmdError`);
    t.match(caught, { code: 'ERR_INVALID', message: message }, what);
  }
});

t.test('plain uefi leaves the machine alone; secure boot turns SMM on', async (t) => {
  const plain = qemuArgv({ ...base, uefi: { code: 4, vars: 5, secureBoot: false } });
  t.equal(plain[plain.indexOf('-machine') + 1], 'q35');
  t.notOk(plain.includes('driver=cfi.pflash01,property=secure,value=on'));
  const secure = qemuArgv({ ...base, uefi: { code: 4, vars: 5, secureBoot: true } });
  t.equal(secure[secure.indexOf('-machine') + 1], 'q35,smm=on');
  t.ok(secure.includes('driver=cfi.pflash01,property=secure,value=on'));
  const pc = qemuArgv({ ...base, machine: 'pc', uefi: { code: 4, vars: 5, secureBoot: false } });
  t.ok(pc.includes('if=pflash,format=raw,unit=0,readonly=on,file=/dev/fdset/1'), 'plain uefi works on pc too');
});
