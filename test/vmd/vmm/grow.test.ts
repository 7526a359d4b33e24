// vmd/vmm/grow.ts: the size of the drive vmd named diskN, read defensively from QMP's query-block.

import t from 'tap';
import { driveSizeOf } from '../../../vmd/vmm/grow.js';

t.test('the virtual size of a writable drive, or null', async (t) => {
  const answer = [
    { device: 'disk0', inserted: { ro: false, image: { 'virtual-size': 33554432 } } },
    { device: 'cdrom0', inserted: { ro: true, image: { 'virtual-size': 1000 } } },
    { device: 'disk1', inserted: { ro: true, image: { 'virtual-size': 5 } } },
    { device: 'disk2', inserted: { ro: false, image: { 'virtual-size': '7' } } },
    { device: 'disk3' },
  ];
  t.equal(driveSizeOf(answer, 'disk0'), 33554432);
  t.equal(driveSizeOf(answer, 'disk1'), null, 'read-only: not grown');
  t.equal(driveSizeOf(answer, 'disk2'), null, 'a size that is not a number');
  t.equal(driveSizeOf(answer, 'disk3'), null, 'no medium');
  t.equal(driveSizeOf(answer, 'disk9'), null, 'no such drive');
  t.equal(driveSizeOf({ not: 'a list' }, 'disk0'), null);
});
