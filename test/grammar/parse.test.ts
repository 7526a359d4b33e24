// Unit tests of the vm.conf grammar: every option, OpenBSD's messages at OpenBSD's lines, macros, includes,
// yacc error recovery, vmd's extensions (rules, forwards, switch options) and model round trips.

import t from 'tap';
import { parse, errorsOf } from './helpers.js';
import { KEYWORDS, EXTENSION_WORDS } from '../../grammar/keywords.js';
import { WORD_CODES } from '../../grammar/tokens.js';

const files = { 'a.img': '', 'b.img': '', 'q.img': 'QFI\xfb\0\0\0\x03', k: '', initrd: '' };
const ok = (text: string, macros: Record<string, string> = {}) => {
  const p = parse(text, files, macros);
  if (p.result.config === null) throw new Error(`unexpected errors:\n${p.out}`);
  return p.result.config;
};

t.test('keywords', async (t) => {
  t.equal(KEYWORDS.length, 39);
  t.same([...KEYWORDS].sort(), KEYWORDS, 'sorted like parse.y');
  for (const w of EXTENSION_WORDS) t.notOk(KEYWORDS.includes(w), `${w} is not reserved`);
  t.equal(new Set(WORD_CODES.values()).size, WORD_CODES.size, 'distinct token codes');
  t.equal(errorsOf('vm start { memory 1G }\n'), 'vmd: vm.conf:1: syntax error', 'keywords must be quoted');
  t.equal(errorsOf('vm "x" { size 1G }\n'), 'vmd: vm.conf:1: syntax error', 'dead keyword size');
  t.equal(ok('vm "start" { disable }\n').vms[0]!.name, 'start');
  // Extension words stay plain strings where no extension expects them.
  const c = ok('port = "p"\nvm nat { disable }\nvm pass { owner root }\nswitch forward { interface bridge0 }\nvm $port { disable }\n');
  t.same(c.vms.map((v) => v.name), ['nat', 'pass', 'p']);
  t.equal(c.switches[0]!.name, 'forward');
});

t.test('lexical rules', async (t) => {
  t.equal(errorsOf('x = 512\n'), 'vmd: vm.conf:1: syntax error', 'a macro value must be a string');
  t.equal(ok('# comment\nvm "a" { disable } # trailing\n').vms.length, 1);
  t.equal(ok('vm "a" \\\n { disable }\n').vms[0]!.location.line, 1, 'line continuation');
  t.equal(ok('switch "a\\"b\\ c" { interface br0 }\n').switches[0]!.name, 'a"b c', 'escapes inside quotes');
  t.equal(ok("switch 'a\\xb' { interface br0 }\n").switches[0]!.name, 'a\\xb', 'other backslashes are kept');
  t.equal(ok('vm "a\nb" { disable }\n').vms[0]!.name, 'ab', 'newline inside quotes is dropped');
  t.equal(ok('vm "a" "b" c { disable }\n').vms[0]!.name, 'abc', 'adjacent strings concatenate');
  t.equal(ok('vm 1a { disable }\n').vms[0]!.name, '1a', 'digits then letters is a string');
  t.equal(errorsOf('vm 123 { disable }\n'), 'vmd: vm.conf:1: syntax error', 'a number is not a name');
  t.equal(errorsOf('vm "x" { disable }\nvm "y'), 'vmd: vm.conf:2: reached end of file while parsing quoted string\nvmd: vm.conf:2: syntax error');
  t.equal(errorsOf('vm "x" { interfaces 99999999999999999999 }\n'), 'vmd: vm.conf:1: "99999999999999999999" invalid number: too large\nvmd: vm.conf:1: syntax error');
  t.equal(errorsOf(`vm "${'a'.repeat(9000)}" { disable }\n`), 'vmd: vm.conf:1: string too long\nvmd: vm.conf:1: syntax error');
  t.equal(errorsOf('vm "x" { disable } ('), 'vmd: vm.conf:1: syntax error');
  t.equal(ok('vm "x" { disable }').vms.length, 1, 'no newline needed at EOF');
  t.equal(errorsOf('vm "x" {\n disable\n'), 'vmd: vm.conf:4: syntax error', 'EOF inside a block: the line after the fake newline');
});

