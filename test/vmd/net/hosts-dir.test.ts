// Tests for vmd/net/hosts-dir and SwitchDhcp's use of it: the hosts file text, one file per fixed lease written
// whole, what each change means to a running dnsmasq, the upgrade from a single hosts file, pruning after re-adoption.

import t from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfigText } from '../../../grammar/parse.js';
import { hostsFileText, readHostsFile } from '../../../vmd/net/leases.js';
import { hostsDirPrepare, hostsDirPrune, hostsEntryName, hostsEntryRead, hostsEntryRemove, hostsEntryWrite } from '../../../vmd/net/hosts-dir.js';
import { SwitchDhcp } from '../../../vmd/net/switch-dhcp.js';
import type { LinkState } from '../../../vmd/net/plan.js';

function tempDir(t: { teardown: (f: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-hosts-dir-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const mode = (f: string) => statSync(f).mode & 0o777;

t.test('hosts file text: written and read back', async (t) => {
  const dir = tempDir(t);
  const text = hostsFileText([{ mac: 'FE:E1:BB:00:00:01', address: '10.0.0.2' }, { mac: 'fe:e1:bb:00:00:02', address: '10.0.0.6', hostname: 'web' }]);
  t.equal(text, 'fe:e1:bb:00:00:01,10.0.0.2\nfe:e1:bb:00:00:02,10.0.0.6,web\n');
  t.equal(hostsFileText([]), '');
  t.throws(() => hostsFileText([{ mac: 'fe:e1', address: '10.0.0.2' }]), { message: /bad MAC/ });
  t.throws(() => hostsFileText([{ mac: 'fe:e1:bb:00:00:01', address: '10.0.0.2', hostname: 'a,b' }]), { message: /bad hostname/ });
  const f = join(dir, 'x.hosts');
  t.same(readHostsFile(f), new Map(), 'missing file');
  writeFileSync(f, `${text}garbage\nfe:e1:bb:00:00:03,10.0.0\n`);
  t.same(readHostsFile(f), new Map([['fe:e1:bb:00:00:01', '10.0.0.2'], ['fe:e1:bb:00:00:02', '10.0.0.6']]));
});

t.test('hostsEntryName: the MAC with dashes, nothing dnsmasq skips, nothing but a MAC', async (t) => {
  t.equal(hostsEntryName('FE:E1:BB:00:00:01'), 'fe-e1-bb-00-00-01');
  for (const bad of ['../../etc/passwd', 'fe:e1:bb:00:00', 'fe:e1:bb:00:00:01/x', '.fe:e1:bb:00:00:01', 'fe:e1:bb:00:00:01~', '']) {
    t.throws(() => hostsEntryName(bad), { code: 'ERR_INVALID', message: `dhcp hosts: bad MAC ${bad}` }, JSON.stringify(bad));
  }
});

t.test('hostsEntryWrite/Remove/Read: one world-readable file per MAC, and what dnsmasq must be told', async (t) => {
  const dir = tempDir(t);
  const old = process.umask(0o077);
  t.teardown(() => process.umask(old));
  const file = join(dir, 'fe-e1-bb-00-00-01');
  t.equal(hostsEntryRead(dir, 'fe:e1:bb:00:00:01'), undefined, 'no file, no lease');
  t.equal(hostsEntryWrite(dir, { mac: 'FE:E1:BB:00:00:01', address: '10.0.0.2' }), 'added', 'a new file: dnsmasq reads it by inotify');
  t.equal(readFileSync(file, 'utf8'), 'fe:e1:bb:00:00:01,10.0.0.2\n', 'the line hostsFileText makes');
  t.equal(mode(file), 0o644, 'readable by dnsmasq (nobody) even under umask 077');
  t.equal(hostsEntryWrite(dir, { mac: 'fe:e1:bb:00:00:01', address: '10.0.0.2' }), 'same', 'the same lease again: nothing to do');
  t.equal(hostsEntryRead(dir, 'FE:E1:BB:00:00:01'), '10.0.0.2');
  // A temporary file left by a crash, unreadable: the next write replaces it and the lease is still readable.
  writeFileSync(join(dir, '.fe-e1-bb-00-00-01.tmp'), 'junk', { mode: 0o600 });
  t.equal(hostsEntryWrite(dir, { mac: 'fe:e1:bb:00:00:01', address: '10.0.0.9' }), 'changed', 'another address: dnsmasq must re-read (SIGHUP)');
  t.equal(readFileSync(file, 'utf8'), 'fe:e1:bb:00:00:01,10.0.0.9\n');
  t.equal(mode(file), 0o644);
  t.same(readdirSync(dir), ['fe-e1-bb-00-00-01'], 'no temporary file stays');
  t.throws(() => hostsEntryWrite(dir, { mac: 'fe:e1:bb:00:00:02', address: '10.0.0' }), 'a bad address is refused');
  t.throws(() => hostsEntryWrite(dir, { mac: 'fe:e1:bb:00:00:02', address: '10.0.0.3', hostname: 'a,b' }), { message: /bad hostname/ });
  t.same(readdirSync(dir), ['fe-e1-bb-00-00-01'], 'and leaves no file');
  t.equal(hostsEntryRemove(dir, 'fe:e1:bb:00:00:01'), true, 'removed: dnsmasq must forget it (SIGHUP)');
  t.equal(hostsEntryRemove(dir, 'fe:e1:bb:00:00:01'), false, 'nothing to remove: nothing to tell');
  t.same(readdirSync(dir), []);
  t.throws(() => hostsEntryWrite(join(dir, 'absent'), { mac: 'fe:e1:bb:00:00:01', address: '10.0.0.2' }), { code: 'ERR_INTERNAL', message: /^dhcp hosts .*absent\/fe-e1-bb-00-00-01: ENOENT/ });
});

t.test('hostsDirPrepare: a 0755 directory, and an older vmd\'s single hosts file becomes one file per lease', async (t) => {
  const dir = tempDir(t);
  const legacy = join(dir, 'switch-lan.hosts');
  const hostsDir = join(dir, 'switch-lan.hosts.d');
  writeFileSync(legacy, 'fe:e1:bb:00:00:01,10.81.0.9\nFE:E1:BB:00:00:02,10.81.0.6\ngarbage\n');
  hostsDirPrepare(hostsDir, legacy);
  t.equal(mode(hostsDir), 0o755);
  t.notOk(existsSync(legacy), 'the old file is gone');
  t.same(readdirSync(hostsDir).sort(), ['fe-e1-bb-00-00-01', 'fe-e1-bb-00-00-02']);
  t.equal(readFileSync(join(hostsDir, 'fe-e1-bb-00-00-02'), 'utf8'), 'fe:e1:bb:00:00:02,10.81.0.6\n');
  hostsDirPrepare(hostsDir, legacy);
  t.equal(readdirSync(hostsDir).length, 2, 'again: nothing changes');
});

t.test('SwitchDhcp after an upgrade: a re-adopted guest keeps the address the old hosts file gave it', async (t) => {
  const dir = tempDir(t);
  const sw = parseConfigText('switch "lan" {\n interface vmdbr9\n address 10.81.0.1/24\n dhcp\n}\n', 'vm.conf').config!.switches[0]!;
  writeFileSync(join(dir, 'switch-lan.hosts'), 'fe:e1:bb:00:00:01,10.81.0.9\n');
  const dhcp = new SwitchDhcp(dir);
  t.equal(dhcp.fixedLease(sw, 1, 0, 'fe:e1:bb:00:00:01', true, []), '10.81.0.9', 're-adopted: the recorded lease');
  t.notOk(existsSync(join(dir, 'switch-lan.hosts')), 'converted on first use');
  t.equal(dhcp.fixedLease(sw, 1, 0, 'fe:e1:bb:00:00:01', false, []), '10.81.0.2', 'a new start: its own slot');
  t.equal(dhcp.fixedLease(sw, 2, 0, 'fe:e1:bb:00:00:02', true, []), '10.81.0.6', 'no file: its own slot');
});

t.test('SwitchDhcp leases: added and dropped one file at a time, a copied MAC keeps its own, pruned after re-adoption', async (t) => {
  const dir = tempDir(t);
  const hostsDir = join(dir, 'switch-lan.hosts.d');
  const link = (vmId: number, mac: string, fixed: string | null, sw: string | null = 'lan'): LinkState => ({
    vmId, vm: `g${vmId}`, index: 0, name: `vmd${vmId}i0`, netns: null, mac, switch: sw, bridge: sw === null ? null : 'vmdbr9',
    local: null, lockMac: false, forwards: [], groups: [], rules: [], dhcp: null, fixed,
  });
  const dhcp = new SwitchDhcp(dir);
  const a = link(1, 'fe:e1:bb:00:00:01', '10.81.0.2');
  const b = link(2, 'fe:e1:bb:00:00:02', '10.81.0.6');
  dhcp.leaseAdd(a);
  dhcp.leaseAdd(b);
  dhcp.leaseAdd(link(3, 'fe:e1:bb:00:00:03', null));
  dhcp.leaseAdd(link(4, 'fe:e1:bb:00:00:04', null, null));
  t.same(readdirSync(hostsDir).sort(), ['fe-e1-bb-00-00-01', 'fe-e1-bb-00-00-02'], 'only links with a fixed lease have a file');
  // A second guest given the first one's lladdr: dropping either leaves the other's lease in place.
  const copy = link(5, 'FE:E1:BB:00:00:01', '10.81.0.18');
  dhcp.leaseDrop(a, [b, copy]);
  t.equal(readFileSync(join(hostsDir, 'fe-e1-bb-00-00-01'), 'utf8'), 'fe:e1:bb:00:00:01,10.81.0.18\n', 'the copy\'s lease stays');
  dhcp.leaseDrop(copy, [b]);
  t.same(readdirSync(hostsDir), ['fe-e1-bb-00-00-02']);
  // After a restart: files of guests that died while vmd was down go, those of re-adopted guests stay.
  mkdirSync(join(hostsDir, 'someone'));
  writeFileSync(join(hostsDir, 'fe-e1-bb-00-00-07'), 'fe:e1:bb:00:00:07,10.81.0.30\n');
  writeFileSync(join(hostsDir, '.fe-e1-bb-00-00-08.tmp'), 'x');
  t.equal(hostsDirPrune(hostsDir, new Set(['FE:E1:BB:00:00:02'])), 1, 'one lease pruned');
  t.same(readdirSync(hostsDir).sort(), ['fe-e1-bb-00-00-02', 'someone'], 'a leftover temporary file goes too; a directory is left alone');
});
