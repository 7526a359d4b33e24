// Unit tests of `vmctl start`'s real-OS flags: --firmware, --secure-boot, --user and --ssh-key into the request.

import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseStart } from '../../vmctl/start.js';

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ0cG9zdGVkLWJ5LXRoZS10ZXN0cy1vbmx5IQ== alice@host';

t.test('flags into start options', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmctl-start-os-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'disk.img'), '');
  writeFileSync(join(dir, 'id.pub'), `# mine\n${KEY}\n\n`);
  writeFileSync(join(dir, 'bad.pub'), 'hello\n');
  const warnings: string[] = [];
  const env = { cwd: dir, warn: (m: string) => warnings.push(m) };
  const o = parseStart(['-d', 'disk.img', '--firmware', 'uefi', '--user', 'alice', '--ssh-key', 'id.pub', 'vm1'], env).options;
  t.same([o.firmware, o.secureBoot, o.cloudInit], ['uefi', undefined, { user: 'alice', sshKeys: [KEY] }]);
  t.equal(parseStart(['-d', 'disk.img', '--secure-boot', 'vm1'], env).options.secureBoot, true);
  t.same(parseStart(['-d', 'disk.img', '--ssh-key', 'id.pub', 'vm1'], env).options.cloudInit, { sshKeys: [KEY] }, 'keys without a user');
  t.equal(parseStart(['-d', 'disk.img', 'vm1'], env).options.cloudInit, undefined, 'no flags, no seed');
  t.throws(() => parseStart(['-d', 'disk.img', '--firmware', 'efi', 'vm1'], env), /unknown firmware efi/);
  t.throws(() => parseStart(['-d', 'disk.img', '--firmware', 'bios', '--secure-boot', 'vm1'], env), /--secure-boot needs --firmware uefi/);
  t.throws(() => parseStart(['-d', 'disk.img', '--user', 'Root', 'vm1'], env), /invalid user Root/);
  t.throws(() => parseStart(['-d', 'disk.img', '--ssh-key', 'bad.pub', 'vm1'], env), /not an OpenSSH public key/);
  t.throws(() => parseStart(['-d', 'disk.img', '--ssh-key', 'missing.pub', 'vm1'], env), /cannot open ssh key file/);
});