t.test('macros', async (t) => {
  t.equal(ok('d = "/x"\nvm "v" { cdrom $d "/y.iso" }\n').vms[0]!.cdrom, '/x/y.iso', 'concatenation after expansion');
  const p = parse('dir = "@DIR@"\nvm "v" { boot $dir "/k" }\n', files);
  t.equal(p.result.config!.vms[0]!.boot, `${p.dir}/k`, 'boot $dir "k" as etc/examples/vm.conf');
  t.equal(ok('opts = "disable"\nvm "v" { $opts\n memory 1G\n}\n').vms[0]!.enabled, false, 'a macro expands to a keyword');
  t.equal(ok('sw = "interface { switch \\"s\\" }"\nswitch s { interface bridge0 }\nvm "v" { $sw }\n').vms[0]!.interfaces[0]!.switch, 's', 'several tokens');
  t.equal(ok('img = "a"\nvm "v" { disk $img.img }\n').vms[0]!.disks.length, 1, 'value continues into the following word');
  t.equal(parse('a = "x"\nswitch "v$a" { interface br0 }\n').result.config!.switches[0]!.name, 'v$a', 'no expansion inside quotes');
  t.equal(errorsOf('vm "v" { disk $nope }\nvm "w" { disable }\n'), "vmd: vm.conf:1: macro 'nope' not defined\nvmd: vm.conf:1: syntax error");
  t.equal(errorsOf('a = "x"\nb = "y"\nvm "v" { disable }\n'), "warning: macro 'a' not used\nwarning: macro 'b' not used");
  t.equal(ok('a = "1G"\na = "2G"\nvm "v" { memory $a }\n').vms[0]!.memory, 2 ** 31, 'redefinition replaces');
  t.equal(ok('m = "1G"\nvm "v" { memory $m }\n', { m: '2G' }).vms[0]!.memory, 2 ** 31, '-D wins over the file');
  t.equal(errorsOf('vm "v" { disable }\n', {}, { unused: 'x' }), "warning: macro 'unused' not used", '-D macros warn too');
  t.equal(errorsOf('"a b" = "x"\n'), 'vmd: vm.conf:1: macro name cannot contain whitespace');
  t.equal(errorsOf('a = "$a"\nvm "v" { memory $a }\n'), 'vmd: vm.conf:2: syntax error', '$ is not expanded again');
  t.equal(ok('n = "v"\nvm $n { disable }\nm = $n\nvm $m "2" { disable }\n').vms[1]!.name, 'v2', 'macro defined from a macro');
});

t.test('include', async (t) => {
  const inc = { 'sub.conf': 'vm "inc" { disable }\nmem = "1G"\n', 'bad.conf': '\nvm "x" { bogus }\n' };
  const p = parse('include "sub.conf"\nvm "top" { memory $mem }\n', inc);
  t.same(p.result.config!.vms.map((v) => v.name), ['inc', 'top']);
  t.same(p.result.config!.files, ['vm.conf', 'sub.conf']);
  t.same(p.result.config!.vms[0]!.location, { file: 'sub.conf', line: 1 });
  t.equal(parse('include "bad.conf"\n', inc).errors, 'vmd: bad.conf:2: syntax error', 'errors carry the included file name');
  t.equal(errorsOf('include "missing.conf"\nvm "v" { disable }\n'), 'vmd: vm.conf:1: failed to include file missing.conf');
  t.equal(errorsOf('f = "sub"\ninclude $f ".conf"\n', inc), "warning: macro 'mem' not used", 'include path from a macro');
});

t.test('global options', async (t) => {
  const g = ok('local prefix 10.0.0.0/8\nlocal inet6 prefix fd00:1::/48\nsocket owner alice\nstaggered start parallel 2 delay 5\naccel tcg\nqemu "/opt/qemu"\n').global;
  t.same(g.localPrefix, { address: '10.0.0.0', length: 8 });
  t.same(g.localInet6Prefix, { address: 'fd00:1::', length: 48 });
  t.equal(g.localInet6, true);
  t.same(g.socketOwner, { uid: 1000, gid: 0, user: 'alice', group: null }, 'socket group defaults to 0');
  t.same(g.staggered, { parallel: 2, delay: 5 });
  t.equal(g.accel, 'tcg');
  t.equal(g.qemu, '/opt/qemu');
  const d = ok('vm "v" { disable }\n').global;
  t.same(d.localPrefix, { address: '100.64.0.0', length: 10 });
  t.equal(d.accel, 'auto');
  t.same(ok('local prefix 10.1.0.0\n').global.localPrefix, { address: '10.1.0.0', length: 16 }, 'default /16');
  t.same(ok('local prefix "10/8"\n').global.localPrefix, { address: '10.0.0.0', length: 8 }, 'inet_net_pton style');
  t.equal(ok('local inet6\n').global.localInet6Prefix, null);
  t.equal(errorsOf('local prefix 10.0.0.0/17\n'), 'vmd: vm.conf:1: invalid local prefix: too large');
  t.equal(errorsOf('local prefix 10.0.0.0/0\n'), 'vmd: vm.conf:1: invalid local prefix: too small');
  t.equal(errorsOf('local prefix 10.0.0.1/8\n'), 'vmd: vm.conf:1: invalid local prefix: bad mask');
  t.equal(errorsOf('local prefix foo\n'), 'vmd: vm.conf:1: invalid local prefix: invalid format');
  t.equal(errorsOf('local inet6 prefix fd00::1/64\n'), 'vmd: vm.conf:1: invalid local inet6 prefix: bad mask');
  t.equal(errorsOf('local inet6 prefix zz\n'), 'vmd: vm.conf:1: invalid local inet6 prefix: Name or service not known');
  t.equal(errorsOf('local inet6 prefix fd00::/65\n'), 'vmd: vm.conf:1: invalid local inet6 prefix: too large');
  // OpenBSD's SNMP export is not implemented, so it is refused rather than accepted and ignored.
  t.equal(errorsOf('agentx\n'), 'vmd: vm.conf:1: agentx is not supported: use metrics for Prometheus instead');
  t.equal(errorsOf('vm "v" { disable }\nagentx context "c" path "/a/b"\n'), 'vmd: vm.conf:2: agentx is not supported: use metrics for Prometheus instead');
  t.equal(errorsOf('socket owner nobody\n'), 'vmd: vm.conf:1: failed to get user: nobody');
  t.equal(errorsOf('accel xen\n'), 'vmd: vm.conf:1: invalid accel: xen');
  t.equal(errorsOf('staggered start parallel 2\n'), 'vmd: vm.conf:1: syntax error');
  t.equal(errorsOf('switch "s" { interface bridge0\n local prefix 10.0.0.0/8\n}\n'), 'vmd: vm.conf:2: syntax error', 'global options only at top level');
});

