// Tests for `vmctl links`: the table against a golden file, and the compiled vmctl against a throwaway socket server.
// Regenerate the golden file with VMD_UPDATE_GOLDEN=1 after a deliberate change, and review the diff.
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../share/paths.js';
import { golden as goldenFile } from '../lib/golden.js';
import type { LinkInfo } from '../../share/protocol.js';
import { formatLinks, linkCells, parseLinks } from '../../vmctl/links.js';
import { CliError, UsageError } from '../../vmctl/errors.js';
import { fakeVmd, runVmctl, type Handler } from './harness.js';

const goldenDir = join(packageRoot, 'test', 'vmctl', 'golden');

/** Golden files of vmctl's output. */
function golden(t: Test, name: string, actual: string): void {
  goldenFile(t, 'test/vmctl/golden', name, actual);
}

/** Links of every kind: switch with a lease, local, passt, unattached, no counters, big counters; out of order on purpose. */
const LINKS_FIXTURE: LinkInfo[] = [
  { vmId: 12, vm: 'db.example.com', index: 0, link: 'vmd12i0', lladdr: 'fe:e1:bb:d1:0c:01', switch: 'uplink', local: false, address: null, rxPackets: 0, rxBytes: 0, rxDropped: 0, txPackets: 0, txBytes: 0, txDropped: 0, spoofDropped: 0, blocked: 0 },
  { vmId: 1, vm: 'web', index: 1, link: 'vmd1i1', lladdr: 'fe:e1:bb:d2:00:01', switch: null, local: true, address: '100.64.1.5/31', rxPackets: 1234567, rxBytes: 1610612736, rxDropped: 3, txPackets: 998877, txBytes: 92379545, txDropped: 0, spoofDropped: 17, blocked: 4 },
  { vmId: 1, vm: 'web', index: 0, link: 'vmd1i0', lladdr: '52:54:00:12:34:56', switch: 'uplink', local: false, address: '10.0.0.23/24', rxPackets: 42, rxBytes: 5120, rxDropped: 0, txPackets: 40, txBytes: 4321, txDropped: 1, spoofDropped: 0, blocked: 120 },
  { vmId: 5, vm: 'pt', index: 0, link: 'passt/4242', lladdr: 'fe:e1:bb:d5:00:00', switch: null, local: false, address: '10.96.0.5/24', rxPackets: 0, rxBytes: 0, rxDropped: 0, txPackets: 0, txBytes: 0, txDropped: 0, spoofDropped: 0, blocked: 0, kind: 'passt', forwards: ['tcp 8080>80', 'udp 53>53'] },
  { vmId: 3, vm: 'lab', index: 2, link: 'vmd3i2', lladdr: 'fe:e1:bb:d3:00:03', switch: null, local: false, address: null, rxPackets: 7, rxBytes: 512, rxDropped: 0, txPackets: 0, txBytes: 0, txDropped: 0, spoofDropped: 0, blocked: 0 },
];

t.test('cells and layout', async (t) => {
  t.same(linkCells(LINKS_FIXTURE[3]!), ['pt', '0', 'passt/4242', 'fe:e1:bb:d5:00:00', '(passt)', '10.96.0.5/24', 'tcp 8080>80,udp 53>53', '-', '-', '-', '-', '-', '-', '-', '-'], 'passt: forwards, no counters');
  t.same(linkCells(LINKS_FIXTURE[1]!), ['web', '1', 'vmd1i1', 'fe:e1:bb:d2:00:01', '(local)', '100.64.1.5/31', '-', '1234567', '1.5G', '3', '998877', '88.1M', '0', '17', '4']);
  t.same(linkCells(LINKS_FIXTURE[4]!).slice(4, 7), ['-', '-', '-'], 'no switch, no address, no forwards');
  t.equal(formatLinks([]), 'VM IF LINK LLADDR SWITCH ADDRESS FORWARDS RX-PKTS RX-BYTES RX-DROP TX-PKTS TX-BYTES TX-DROP SPOOFED BLOCKED\n', 'header only');
  const lines = formatLinks(LINKS_FIXTURE).split('\n');
  t.equal(lines.length, 7, 'header, five rows, final newline');
  t.ok(lines.every((l) => !l.endsWith(' ')), 'no trailing blanks');
  t.same(lines.slice(1, 6).map((l) => l.split(/\s+/)[2]), ['vmd1i0', 'vmd1i1', 'vmd3i2', 'passt/4242', 'vmd12i0'], 'ordered by VM id, then NIC');
  const header = lines[0]!;
  for (const l of lines.slice(1, 6)) t.equal(l.length, header.length, 'columns line up (right-aligned last column)');
});

