// vmctl snapshot and grow: their arguments as getopt reads them, and the snapshot listing's columns.

import t from 'tap';
import { UsageError } from '../../vmctl/errors.js';
import { parseGrow } from '../../vmctl/grow.js';
import { formatSnapshots, parseSnapshot } from '../../vmctl/snapshot.js';
import { parseEvents } from '../../vmctl/events.js';

const warn = (): void => undefined;

t.test('snapshot: take (named or not), -l, -r name, -d name; one at a time', async (t) => {
  t.same(parseSnapshot(['web'], warn), { target: 'web', op: 'create', name: undefined });
  t.same(parseSnapshot(['web', 'before'], warn), { target: 'web', op: 'create', name: 'before' });
  t.same(parseSnapshot(['-l', '3'], warn), { target: '3', op: 'list', name: undefined });
  t.same(parseSnapshot(['-r', 'before', 'web'], warn), { target: 'web', op: 'revert', name: 'before' });
  t.same(parseSnapshot(['web', '-d', 'before'], warn), { target: 'web', op: 'delete', name: 'before' }, 'options may follow the id');
  for (const bad of [[], ['-l'], ['-l', '-d', 'x', 'web'], ['-r', 'x', 'web', 'y'], ['a', 'b', 'c'], ['-x', 'web']]) {
    t.throws(() => parseSnapshot(bad, warn), UsageError, JSON.stringify(bad));
  }
});

t.test('snapshot -l: oldest first, memory size or -, time to the second', async (t) => {
  t.equal(formatSnapshots([
    { disk: '/v/b.qcow2', name: 'cold', vmStateBytes: 0, date: '2026-12-07T03:00:00.000Z' },
    { disk: '/v/a.qcow2', name: 'before-upgrade', vmStateBytes: 300 * 1024 * 1024, date: '2026-12-06T03:00:00.000Z' },
  ]), [
    'NAME            VMSTATE  DATE                  DISK',
    'before-upgrade     300M  2026-12-06T03:00:00Z  /v/a.qcow2',
    'cold                  -  2026-12-07T03:00:00Z  /v/b.qcow2',
    '',
  ].join('\n'));
});

t.test('grow: -s size and one disk, resolved against the working directory', async (t) => {
  t.same(parseGrow(['-s', '64M', 'd.qcow2'], '/var/vm', warn), { disk: '/var/vm/d.qcow2', size: 64 * 1024 * 1024 });
  t.same(parseGrow(['/a/d.raw', '-s', '1G'], '/x', warn), { disk: '/a/d.raw', size: 1024 ** 3 });
  for (const bad of [['d.qcow2'], ['-s', '64M'], ['-s', '64M', 'a', 'b']]) t.throws(() => parseGrow(bad, '/', warn), UsageError, JSON.stringify(bad));
  t.throws(() => parseGrow(['-s', '10K', 'd'], '/', warn), /at least 1MB/);
});

t.test('events: an optional id', async (t) => {
  t.same(parseEvents([], warn), { target: undefined });
  t.same(parseEvents(['web'], warn), { target: 'web' });
  t.throws(() => parseEvents(['a', 'b'], warn), UsageError);
  t.throws(() => parseEvents(['-x'], warn), /invalid id/);
});