t.test('switch blocks', async (t) => {
  const s = ok('switch "up" {\n interface br0\n group "uplink"\n locked lladdr\n rdomain 4\n down\n address 10.1.0.1/24\n dhcp\n nat\n vxlan 42 remote 192.0.2.1 local 192.0.2.2 dev eth0 port 4790\n}\nswitch "off" {\n interface veb1\n disable\n}\nswitch "b" { interface bridge0 }\n').switches;
  t.same(s[0], {
    name: 'up', id: 1, interface: 'br0', enabled: true, up: false, group: 'uplink', locked: true, rdomain: 4,
    address: '10.1.0.1/24', dhcp: true, nat: true, vxlan: { id: 42, remotes: ['192.0.2.1'], group: null, local: '192.0.2.2', dev: 'eth0', port: 4790 },
    location: { file: 'vm.conf', line: 1 },
  });
  t.equal(s[1]!.enabled, false);
  t.equal(s[2]!.id, 2, 'ids count enabled switches');
  t.same(ok('switch "v" { interface br0\n vxlan 1 remote 2001:db8::1\n}\n').switches[0]!.vxlan, { id: 1, remotes: ['2001:db8::1'], group: null, local: null, dev: null, port: 4789 });
  t.equal(errorsOf('switch "x" {\n up\n}\n'), 'vmd: vm.conf:3: switch "x" is missing interface name');
  t.equal(errorsOf('switch "x" {\n interface bridge0\n add vether0\n}\n'), 'vmd: vm.conf:3: syntax error');
  t.equal(errorsOf('switch "s" { interface br0\n group "g1"\n}\n'), 'vmd: vm.conf:2: invalid group name: g1');
  t.equal(errorsOf('switch "s" { interface br0\n group "sixteencharsname"\n}\n'), 'vmd: vm.conf:2: invalid group name: sixteencharsname');
  t.equal(errorsOf('switch "s" { interface "a/b" }\n'), 'vmd: vm.conf:1: invalid switch interface: a/b');
  t.equal(errorsOf('switch "s" { interface averyverylongname0 }\n'), 'vmd: vm.conf:1: switch interface too long: averyverylongname0');
  t.equal(errorsOf('switch "s" { interface br0\n rdomain 256\n}\n'), 'vmd: vm.conf:2: invalid rdomain: 256');
  t.equal(errorsOf('switch "s" { interface br0\n address 10.0.0.1\n}\n'), 'vmd: vm.conf:2: invalid address: 10.0.0.1');
  t.equal(errorsOf('switch "s" { interface br0\n address 10.0.0.1/24\n address 10.0.0.2/24\n}\n'), 'vmd: vm.conf:3: address specified more than once');
  t.equal(errorsOf('switch "s" { interface br0\n vxlan 16777216 remote 1.2.3.4\n}\n'), 'vmd: vm.conf:2: invalid vxlan id: 16777216');
  t.equal(errorsOf('switch "s" { interface br0\n vxlan 1 remote nowhere\n}\n'), 'vmd: vm.conf:2: invalid address: nowhere');
  t.equal(errorsOf('switch "s" { interface br0\n vxlan 1 remote 1.2.3.4 port 0\n}\n'), 'vmd: vm.conf:2: invalid port: 0');
  t.equal(errorsOf('switch "s" { interface br0\n vxlan 1 remote 1.2.3.4 dev "a b"\n}\n'), 'vmd: vm.conf:2: invalid vxlan device: a b');
  t.same(ok('switch "v" { interface br0\n vxlan 9 remote { 10.0.0.2, 10.0.0.3\n 10.0.0.4 } local 10.0.0.1\n}\n').switches[0]!.vxlan,
    { id: 9, remotes: ['10.0.0.2', '10.0.0.3', '10.0.0.4'], group: null, local: '10.0.0.1', dev: null, port: 4789 }, 'a list of remotes');
  t.same(ok('switch "v" { interface br0\n vxlan 9 group 239.1.1.9 dev eth0\n}\n').switches[0]!.vxlan,
    { id: 9, remotes: [], group: '239.1.1.9', local: null, dev: 'eth0', port: 4789 }, 'a multicast group');
  t.equal(errorsOf('switch "s" { interface br0\n vxlan 1 group 239.1.1.1\n}\n'), 'vmd: vm.conf:2: vxlan group 239.1.1.1 needs dev');
  t.equal(errorsOf('switch "s" { interface br0\n vxlan 1 group 10.1.1.1 dev eth0\n}\n'), 'vmd: vm.conf:2: invalid vxlan group: 10.1.1.1');
  t.equal(errorsOf('switch "s" { interface br0\n vxlan 1 remote 239.1.1.1\n}\n'), 'vmd: vm.conf:2: invalid vxlan remote: 239.1.1.1 is multicast, use group');
  t.equal(errorsOf('switch "s" { interface br0\n vxlan 1 remote { 10.0.0.2 10.0.0.2 }\n}\n'), 'vmd: vm.conf:2: vxlan remote 10.0.0.2 specified more than once');
  t.equal(errorsOf('switch "s" { interface br0\n vxlan 1 remote { }\n}\n'), 'vmd: vm.conf:2: syntax error', 'an empty list');
  t.equal(errorsOf(`switch "${'s'.repeat(64)}" { interface br0 }\n`), `vmd: vm.conf:1: switch name too long: ${'s'.repeat(64)}`);
  t.equal(errorsOf('switch "s" { interface br0 up }\n'), 'vmd: vm.conf:1: syntax error', 'one option per line after the first pair');
  t.equal(parse('switch "s" {\n interface br0\n disable\n}\n').out, 'vmd: vm.conf:4: switch "s" skipped (disabled)');
});