t.test('golden file', async (t) => {
  golden(t, 'links.txt', formatLinks(LINKS_FIXTURE));
});

t.test('arguments', async (t) => {
  const warnings: string[] = [];
  t.same(parseLinks([], (m) => warnings.push(m)), { target: undefined });
  t.same(parseLinks(['web'], (m) => warnings.push(m)), { target: 'web' });
  t.same(parseLinks(['007'], (m) => warnings.push(m)), { target: '7' });
  t.throws(() => parseLinks(['a', 'b'], () => {}), UsageError);
  t.throws(() => parseLinks(['-x'], () => {}), UsageError);
  t.throws(() => parseLinks(['n'.repeat(64)], (m) => warnings.push(m)), CliError);
  t.same(warnings, ['name too long']);
});

async function withVmd(t: Test, handler: Handler) {
  const vmd = await fakeVmd(handler);
  t.teardown(() => vmd.close());
  return vmd;
}

t.test('links over the socket: request, table, filter, --json, errors', async (t) => {
  let sent: unknown;
  const vmd = await withVmd(t, (req) => {
    if (req.target === 'gone') return { type: 'error', id: req.id, error: { code: 'ERR_VM_NOT_FOUND', message: 'vm gone not found', hint: 'see vmctl status' } };
    if (req.target === 'odd') return { type: 'vm.status.response', id: req.id, vms: [], warnings: [] };
    const links = req.target === undefined ? LINKS_FIXTURE : LINKS_FIXTURE.filter((l) => l.vm === req.target || String(l.vmId) === req.target);
    sent = { type: 'vm.links.response', id: req.id, links };
    return sent;
  });
  const all = await runVmctl(['links'], { socket: vmd.path });
  t.same(all, { exitCode: 0, stdout: readFileSync(join(goldenDir, 'links.txt'), 'utf8'), stderr: '' });
  t.same(vmd.requests, [{ v: 1, id: 1, type: 'vm.links.request' }], 'no target: every VM');

  const one = await runVmctl(['li', 'web'], { socket: vmd.path });
  t.equal(one.exitCode, 0);
  t.equal(one.stdout, formatLinks(LINKS_FIXTURE.filter((l) => l.vm === 'web')));
  t.same(vmd.requests[1], { v: 1, id: 1, type: 'vm.links.request', target: 'web' }, 'the daemon filters');

  const json = await runVmctl(['links', '--json', '3'], { socket: vmd.path });
  t.equal(json.exitCode, 0);
  t.same(JSON.parse(json.stdout), sent, 'the reply as it came');
  t.equal(json.stdout.split('\n').length, 2, 'one line');

  t.same(await runVmctl(['links', 'gone'], { socket: vmd.path }), { exitCode: 1, stdout: '', stderr: 'vmctl: vm gone not found\nvmctl: hint: see vmctl status\n' });
  const gone = await runVmctl(['links', 'gone', '--json'], { socket: vmd.path });
  t.equal(gone.exitCode, 1);
  t.equal(JSON.parse(gone.stdout).error.code, 'ERR_VM_NOT_FOUND');
  t.same(await runVmctl(['links', 'odd'], { socket: vmd.path }), { exitCode: 1, stdout: '', stderr: 'vmctl: unexpected response received from vmd\n' });
  t.same(await runVmctl(['links', 'a', 'b'], { socket: vmd.path }), { exitCode: 1, stdout: '', stderr: 'usage:\tvmctl [-v] links [id]\n' });
});

t.test('a daemon without links support answers with an error', async (t) => {
  const vmd = await withVmd(t, (req) => ({ type: 'error', id: 0, error: { code: 'ERR_PROTOCOL', message: `message: unknown type "${String(req.type)}"` } }));
  t.same(await runVmctl(['links'], { socket: vmd.path }), { exitCode: 1, stdout: '', stderr: 'vmctl: message: unknown type "vm.links.request"\n' });
});
