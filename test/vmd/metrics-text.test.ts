// The Prometheus exposition vmd serves: the text passes promtool's parser and linter, labels are escaped, every
// family is declared once, and vmm's readers of /proc and QMP take only what they expect.

import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type { FirewallInfo, LinkInfo, VmInfo } from '../../share/protocol.js';
import { metricsText, type MetricsSnapshot } from '../../vmd/metrics-text.js';
import { blockStatsOf, vcpuSeconds, vcpuThreadsOf } from '../../vmd/vmm/metrics.js';

const vm = (id: number, name: string, state: VmInfo['state']): VmInfo => ({
  id, name, pid: state === 'stopped' ? null : 1000 + id, vcpus: 2, maxmem: 512 * 1024 * 1024, curmem: null, tty: null,
  owner: 'root', uid: 0, gid: null, state, started: null, origin: 'config',
});

const link: LinkInfo = {
  vmId: 1, vm: 'web', index: 0, link: 'vmd1i0', lladdr: 'fe:e1:bb:00:00:01', switch: null, local: true, address: '100.64.1.3/31',
  rxPackets: 10, rxBytes: 1000, rxDropped: 0, txPackets: 20, txBytes: 2000, txDropped: 1, spoofDropped: 3, blocked: 4,
};

const firewall: FirewallInfo = {
  vmId: 1, vm: 'web', index: 0, link: 'vmd1i0', switch: null, local: true, lockedLladdr: true, lockedIp: '100.64.1.3',
  rules: [
    { n: 1, text: 'block in', action: 'block', source: 'vm.conf:3', count: { packets: 5, bytes: 300 } },
    { n: 2, text: 'pass in proto tcp to port 22', action: 'pass', source: 'vm.conf:4', count: { packets: 7, bytes: 900 } },
  ],
  macSpoof: { packets: 1, bytes: 60 }, ipSpoof: { packets: 2, bytes: 120 }, vlan: null, guarded: [], guard: null,
};

const snapshot: MetricsSnapshot = {
  vms: [vm(1, 'web', 'running'), vm(2, 'we"ird\\name', 'stopped')],
  links: [link],
  firewall: [firewall],
  guests: [{ vmId: 1, vcpuSeconds: 12.34, residentBytes: 300_000_000, block: [{ device: 'disk0', readBytes: 4096, writeBytes: 512, readOps: 2, writeOps: 1 }] }],
};

t.test('the exposition passes promtool check metrics', async (t) => {
  // share/setup installs prometheus (for promtool): missing, this fails rather than skips.
  for (const s of [snapshot, { vms: [], links: [], firewall: [], guests: [] }]) {
    const r = await execa('promtool', ['check', 'metrics'], { input: metricsText(s), reject: false });
    t.equal(r.exitCode, 0, `promtool: ${r.stdout}${r.stderr}`);
    t.equal(`${r.stdout}${r.stderr}`.trim(), '', 'no lint remarks either');
  }
});

t.test('samples carry the VM, its state and its counters', async (t) => {
  const text = metricsText(snapshot);
  t.match(text, /^vmd_vm_state\{id="1",vm="web",state="running"\} 1$/m);
  t.match(text, /^vmd_vm_state\{id="1",vm="web",state="paused"\} 0$/m);
  t.match(text, /^vmd_vm_state\{id="2",vm="we\\"ird\\\\name",state="stopped"\} 1$/m, 'quotes and backslashes escaped');
  t.match(text, /^vmd_vm_vcpu_seconds_total\{id="1",vm="web"\} 12\.34$/m);
  t.match(text, /^vmd_vm_block_read_bytes_total\{id="1",vm="web",device="disk0"\} 4096$/m);
  t.match(text, /^vmd_link_receive_bytes_total\{id="1",vm="web",if="0",link="vmd1i0"\} 1000$/m);
  t.match(text, /^vmd_link_spoofed_packets_total\{id="1",vm="web",if="0",link="vmd1i0"\} 3$/m);
  t.match(text, /^vmd_firewall_rule_packets_total\{id="1",vm="web",if="0",link="vmd1i0",rule="2",action="pass"\} 7$/m);
  t.match(text, /^vmd_firewall_dropped_packets_total\{id="1",vm="web",if="0",link="vmd1i0",kind="ip"\} 2$/m);
  t.notMatch(text, /kind="vlan"/, 'a counter that does not exist is left out, not shown as 0');
  t.equal(text.split('\n').filter((l) => l.startsWith('# TYPE vmd_vm_state ')).length, 1, 'one TYPE line per family');
});

t.test('vCPU time is the utime and stime of the threads QMP names, in seconds', async (t) => {
  const proc = mkdtempSync(join(tmpdir(), 'vmd-proc-'));
  t.teardown(() => rmSync(proc, { recursive: true, force: true }));
  const thread = (tid: number, comm: string, utime: number, stime: number): void => {
    mkdirSync(join(proc, '42', 'task', String(tid)), { recursive: true });
    writeFileSync(join(proc, '42', 'task', String(tid), 'comm'), `${comm}\n`);
    // The command name may hold spaces and parentheses: fields are counted after the last ')'.
    const fields = ['S', ...Array.from({ length: 10 }, () => '0'), String(utime), String(stime), '0', '0'];
    writeFileSync(join(proc, '42', 'task', String(tid), 'stat'), `${tid} (${comm}) ${fields.join(' ')}\n`);
  };
  thread(42, 'qemu-system-x86', 5000, 5000);
  thread(43, 'qemu (a) b', 150, 50);
  thread(44, 'qemu-system-x86', 100, 0);
  const threads = vcpuThreadsOf([{ 'cpu-index': 0, 'thread-id': 43 }, { 'cpu-index': 1, 'thread-id': 44 }, { 'thread-id': '45' }, null]);
  t.same(threads, [43, 44]);
  t.equal(vcpuSeconds(42, threads, proc), 3, 'the main thread is not a vCPU');
  t.equal(vcpuSeconds(42, [99], proc), null, 'a thread that is not there');
  t.equal(vcpuSeconds(7, threads, proc), null, 'a process that is gone');
  t.same(vcpuThreadsOf({ error: 1 }), []);
});

t.test('query-blockstats: drives with an id and numbers, nothing else', async (t) => {
  t.same(blockStatsOf([
    { device: 'disk0', stats: { rd_bytes: 10, wr_bytes: 20, rd_operations: 1, wr_operations: 2, flush_operations: 9 } },
    { device: '', 'node-name': '#block123', stats: { rd_bytes: 1 } },
    { device: 'cdrom0', stats: { rd_bytes: 'lots' } },
    { device: 'x'.repeat(200), stats: {} },
    null,
  ]), [
    { device: 'disk0', readBytes: 10, writeBytes: 20, readOps: 1, writeOps: 2 },
    { device: 'cdrom0', readBytes: 0, writeBytes: 0, readOps: 0, writeOps: 0 },
  ]);
  t.same(blockStatsOf({ error: 'x' }), []);
});