t.test('vm blocks', async (t) => {
  const p = parse('vm "v" {\n memory 1.5G\n cpus 2\n disk "a.img"\n disk q.img\n disk b.img format QCOW2\n cdrom "x.iso"\n boot "k"\n initrd initrd\n cmdline "console=ttyS0" " quiet"\n boot device net\n owner alice:staff\n allow instance { boot, memory\n owner :staff }\n allow instance disk\n sev\n seves\n accel kvm\n disable\n}\n', files);
  const vm = p.result.config!.vms[0]!;
  t.equal(vm.memory, 1536 * 1024 * 1024);
  t.equal(vm.cpus, 2);
  t.same(vm.disks, [
    { path: `${p.dir}/a.img`, format: 'raw' }, { path: `${p.dir}/q.img`, format: 'qcow2' }, { path: `${p.dir}/b.img`, format: 'qcow2' },
  ]);
  t.equal(vm.cdrom, `${p.dir}/x.iso`);
  t.equal(vm.boot, `${p.dir}/k`);
  t.equal(vm.initrd, `${p.dir}/initrd`);
  t.equal(vm.cmdline, 'console=ttyS0 quiet');
  t.equal(vm.bootDevice, 'net');
  t.same(vm.owner, { uid: 1000, gid: 50, user: 'alice', group: 'staff' });
  t.same(vm.allowInstance, { flags: ['boot', 'disk', 'memory'], owner: { uid: 0, gid: 50, user: null, group: 'staff' } });
  t.equal(vm.sev, true);
  t.equal(vm.seves, true);
  t.equal(vm.accel, 'kvm');
  t.equal(vm.enabled, false);
  t.same(ok('vm "v" { owner 1000 }\n').vms[0]!.owner, { uid: 1000, gid: null, user: '1000', group: null });
  t.same(ok('vm "v" { memory 512 "M" }\n'.replace(' "M"', 'M')).vms[0]!.memory, 512 * 1024 * 1024);
  const child = ok('vm "p" { disable }\nvm "p" instance "c" { memory 1G }\n').vms[1]!;
  t.equal(child.name, 'c');
  t.equal(child.instanceOf, 'p');
  t.equal(ok('vm "v" { interface }\n').vms[0]!.interfaces.length, 1);
  t.equal(ok('vm "x" { disable }\n').vms[0]!.boot, null, 'nothing to boot is not a config error');
});

