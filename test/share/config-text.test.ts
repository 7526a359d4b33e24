// vmctl inspect's text: every VM of a config written back as vm.conf parses to the same VM (locations aside),
// instances written out whole, and the switches a VM names come along.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfigText, formatDiagnostic } from '../../grammar/parse.js';
import { confString, inspectText, switchConfigText } from '../../share/config-text.js';
import type { Config, VmConfig } from '../../share/config.js';
import { users } from '../grammar/helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'vmd-config-text-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
for (const f of ['kernel', 'initrd', 'a.qcow2', 'b.img']) writeFileSync(join(dir, f), f === 'a.qcow2' ? 'QFI\xfb\0\0\0\x03' : 'x');

function parsed(text: string): Config {
  const r = parseConfigText(text, 'vm.conf', { cwd: dir, users });
  if (r.config === null) throw new Error(r.diagnostics.map(formatDiagnostic).join('\n') + '\n' + text);
  return r.config;
}

/** A VM without where it was written: the locations differ between the original and the written text. */
function located(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(located);
  if (v === null || typeof v !== 'object') return v;
  return Object.fromEntries(Object.entries(v).filter(([k]) => k !== 'location').map(([k, x]) => [k, located(x)]));
}

const CONFIG = `
ports = "{ 22 80 }"
switch "lan" {
  interface vmdtxt0
  address 10.1.0.1/24
  dhcp
  nat
}
switch "other" { interface vmdtxt1 }
vm "base" {
  disable
  memory 256M
  cpus 2
  accel tcg
  boot "${dir}/kernel"
  initrd "${dir}/initrd"
  cmdline "console=ttyS0 quiet \\"q\\""
  disk "${dir}/a.qcow2"
  disk "${dir}/b.img" format raw
  local interface {
    forward tcp 8080 to 80
    forward udp 53
    block in
    pass in proto tcp to any port $ports
    block out quick to 10.0.0.0/8
  }
  interface tap3 {
    switch "lan"
    locked lladdr 00:11:22:aa:bb:cc
    allow dhcp
    down
  }
  owner alice:staff
  allow instance { memory, interface
    owner :staff }
}
vm "base" instance "child" {
  memory 128M
  interface { switch "lan" }
}
vm "cd" {
  cdrom "${dir}/b.img"
  boot device cdrom
  interfaces 2
  sev
}
`;

t.test('every VM written back parses to the same VM', async (t) => {
  const config = parsed(CONFIG);
  t.equal(config.vms.length, 3);
  for (const vm of config.vms) {
    const text = inspectText(vm, config.switches, vm.owner);
    const again = parsed(text);
    const back = again.vms.find((v) => v.name === vm.name) as VmConfig;
    // An instance is written as a plain vm block: what it inherited is spelled out, the parent link is not kept.
    t.same(located({ ...back, instanceOf: null }), located({ ...vm, instanceOf: null }), `${vm.name}:\n${text}`);
  }
});

t.test('the switches a VM names come along, the others do not', async (t) => {
  const config = parsed(CONFIG);
  const text = inspectText(config.vms.find((v) => v.name === 'base')!, config.switches, null);
  t.match(text, /^switch "lan" \{\n\tenable\n\tinterface vmdtxt0\n\taddress 10\.1\.0\.1\/24\n\tdhcp\n\tnat\n\}\n/);
  t.notMatch(text, /other/);
  t.same(located(parsed(text).switches.find((s) => s.name === 'lan')), located({ ...config.switches[0], id: 1 }));
});

t.test('strings are quoted as the lexer reads them', async (t) => {
  t.equal(confString('a "b" \\c'), '"a \\"b\\" \\\\c"');
});

t.test('a spanned switch is written back in each form it has', async (t) => {
  for (const peers of ['remote 192.0.2.2', 'remote { 192.0.2.2, 192.0.2.3 }', 'group 239.1.1.1 dev eth0']) {
    const config = parsed(`switch "span" {\n\tinterface vmdtxt9\n\tvxlan 42 ${peers}\n}\n`);
    const text = switchConfigText(config.switches[0]!);
    t.same(located(parsed(text).switches[0]), located(config.switches[0]), peers);
  }
});
