// Tests for `vmctl firewall`: the table against a golden file, the arguments, and the compiled vmctl against a
// throwaway socket server. Regenerate the golden file with VMD_UPDATE_GOLDEN=1 after a deliberate change.
import t from 'tap';
import type { FirewallInfo } from '../../share/protocol.js';
import { formatFirewall, parseFirewall } from '../../vmctl/firewall.js';
import { CliError, UsageError } from '../../vmctl/errors.js';
import { golden } from '../lib/golden.js';
import { fakeVmd, runVmctl } from './harness.js';

const FIXTURE: FirewallInfo[] = [
  {
    vmId: 1, vm: 'web', index: 0, link: 'vmd1i0', switch: 'lan', local: false, lockedLladdr: true, lockedIp: null,
    rules: [
      { n: 1, text: 'block in', action: 'block', source: '/etc/vm.conf:7', count: { packets: 1234, bytes: 98765 } },
      { n: 2, text: 'pass in proto tcp to any port { 80 443 }', action: 'pass', source: '/etc/vm.conf:8', count: { packets: 17, bytes: 1020 } },
    ],
    macSpoof: { packets: 2, bytes: 84 }, ipSpoof: null, vlan: { packets: 0, bytes: 0 }, guarded: [], guard: null,
  },
  {
    vmId: 1, vm: 'web', index: 1, link: 'vmd1i1', switch: null, local: true, lockedLladdr: true, lockedIp: '100.64.1.5',
    rules: [], macSpoof: { packets: 0, bytes: 0 }, ipSpoof: { packets: 5, bytes: 300 }, vlan: null, guarded: ['dhcp', 'router'], guard: { packets: 3, bytes: 1026 },
  },
];

t.test('table', async (t) => {
  const out = formatFirewall(FIXTURE);
  golden(t, 'test/vmctl/golden', 'firewall.txt', out);
  const lines = out.trimEnd().split('\n');
  t.match(lines[0], /^VM +IF +# +PACKETS +BYTES RULE$/);
  t.equal(lines.length, 1 + 2 + 2 + 1 + 3, 'header, two rules, mac and vlan lines, a no-rules line, mac, ip and guard lines');
  t.match(lines[2], /^web +0 +2 +17 +1020B pass in proto tcp to any port \{ 80 443 \}$/);
  const stopped = formatFirewall([{ ...FIXTURE[0]!, link: null, rules: FIXTURE[0]!.rules.map((r) => ({ ...r, count: null })), macSpoof: null, vlan: null }]);
  t.match(stopped.split('\n')[1], /^web +0 +1 +- +- block in$/, 'a stopped VM: rules without counters');
});

t.test('arguments', async (t) => {
  t.same(parseFirewall(['web'], () => {}), { target: 'web', index: undefined });
  t.same(parseFirewall(['3', '1'], () => {}), { target: '3', index: 1 });
  t.throws(() => parseFirewall([], () => {}), UsageError);
  t.throws(() => parseFirewall(['a', '0', 'x'], () => {}), UsageError);
  t.throws(() => parseFirewall(['web', 'eth0'], () => {}), new CliError('interface number is invalid: eth0'));
  t.throws(() => parseFirewall(['web', '1024'], () => {}), new CliError('interface number is too large: 1024'));
});

t.test('over the socket', async (t) => {
  const vmd = await fakeVmd((req) => {
    if (req.target === 'gone') return { type: 'error', id: req.id, error: { code: 'ERR_VM_NOT_FOUND', message: 'vm "gone": not found' } };
    return { type: 'vm.firewall.response', id: req.id, interfaces: req.index === undefined ? FIXTURE : FIXTURE.filter((f) => f.index === req.index) };
  });
  t.teardown(() => vmd.close());
  const all = await runVmctl(['firewall', 'web'], { socket: vmd.path });
  t.same(all, { exitCode: 0, stdout: formatFirewall(FIXTURE), stderr: '' });
  t.same(vmd.requests[0], { v: 1, id: 1, type: 'vm.firewall.request', target: 'web' });
  const one = await runVmctl(['fire', 'web', '1'], { socket: vmd.path });
  t.equal(one.stdout, formatFirewall([FIXTURE[1]!]));
  t.same(vmd.requests[1], { v: 1, id: 1, type: 'vm.firewall.request', target: 'web', index: 1 });
  const json = await runVmctl(['firewall', '--json', 'web'], { socket: vmd.path });
  t.same(JSON.parse(json.stdout).interfaces, FIXTURE);
  const gone = await runVmctl(['firewall', 'gone'], { socket: vmd.path });
  t.same(gone, { exitCode: 1, stdout: '', stderr: 'vmctl: vm "gone": not found\n' });
});