t.test('vm errors', async (t) => {
  t.equal(errorsOf('vm "x" {\n}\n'), 'vmd: vm.conf:2: syntax error', 'empty block');
  t.equal(errorsOf('vm "x"\n{ disable }\n'), 'vmd: vm.conf:1: syntax error', '{ on the same line');
  t.equal(errorsOf('vm "x" { disable enable\n sev seves\n}\n'), 'vmd: vm.conf:2: syntax error');
  t.equal(errorsOf(`vm "${'n'.repeat(64)}" { disable }\n`), 'vmd: vm.conf:1: vm name too long');
  t.equal(errorsOf(`vm "${'n'.repeat(64)}" instance "c" { disable }\n`), `vmd: vm.conf:1: vm ${'n'.repeat(64)} name too long`);
  t.equal(ok(`vm "${'n'.repeat(63)}" { disable }\n`).vms.length, 1, '63 characters are fine');
  t.equal(errorsOf('vm "x" {\n memory 1048575\n}\n'), 'vmd: memory size must be at least 1MB\nvmd: vm.conf:2: failed to parse size: 1048575');
  t.equal(errorsOf('vm "x" { memory 1X }\n'), 'vmd: invalid memory size: 1X: Invalid argument\nvmd: vm.conf:1: failed to parse size: 1X');
  t.equal(errorsOf('vm "x" { memory 256G }\n'), 'vmd: memory size too large (limit is 128G)\nvmd: vm.conf:1: failed to parse size: 256G');
  t.equal(errorsOf('vm "x" { memory 9999999999999999999G }\n'), 'vmd: invalid memory size: 9999999999999999999G: Numerical result out of range\nvmd: vm.conf:1: failed to parse size: 9999999999999999999G');
  t.equal(errorsOf('vm "x" { memory 1048576\n memory 2097152\n}\n'), 'vmd: vm.conf:2: memory specified more than once');
  t.equal(errorsOf('vm "x" { memory 1G\n memory 2G\n}\n'), 'vmd: vm.conf:2: argument specified more than once');
  t.equal(parse('vm "x" {\n memory 1048575K\n}\n').out, 'vmd: memory size rounded to 1023M\nvmd: vm.conf:3: vm "x" registered (enabled)');
  t.equal(errorsOf('vm "x" {\n disk "a.img"\n disk "a.img"\n disk "a.img"\n disk "a.img"\n disk "a.img"\n}\n', files), 'vmd: too many disks\nvmd: vm.conf:6: failed to parse disks: a.img');
  t.equal(errorsOf('vm "x" { disk "nope.img" }\n'), 'vmd: disk nope.img: No such file or directory\nvmd: vm.conf:1: failed to parse disks: nope.img');
  t.equal(errorsOf('vm "x" { disk "a.img" format "rotten" }\n', files), 'vmd: vm.conf:1: unrecognized disk format rotten');
  t.equal(errorsOf('vm "x" {\n disk "nope.img" format\n}\n'), 'vmd: vm.conf:2: syntax error', 'no disk action before the syntax error');
  t.equal(errorsOf('vm "x" { interfaces 5 }\n'), 'vmd: vm.conf:1: too many interfaces: 5');
  t.equal(errorsOf('vm "x" { interfaces 2\n interfaces 3\n}\n'), 'vmd: vm.conf:2: interfaces specified more than once');
  t.equal(errorsOf('vm "x" { interface\n interface\n interface\n interface\n interface\n}\n'), 'vmd: vm.conf:5: too many interfaces: 5');
  t.equal(errorsOf('vm "x" { interface foo0 }\n'), 'vmd: vm.conf:1: invalid interface: foo0');
  t.equal(errorsOf('vm "x" { interface tap0 lladdr 00:11:zz:00:00:00 }\n'), 'vmd: vm.conf:1: invalid address: 00:11:zz:00:00:00\n', 'extra newline as parse.y');
  t.equal(errorsOf('vm "x" { interface tap0 switch "a", up }\n'), 'vmd: vm.conf:1: syntax error', 'no comma after the first inline option');
  t.equal(errorsOf('vm "x" { interface { } }\n'), 'vmd: vm.conf:1: syntax error');
  t.equal(errorsOf('vm "x" { interface rdomain 300 }\n'), 'vmd: vm.conf:1: invalid rdomain: 300');
  t.equal(errorsOf('vm "x" { interface group "eth0" }\n'), 'vmd: vm.conf:1: invalid group name: eth0');
  t.equal(errorsOf(`vm "x" { interface switch "${'s'.repeat(64)}" }\n`), `vmd: vm.conf:1: switch name too long: ${'s'.repeat(64)}`);
  t.equal(errorsOf('vm "x" { boot "k"\n boot "k"\n}\n', files), 'vmd: vm.conf:2: kernel specified more than once');
  t.equal(errorsOf('vm "x" { boot "/nope/bsd" }\n'), 'vmd: vm.conf:1: kernel path not found: No such file or directory');
  t.equal(errorsOf(`vm "x" { boot "/${'a'.repeat(1024)}" }\n`), 'vmd: vm.conf:1: kernel path not found: File name too long');
  t.equal(errorsOf('vm "x" { cdrom "x.iso"\n cdrom "y.iso"\n}\n'), 'vmd: vm.conf:2: cdrom specified more than once');
  t.equal(errorsOf(`vm "x" { cdrom "/${'a'.repeat(1023)}" }\n`), 'vmd: vm.conf:1: cdrom name too long');
  t.equal(errorsOf('vm "x" { owner alice:nogroup }\n'), 'vmd: vm.conf:1: failed to get group: nogroup');
  t.equal(errorsOf('vm "x" { allow instance { owner nobody } }\n'), 'vmd: vm.conf:1: failed to get user: nobody');
  t.equal(errorsOf('vm "x" { boot device floppy }\n'), 'vmd: vm.conf:1: syntax error');
  t.equal(errorsOf('vm "x" { cpus 65 }\n'), 'vmd: vm.conf:1: invalid number of cpus: 65');
  t.equal(errorsOf('vm "x" { cpus 0 }\n'), 'vmd: vm.conf:1: invalid number of cpus: 0');
  t.equal(errorsOf('vm "x" { cpus 1\n cpus 2\n}\n'), 'vmd: vm.conf:2: cpus specified more than once');
  t.equal(errorsOf('vm "x" { accel xen }\n'), 'vmd: vm.conf:1: invalid accel: xen');
  t.equal(errorsOf('vm "x" { initrd "nope" }\n'), 'vmd: vm.conf:1: initrd path not found: No such file or directory');
  t.equal(errorsOf('vm "x" {\n disk "/dev/null" bus usb\n}\n'), 'vmd: vm.conf:2: unrecognized disk bus usb: virtio, scsi, sata, ide, nvme');
  t.equal(errorsOf('vm "x" {\n disk "/dev/null" format raw bus ide\n}\n'), 'vmd: vm.conf:2: disk /dev/null: bus ide needs machine pc, not q35');
  t.equal(errorsOf('vm "x" {\n machine pc\n disk "/dev/null" bus ide\n}\n'), '', 'ide on pc');
  t.equal(errorsOf('vm "x" {\n machine isapc\n}\n'), 'vmd: vm.conf:2: invalid machine: isapc: q35, pc, microvm');
  t.equal(errorsOf('vm "x" {\n machine microvm\n disk "/dev/null" bus nvme\n cdrom "/x.iso"\n}\n'), [
    'vmd: vm.conf:3: disk /dev/null: bus nvme needs machine q35 or pc, not microvm',
    'vmd: vm.conf:2: machine microvm needs a kernel: boot PATH (it has no firmware that boots a disk)',
    'vmd: vm.conf:2: machine microvm has no cdrom bus',
  ].join('\n'));
  t.equal(errorsOf('vm "x" { cmdline "a"\n cmdline "b"\n}\n'), 'vmd: vm.conf:2: cmdline specified more than once');
});

