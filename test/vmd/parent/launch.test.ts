// Tests for the parts of a launch that need no QEMU: how QEMU's own stderr becomes a start failure's message.
// QEMU names our descriptors (/dev/fdset/N) in the option it echoes; the message keeps its reason and device id.

import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { qemuLogTail } from '../../../vmd/parent/launch.js';

t.test('QEMU\'s stderr, without its program name and the option echo, keeping the device id', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-launch-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log = join(dir, 'qemu.log');
  writeFileSync(log, [
    'qemu-system-x86_64: -device virtio-blk-pci,drive=disk0,id=vd0: Failed to get "write" lock',
    'Is another process using the image [/dev/fdset/1]?',
    '',
  ].join('\n'));
  t.equal(qemuLogTail(log), 'vd0: Failed to get "write" lock; Is another process using the image [/dev/fdset/1]?');
  writeFileSync(log, 'qemu-system-x86_64: -machine microvm,foo=bar: Property \'microvm-machine.foo\' not found\n');
  t.equal(qemuLogTail(log), 'Property \'microvm-machine.foo\' not found', 'an option without an id: only the reason');
  writeFileSync(log, ['a', 'b', 'c', 'qemu-system-x86_64: d'].join('\n'));
  t.equal(qemuLogTail(log), 'b; c; d', 'the last three lines');
  t.equal(qemuLogTail(join(dir, 'missing.log')), '', 'no log: no words of QEMU');
});
