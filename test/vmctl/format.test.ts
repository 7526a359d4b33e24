// Tests for vmctl/format: the status table against OpenBSD's printf layout and against golden files.
// Regenerate the golden files with VMD_UPDATE_GOLDEN=1 after a deliberate change, and review the diff.
import t, { type Test } from 'tap';
import { golden as goldenFile } from '../lib/golden.js';
import { formatStatus, ownerText, STATUS_HEADER, statusRow, ttyText, stateText } from '../../vmctl/format.js';
import { STATUS_FIXTURE } from './harness.js';

/** Golden files of vmctl's output. */
function golden(t: Test, name: string, actual: string): void {
  goldenFile(t, 'test/vmctl/golden', name, actual);
}

t.test('OpenBSD\'s own rendering', async (t) => {
  t.equal(STATUS_HEADER, '   ID   PID VCPUS  MAXMEM  CURMEM     TTY        OWNER    STATE NAME');
  t.equal(statusRow(STATUS_FIXTURE[0]!), '    1 72118     1    1.0G   88.1M   ttyp8         root  running example');
  t.equal(statusRow(STATUS_FIXTURE[1]!), '    2     -     1    512M       -       -    joe:wheel  stopped vm2');
});

t.test('columns', async (t) => {
  t.equal(ttyText('/dev/ttyp8'), 'ttyp8');
  t.equal(ttyText('/dev/'), '/dev/');
  t.equal(ttyText('pts3'), 'pts3');
  t.equal(ttyText(null), '-');
  t.equal(ttyText(''), '-');
  t.equal(ownerText('averyverylongusername:staff'), 'averyverylongus');
  t.equal(ownerText('joe:wheel'), 'joe:wheel');
  t.equal(stateText('starting'), 'running');
  t.equal(stateText('waiting'), 'waiting');
});

t.test('filters and exit status', async (t) => {
  const all = formatStatus(STATUS_FIXTURE);
  t.equal(all.found, STATUS_FIXTURE.length);
  const running = formatStatus(STATUS_FIXTURE, { running: true });
  t.equal(running.found, 4, 'running, paused, starting and stopping VMs pass -r');
  const one = formatStatus(STATUS_FIXTURE, { ref: { id: 2, name: undefined } });
  t.equal(one.text, `${STATUS_HEADER}\n${statusRow(STATUS_FIXTURE[1]!)}\n`);
  const byName = formatStatus(STATUS_FIXTURE, { ref: { id: undefined, name: 'tiny' } });
  t.equal(byName.text.split('\n').length, 3);
  const none = formatStatus(STATUS_FIXTURE, { ref: { id: 99, name: undefined } });
  t.equal(none.text, `${STATUS_HEADER}\n`, 'a non-matching id prints just the header');
  t.ok(none.found > 0, '... and does not fail');
  const stoppedOnly = formatStatus([STATUS_FIXTURE[1]!], { running: true });
  t.equal(stoppedOnly.found, 0, 'nothing passed -r: exit 1');
  t.equal(formatStatus([]).found, 0, 'no VMs at all: exit 1');
});

t.test('golden files', async (t) => {
  golden(t, 'status.txt', formatStatus(STATUS_FIXTURE).text);
  golden(t, 'status-r.txt', formatStatus(STATUS_FIXTURE, { running: true }).text);
  golden(t, 'status-id.txt', formatStatus(STATUS_FIXTURE, { ref: { id: 3, name: undefined } }).text);
  golden(t, 'status-empty.txt', formatStatus([]).text);
});