t.test('yacc error recovery', async (t) => {
  // After an error the rest of the line is skipped and errors stay silent until 3 tokens are shifted.
  t.equal(errorsOf('vm "x" {\n kernel "/bsd.rd"\n memory 1G\n disable\n interface { switch "sw" }\n}\n'), 'vmd: vm.conf:2: syntax error');
  // A failing action abandons the block; its later lines are parsed as top-level statements (as yacc does).
  t.equal(errorsOf('vm "v" {\n boot "/missing"\n memory 1G\n interface {\n switch "sw"\n }\n}\nvm "w" { bogus }\n'),
    'vmd: vm.conf:2: kernel path not found: No such file or directory\nvmd: vm.conf:5: syntax error\nvmd: vm.conf:8: syntax error');
  t.equal(errorsOf('vm "a" { bogus }\nvm "b" { bogus }\n'), 'vmd: vm.conf:1: syntax error\nvmd: vm.conf:2: syntax error');
  t.equal(errorsOf('vm "a" { bogus }\n\nvm "b" { bogus }\n'), 'vmd: vm.conf:1: syntax error\nvmd: vm.conf:3: syntax error');
  t.equal(errorsOf('vm "a" { memory 1X\n disk "nope"\n}\n'), 'vmd: invalid memory size: 1X: Invalid argument\nvmd: vm.conf:1: failed to parse size: 1X', 'the abandoned block runs no more actions');
  t.equal(errorsOf('vm "a" { memory 1X disable bogus\n}\n'), 'vmd: invalid memory size: 1X: Invalid argument\nvmd: vm.conf:1: failed to parse size: 1X', 'actions before a syntax error still run');
  t.equal(errorsOf('x = "a"\nvm "v" { memory 1G }\n}\n'), "vmd: vm.conf:3: syntax error\nwarning: macro 'x' not used");
});

