// Tests for --copy-storage's images at the target: made empty of the right format and size as the requester,
// never over an existing file, and all removed when one fails or a restarted vmd finds a receive it died in.

import t, { type Test } from 'tap';
import { execa } from 'execa';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { VmConfig } from '../../../share/config.js';
import { copyImagesCreate, copyImagesRecord, copyImagesRecorded, copyImagesRecovered } from '../../../vmd/parent/copy-storage.js';
import { fsIdentityOf } from '../../../vmd/user-files.js';

const ROOT = fsIdentityOf(0);
const vmWith = (disks: Array<{ path: string; format: 'raw' | 'qcow2' }>): VmConfig => ({ name: 'cs', disks } as unknown as VmConfig);

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-copy-storage-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('a raw and a qcow2 disk are made empty with the source\'s virtual sizes', async (t) => {
  const dir = tempDir(t);
  const raw = join(dir, 'a.raw');
  const qcow2 = join(dir, 'b.qcow2');
  t.same(await copyImagesCreate(vmWith([{ path: raw, format: 'raw' }, { path: qcow2, format: 'qcow2' }]), [3 << 20, 5 << 20], ROOT), [raw, qcow2]);
  t.equal(statSync(raw).size, 3 << 20);
  const info = JSON.parse(String((await execa('qemu-img', ['info', '--output=json', qcow2])).stdout)) as { format: string; 'virtual-size': number };
  t.same([info.format, info['virtual-size']], ['qcow2', 5 << 20]);
});

t.test('a file already at a path is refused by name and left as it was; what was made before it goes', async (t) => {
  const dir = tempDir(t);
  const first = join(dir, 'first.raw');
  const taken = join(dir, 'taken.raw');
  writeFileSync(taken, 'PRECIOUS');
  await t.rejects(copyImagesCreate(vmWith([{ path: first, format: 'raw' }, { path: taken, format: 'raw' }]), [1 << 20, 1 << 20], ROOT),
    { message: `vm "cs": copy-storage: disk ${taken}: already exists on the target` });
  t.equal(readFileSync(taken, 'utf8'), 'PRECIOUS', 'never overwritten');
  t.equal(existsSync(first), false, 'the image made before it is removed');
  await t.rejects(copyImagesCreate(vmWith([{ path: first, format: 'raw' }]), [1, 2], ROOT), /2 disk sizes for 1 disks/);
});

t.test('the image is made with the requester\'s rights: nobody cannot create in root\'s directory', { skip: process.geteuid?.() === 0 ? false : 'needs root' }, async (t) => {
  const dir = tempDir(t);
  chmodSync(dir, 0o755);
  const path = join(dir, 'x.raw');
  await t.rejects(copyImagesCreate(vmWith([{ path, format: 'raw' }]), [1 << 20], fsIdentityOf(65534)), /copy-storage: disk .*x\.raw: .*Permission denied/);
  t.equal(existsSync(path), false);
});

t.test('a restarted vmd removes the images recorded by a receive it died in', async (t) => {
  const dir = tempDir(t);
  const run = join(dir, 'run');
  const made = await copyImagesCreate(vmWith([{ path: join(dir, 'm.raw'), format: 'raw' }]), [1 << 20], ROOT);
  mkdirSync(run);
  copyImagesRecord(run, 0, made);
  t.same(copyImagesRecorded(run), made, 'recorded');
  await copyImagesRecovered(run);
  t.equal(existsSync(made[0]!), false);
  await t.resolves(copyImagesRecovered(join(dir, 'none')), 'a run directory without a record is nothing to do');
});