t.test('interface rules and forwards', async (t) => {
  const c = ok('web = "{ 80 443 }"\nlan = "10.0.0.0/8"\n# switch s follows\nvm "v" {\n interface {\n switch s\n forward tcp 8080 to 80\n forward udp 53\n pass in proto tcp to any port $web\n block out quick proto { tcp, udp } from { 10.0.0.1 fe80::1/64, $lan } port 1000:2000 to any\n block\n pass in proto icmp6 from 2001:DB8::1\n pass out proto udp to port 53\n }\n local interface pass in proto tcp from any port 22 block out\n}\nswitch s {\n interface br0\n address 10.0.0.1/24\n dhcp\n nat\n}\n');
  const nic = c.vms[0]!.interfaces[0]!;
  t.same(nic.forwards.map(({ location, ...f }) => f), [
    { proto: 'tcp', hostPort: 8080, guestPort: 80 }, { proto: 'udp', hostPort: 53, guestPort: 53 },
  ]);
  t.same(nic.rules.map((r) => r.text), [
    'pass in proto tcp to any port { 80 443 }',
    'block out quick proto { tcp, udp } from { 10.0.0.1 fe80::1/64, 10.0.0.0/8 } port 1000:2000 to any',
    'block',
    'pass in proto icmp6 from 2001:DB8::1',
    'pass out proto udp to port 53',
  ]);
  t.same(nic.rules[0], {
    action: 'pass', direction: 'in', quick: false, protos: ['tcp'], from: { addresses: [], ports: [] },
    to: { addresses: [], ports: [{ from: 80, to: 80 }, { from: 443, to: 443 }] },
    text: 'pass in proto tcp to any port { 80 443 }', location: { file: 'vm.conf', line: 9 },
  });
  t.same(nic.rules[1]!.from, { addresses: ['10.0.0.1/32', 'fe80::/64', '10.0.0.0/8'], ports: [{ from: 1000, to: 2000 }] });
  t.same(nic.rules[1]!.protos, ['tcp', 'udp']);
  t.equal(nic.rules[1]!.quick, true);
  t.same(nic.rules[2]!.protos, []);
  t.same(nic.rules[3]!.from.addresses, ['2001:db8::1/128']);
  const local = c.vms[0]!.interfaces[1]!;
  t.equal(local.local, true);
  t.same(local.rules.map((r) => r.text), ['pass in proto tcp from any port 22', 'block out']);
  t.equal(errorsOf('vm "v" { interface { pass in proto icmp port 80 } }\n'), 'vmd: vm.conf:1: port without proto tcp/udp');
  t.equal(errorsOf('vm "v" { interface { pass to any port 80 } }\n'), 'vmd: vm.conf:1: port without proto tcp/udp');
  t.equal(errorsOf('vm "v" { interface { pass proto gre } }\n'), 'vmd: vm.conf:1: unknown protocol gre');
  t.equal(errorsOf('vm "v" { interface { pass from 300.1.1.1 } }\n'), 'vmd: vm.conf:1: invalid address: 300.1.1.1');
  t.equal(errorsOf('vm "v" { interface { pass from 10.0.0.0/33 } }\n'), 'vmd: vm.conf:1: invalid address: 10.0.0.0/33');
  t.equal(errorsOf('vm "v" { interface { pass proto tcp to port 70000 } }\n'), 'vmd: vm.conf:1: invalid port: 70000');
  t.equal(errorsOf('vm "v" { interface { pass proto tcp to port 20:10 } }\n'), 'vmd: vm.conf:1: invalid port: 20:10');
  t.equal(errorsOf('vm "v" { interface { forward tcp 0 } }\n'), 'vmd: vm.conf:1: invalid port: 0');
  t.equal(errorsOf('vm "v" { interface { forward tcp 80 to 65536 } }\n'), 'vmd: vm.conf:1: invalid port: 65536');
  t.equal(errorsOf('vm "v" { interface { forward sctp 80 } }\n'), 'vmd: vm.conf:1: unknown protocol sctp');
  t.equal(errorsOf('vm "v" { interface { forward icmp 80 } }\n'), 'vmd: vm.conf:1: forward needs proto tcp or udp: icmp');
  t.equal(errorsOf('vm "v" { interface { pass proto { } } }\n'), 'vmd: vm.conf:1: syntax error', 'lists are not empty');
  t.equal(ok('vm "v" {\n interface {\n pass in proto { tcp,\n udp }\n }\n}\n').vms[0]!.interfaces[0]!.rules[0]!.protos.length, 2, 'lists may span lines');
  t.equal(errorsOf('dot = "."\nvm "v" { boot $dot "/k" }\n', files), 'vmd: vm.conf:2: syntax error', 'values are re-lexed: a bare . is no string');
});

t.test('load-time checks under -n', async (t) => {
  t.equal(errorsOf('vm "-v" { disable }\nvm ".v" { disable }\nvm "a b" { disable }\nvm "9v" { disable }\n'),
    'vmd: vm.conf:1: invalid VM name: -v\nvmd: vm.conf:2: invalid VM name: .v\nvmd: vm.conf:3: invalid VM name: a b');
  t.equal(errorsOf('vm "w" { disable }\nvm "w" { disable }\n'), 'vmd: vm.conf:2: duplicate vm "w" (first defined at vm.conf:1)');
  t.equal(errorsOf('switch "s" { interface br0 }\nswitch "s" { interface br1 }\n'), 'vmd: vm.conf:2: duplicate switch "s" (first defined at vm.conf:1)');
  t.equal(errorsOf('vm "v" {\n interface { switch "nope" }\n}\n'), 'vmd: vm.conf:2: switch "nope" not found');
  t.equal(ok('vm "v" { interface switch "later" }\nswitch "later" { interface br0 }\n').vms.length, 1, 'switches may follow');
  t.equal(errorsOf('switch "s" {\n interface br0\n address 10.1.0.1/24\n}\nvm "v" {\n interface {\n switch "s"\n forward tcp 8080 to 80\n }\n}\n'),
    'vmd: vm.conf:8: forward tcp 8080: switch "s" has no dhcp and no nat', 'a forward on a switch needs its fixed lease and nat');
  t.equal(errorsOf('switch "s" {\n interface br0\n nat\n}\nvm "v" {\n interface {\n switch "s"\n forward udp 53\n }\n}\n'),
    'vmd: vm.conf:8: forward udp 53: switch "s" has no address and no dhcp');
  t.equal(ok('switch "s" {\n interface br0\n address 10.1.0.1/24\n dhcp\n nat\n}\nvm "v" {\n interface {\n switch "s"\n forward tcp 8080 to 80\n }\n}\n').vms[0]!.interfaces[0]!.forwards.length, 1,
    'address, dhcp and nat: fine');
  t.equal(ok('vm "v" {\n local interface {\n forward tcp 8080 to 80\n }\n}\nvm "w" {\n interface {\n forward tcp 8081\n }\n}\n').vms.length, 2, 'local and user-mode forwards need no switch');
  t.equal(errorsOf('vm "p" instance "c" { disable }\n'), 'vmd: vm.conf:1: vm "c": parent vm "p" not found');
  t.equal(errorsOf('vm "p" instance "c" { disable }\nvm "p" { disable }\n'), 'vmd: vm.conf:1: vm "c": parent vm "p" must be defined before its instances');
});

t.test('model round trip', async (t) => {
  const p = parse('switch s { interface br0\n vxlan 7 remote ::1\n}\nvm "v" { memory 1G\n disk a.img\n interface tap1 switch s lladdr fe:e1:bb:00:00:01 { }\n interfaces 2\n}\n'.replace(' { }', ''), files);
  const config = p.result.config!;
  t.ok(config);
  t.same(JSON.parse(JSON.stringify(config)), config, 'JSON-safe');
  t.equal(config.vms[0]!.interfaces.length, 2, 'interfaces N pads');
  t.equal(config.vms[0]!.interfaces[1]!.index, 1);
  t.equal(config.vms[0]!.interfaces[0]!.lladdr, 'fe:e1:bb:00:00:01');
  const again = parse(p.result.config === null ? '' : 'switch s { interface br0\n vxlan 7 remote ::1\n}\nvm "v" { memory 1G\n disk a.img\n interface tap1 switch s lladdr fe:e1:bb:00:00:01\n interfaces 2\n}\n', files);
  // Each parse runs in its own scratch directory (realpath'd in disk paths), so paths differ by it and nothing else.
  const model = (q: typeof p) => JSON.parse(JSON.stringify(q.result.config).replace(/[^"]*\/vmd-grammar-[^/"]+/g, '$DIR'));
  t.not(p.dir, again.dir);
  t.equal(model(p).vms[0].disks[0].path, '$DIR/a.img');
  t.strictSame(model(again), model(p), 'same text, same model');
});
