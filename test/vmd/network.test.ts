// Tests for vmd/network.ts itself: rdomain namespace names, plans (planFor), fixed leases, forward conflicts and link
// state across vmUp/vmDown/vmReadopt/reset with a real StateDb. As root the file re-runs itself inside a namespace it makes.

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const isRoot = process.getuid?.() === 0;
const INNER = 'VMD_NETWORK_TEST_NETNS';

// Root parts create bridges, taps, nftables tables and dnsmasq: never in the host's own namespace. The outer run
// only makes the namespace, runs this file again inside it (its TAP output is ours) and removes it.
if (isRoot && process.env[INNER] === undefined) {
  const ns = `vmdt-nw-${process.pid}`;
  spawnSync('ip', ['netns', 'add', ns], { stdio: 'inherit' });
  spawnSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up'], { stdio: 'inherit' });
  const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, ...process.execArgv, fileURLToPath(import.meta.url)], {
    stdio: 'inherit', env: { ...process.env, [INNER]: ns }, timeout: 300_000,
  });
  spawnSync('ip', ['netns', 'del', ns], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

const { default: t } = await import('tap');
const { existsSync, mkdirSync, mkdtempSync, chmodSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } = await import('node:fs');
const { tmpdir } = await import('node:os');
const { join } = await import('node:path');
const { execa } = await import('execa');
const { parseConfigText } = await import('../../grammar/parse.js');
const { StateDb } = await import('../../vmd/db.js');
const { Network, rdomainNetnsFor } = await import('../../vmd/network.js');
const { closeFd } = await import('../../vmd/native.js');
const { DEFAULT_STATE_DIR } = await import('../../share/paths.js');
type Config = import('../../share/config.js').Config;

// A host that runs vmd may have its operator's files in /etc/vmd/nft.d: they must not reach these tests' tables.
const noUserNft = mkdtempSync(join(tmpdir(), 'vmd-network-nft-'));
process.env.VMD_NFT_DIR = noUserNft;
t.teardown(() => rmSync(noUserNft, { recursive: true, force: true }));

function config(text: string): Config {
  const r = parseConfigText(text, 'vm.conf');
  const errors = r.diagnostics.filter((d) => d.severity === 'error');
  if (r.config === null || errors.length > 0) throw new Error(`config: ${errors.map((d) => d.message).join('; ')}`);
  return r.config;
}

/** A state directory and its StateDb for one test; the database closes and the directory goes after it. */
function stateOf(t: { teardown: (f: () => void) => void }): { dir: string; db: InstanceType<typeof StateDb> } {
  const dir = stateDir(t);
  const db = new StateDb(dir);
  t.teardown(() => db.close());
  return { dir, db };
}

function stateDir(t: { teardown: (f: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-network-'));
  // dnsmasq (as nobody) reads the fixed leases' directory below this one.
  chmodSync(dir, 0o755);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('rdomain namespaces: vmd-rdomainN for the system vmd, a per-state-dir suffix for any other', async (t) => {
  t.equal(rdomainNetnsFor(3, DEFAULT_STATE_DIR), 'vmd-rdomain3');
  const a = rdomainNetnsFor(3, '/tmp/a');
  t.match(a, /^vmd-rdomain3-[0-9a-f]{8}$/);
  t.equal(rdomainNetnsFor(3, '/tmp/a'), a, 'stable');
  t.not(rdomainNetnsFor(3, '/tmp/b'), a, 'two daemons never share a namespace');
  t.equal(rdomainNetnsFor(0, '/tmp/a').replace(/^vmd-rdomain0/, ''), a.replace(/^vmd-rdomain3/, ''), 'one suffix per daemon (the harness cleans up by it)');
  t.throws(() => rdomainNetnsFor(256, DEFAULT_STATE_DIR), { code: 'ERR_INVALID' });
});

t.test('without root: passt NICs (slirp without passt) with their forwards, switches and local interfaces refused', async (t) => {
  const { dir, db } = stateOf(t);
  const c = config('switch "lan" {\n interface br0\n}\nvm "u" {\n interface {\n forward tcp 8080 to 80\n }\n interface lladdr 52:54:00:00:00:07\n}\n' +
    'vm "s" {\n interface switch "lan"\n}\nvm "l" {\n local interface\n}\n');
  const net = new Network(c, db, dir, false);
  // share/setup installs passt: a rootless vmd prefers it, in qemu style.
  const withPasst = await net.vmUp(5, c.vms[0]!);
  t.match(withPasst.nics[0], { kind: 'passt', passt: { dev: null, address: '10.0.2.15/24' }, forwards: [{ proto: 'tcp', hostPort: 8080, guestPort: 80 }] });
  const path = process.env.PATH;
  process.env.PATH = '/nonexistent';
  t.teardown(() => { process.env.PATH = path; });
  const up = await net.vmUp(5, c.vms[0]!);
  t.same(up.fds, [], 'no taps');
  t.equal(up.nics.length, 2);
  t.match(up.nics[0], { kind: 'user', mac: /^fe:e1:bb:/, forwards: [{ proto: 'tcp', hostPort: 8080, guestPort: 80 }] });
  t.match(up.nics[1], { kind: 'user', mac: '52:54:00:00:00:07', forwards: [] });
  t.same((await net.vmUp(5, c.vms[0]!)).nics, up.nics, 'the same MACs on every start');
  await t.rejects(net.vmUp(6, c.vms[1]!), { code: 'ERR_UNSUPPORTED', message: 'vm "s": interface 0: switch "lan" need vmd to run as root' });
  await t.rejects(net.vmUp(7, c.vms[2]!), { code: 'ERR_UNSUPPORTED', message: /vm "l": interface 0: local interfaces need vmd to run as root/ });
  t.match(net.planFor(null), { switches: [{ name: 'lan', bridge: 'br0' }], links: [], forwards: [], masquerade: [] }, 'no links managed');
  t.same(await net.linksInfo(() => true), []);
});

t.test('local inet6 prefix: the configured one, or a random ULA made once and kept in the state directory', async (t) => {
  const { dir, db } = stateOf(t);
  t.equal(new Network(config('vm "v" { disable }\n'), db, dir, false).inet6Prefix(), null, 'no local inet6, no prefix');
  t.same(new Network(config('local inet6 prefix fd00:1:2:3::/64\n'), db, dir, false).inet6Prefix(), { address: 'fd00:1:2:3::', length: 64 });
  t.notOk(existsSync(join(dir, 'net', 'inet6-prefix')), 'a configured prefix is not stored');
  const random = new Network(config('local inet6\n'), db, dir, false).inet6Prefix();
  t.match(random, { address: /^fd[0-9a-f]{2}:[0-9a-f]{1,4}:[0-9a-f]{1,4}:[0-9a-f]{1,4}::$/, length: 64 }, 'fd00::/8 with bytes 1–7 random');
  t.equal(readFileSync(join(dir, 'net', 'inet6-prefix'), 'utf8'), `${random!.address}/64\n`);
  t.same(new Network(config('local inet6\n'), db, dir, false).inet6Prefix(), random, 'the same prefix after a restart');
  const other = stateDir(t);
  const db2 = new StateDb(other);
  t.teardown(() => db2.close());
  t.not(new Network(config('local inet6\n'), db2, other, false).inet6Prefix()!.address, random!.address, 'another daemon draws its own');
});

const inNetns = process.env[INNER];
t.test('as root, in a namespace of its own: switches, links, forwards, fixed leases, conflicts, readopt, reset', {
  skip: inNetns === undefined && 'needs root',
}, async (t) => {
  const { dir, db } = stateOf(t);
  const c = config([
    'switch "lan" {\n interface vmdtnw0\n address 10.81.0.1/24\n dhcp\n nat\n group lan\n}',
    'switch "plain" {\n interface vmdtnw1\n}',
    'switch "red" {\n interface vmdtnw2\n rdomain 7\n disable\n}',
    'vm "web" {\n interface {\n  switch "lan"\n  forward tcp 8080 to 80\n  group web\n }\n local interface {\n  forward udp 5353 to 53\n }\n}',
    'vm "clash" {\n interface {\n  switch "lan"\n  forward tcp 8080\n }\n}',
    'vm "bare" {\n interface switch "plain"\n}',
    'vm "two" {\n interface switch "lan"\n interface switch "lan"\n}',
  ].join('\n') + '\n');
  // A forward on a switch without nat gets past vm.conf only through vmctl start: built by hand like vmFromOptions does.
  const bare = c.vms.find((v) => v.name === 'bare')!;
  const badFwd = { ...bare, name: 'badfwd', interfaces: [{ ...bare.interfaces[0]!, forwards: [{ proto: 'tcp' as const, hostPort: 9000, guestPort: 80, location: bare.location }] }] };
  const vmOf = (name: string) => c.vms.find((v) => v.name === name)!;
  const net = new Network(c, db, dir, true);
  t.teardown(() => net.shutdown());
  const ipj = async (...args: string[]) => JSON.parse((await execa('ip', ['-j', ...args])).stdout) as Array<Record<string, unknown>>;
  const linkNames = async () => (await ipj('link', 'show')).map((l) => String(l.ifname));

  await net.switchesUp();
  t.ok((await linkNames()).includes('vmdtnw0') && (await linkNames()).includes('vmdtnw1'), 'bridges made');
  t.notOk((await linkNames()).includes('vmdtnw2'), 'a disabled switch is not');
  t.same(db.ownedList().filter((o) => o.kind === 'bridge').map((o) => o.name).sort(), ['vmdtnw0', 'vmdtnw1'], 'recorded as owned in the StateDb');
  const hostsDir = join(dir, 'net', 'switch-lan.hosts.d');
  t.equal(statSync(hostsDir).mode & 0o777, 0o755, 'the dhcp switch has a directory for fixed leases that dnsmasq (as nobody) reads');
  t.same(readdirSync(hostsDir), [], 'empty while no guest runs');
  // Every fixed lease as `mac,address` lines, in address order; each file named after its MAC and world-readable.
  const hosts = () => readdirSync(hostsDir).map((f) => {
    const text = readFileSync(join(hostsDir, f), 'utf8');
    if (f !== text.split(',')[0]!.replaceAll(':', '-') || (statSync(join(hostsDir, f)).mode & 0o777) !== 0o644) return `bad file ${f}: ${text}`;
    return text;
  }).sort((a, b) => a.split(',')[1]!.localeCompare(b.split(',')[1]!, 'en', { numeric: true })).join('');
  t.ok(existsSync(join(dir, 'net', 'switch-lan.pid')), 'and its dnsmasq runs');

  const web = await net.vmUp(1, vmOf('web'));
  t.teardown(() => { for (const fd of web.fds) try { closeFd(fd); } catch { /* closed */ } });
  t.equal(web.nics.length, 2);
  t.match(web.nics, [{ kind: 'tap', mac: /^fe:e1:bb:/ }, { kind: 'tap' }]);
  const mac0 = web.nics[0]!.mac;
  t.equal(hosts(), `${mac0},10.81.0.2\n`, 'vm 1 if0: the first fixed lease');
  const plan = net.planFor(null);
  t.match(plan.switches, [{ name: 'lan', bridge: 'vmdtnw0', subnet: '10.81.0.0/24', nat: true, group: 'lan' }, { name: 'plain', bridge: 'vmdtnw1', subnet: null, nat: false }]);
  t.same(plan.links.map((l) => [l.name, l.bridge, l.local, l.lockIp, [...l.groups].sort()]), [
    ['vmd1i0', 'vmdtnw0', null, '10.81.0.2', ['lan', 'web']],
    ['vmd1i1', null, { host: '100.64.1.4', guest: '100.64.1.5' }, '100.64.1.5', []],
  ], 'a bridged link with the groups of NIC and switch, bound to its fixed lease; a local link locked to its guest address');
  const eui64 = `fe80::${[...mac0.split(':').slice(0, 3), 'ff', 'fe', ...mac0.split(':').slice(3)]
    .map((b, i) => (i === 0 ? (parseInt(b, 16) ^ 2).toString(16).padStart(2, '0') : b)).join('').match(/.{4}/g)!.map((g) => g.replace(/^0+(?=.)/, '')).join(':')}`;
  t.same(plan.links.map((l) => [l.lockLinkLocal, l.guard]), [
    [eui64, { dhcp: true, router: true }],
    [null, { dhcp: true, router: true }],
  ], 'where vmd serves DHCP: IPv6 bound to the lladdr\'s link-local address on the switch, no DHCP replies, RAs or redirects');
  t.same(plan.forwards, [
    { proto: 'tcp', hostPort: 8080, guest: '10.81.0.2', guestPort: 80, vm: 'web', via: 'vmdtnw0' },
    { proto: 'udp', hostPort: 5353, guest: '100.64.1.5', guestPort: 53, vm: 'web', via: 'vmd1i1' },
  ], 'the switch forward goes to the fixed lease through the bridge');
  t.same([...plan.masquerade].sort(), ['10.81.0.0/24', '100.64.1.4/31']);
  t.same(net.planFor('vmd-nowhere'), { switches: [], links: [], forwards: [], masquerade: [], masquerade6: [] }, 'other namespaces hold nothing');
  const ruleset = (await execa('nft', ['list', 'table', 'inet', 'vmd'])).stdout;
  t.match(ruleset, /dnat ip to 10\.81\.0\.2:80/, 'loaded into nftables');
  t.match(ruleset, /dnat ip to 100\.64\.1\.5:53/);
  t.equal(readFileSync('/proc/sys/net/ipv4/conf/vmdtnw0/route_localnet', 'utf8').trim(), '1', 'forwards from 127.0.0.1 through the bridge');
  const info = await net.linksInfo(() => true);
  t.match(info, [{ vm: 'web', index: 0, link: 'vmd1i0', switch: 'lan', local: false }, { vm: 'web', index: 1, link: 'vmd1i1', switch: null, address: '100.64.1.5/31' }]);

  // Failures leave nothing: no tap, no state, no hosts entry, no rules.
  const before = await linkNames();
  await t.rejects(net.vmUp(2, vmOf('clash')), { code: 'ERR_INVALID', message: 'vm "clash": port tcp/8080 is already forwarded to vm "web"' });
  await t.rejects(net.vmUp(3, badFwd), {
    code: 'ERR_INVALID', message: 'vm "badfwd": interface 0: forward tcp 9000: switch "plain" has no address and no dhcp and no nat',
  });
  t.same(await linkNames(), before, 'no link left by the refused starts');
  t.same(net.planFor(null).links.map((l) => l.vmId), [1, 1], 'no state either');
  t.equal(hosts(), `${mac0},10.81.0.2\n`);

  // Two NICs of one VM on one switch, and a fixed lease that another guest holds: the next slot.
  const two = await net.vmUp(2, vmOf('two'));
  t.teardown(() => { for (const fd of two.fds) try { closeFd(fd); } catch { /* closed */ } });
  t.same(hosts().trim().split('\n').map((l) => l.split(',')[1]), ['10.81.0.2', '10.81.0.6', '10.81.0.7'], 'vm 2: slots 4 and 5');
  for (const fd of two.fds) closeFd(fd);
  await net.vmDown(2);
  t.equal(hosts(), `${mac0},10.81.0.2\n`, 'vmDown drops its fixed leases');
  t.same(readdirSync(hostsDir), [mac0.replaceAll(':', '-')], 'their files are gone');

  // vmd restarts while the guest runs: a new Network re-learns it, with the fixed lease it was given before (here
  // .9, as if .2 had been taken then), and restarts the DHCP servers the old one left.
  writeFileSync(join(hostsDir, mac0.replaceAll(':', '-')), `${mac0},10.81.0.9\n`);
  // And one of a guest that died while vmd was down: pruned once the running ones are re-adopted.
  writeFileSync(join(hostsDir, 'fe-e1-bb-77-77-77'), 'fe:e1:bb:77:77:77,10.81.0.30\n');
  const net2 = new Network(c, db, dir, true);
  t.teardown(() => net2.shutdown());
  await net2.cleanupStale();
  await net2.switchesUp();
  t.equal(hosts(), `${mac0},10.81.0.9\nfe:e1:bb:77:77:77,10.81.0.30\n`, 'the files outlive vmd');
  await net2.vmReadopt(1, vmOf('web'));
  net2.leasesPrune();
  await net2.sync();
  const again = net2.planFor(null);
  t.same(again.links.map((l) => l.name), ['vmd1i0', 'vmd1i1']);
  t.match(again.forwards, [{ hostPort: 8080, guest: '10.81.0.9', via: 'vmdtnw0' }, { hostPort: 5353, guest: '100.64.1.5' }], 'the recorded lease wins');
  t.equal(hosts(), `${mac0},10.81.0.9\n`, 'the dead guest\'s lease is pruned');
  const logTail = () => { try { return readFileSync(join(dir, 'net', 'vmd1i1.log'), 'utf8').split('\n').slice(-6).join('\n'); } catch { return '(no log)'; } };
  t.ok(existsSync(join(dir, 'net', 'vmd1i1.pid')), 'the local link has its dnsmasq again', { log: existsSync(join(dir, 'net', 'vmd1i1.pid')) ? '' : logTail() });
  t.match((await execa('nft', ['list', 'table', 'inet', 'vmd'])).stdout, /dnat ip to 10\.81\.0\.9:80/);

  // The guest goes: its taps vanish with the fds, vmDown forgets it and stops its local DHCP.
  for (const fd of web.fds) closeFd(fd);
  await net2.vmDown(1);
  t.same(net2.planFor(null).links, [], 'no links');
  t.same(net2.planFor(null).forwards, []);
  t.notOk((await linkNames()).some((n) => /^vmd1i/.test(n)), 'taps gone');
  t.notOk(existsSync(join(dir, 'net', 'vmd1i1.pid')), 'local dnsmasq stopped');
  t.equal(hosts(), '');
  t.notMatch((await execa('nft', ['list', 'table', 'inet', 'vmd'])).stdout, /dnat/, 'forwards gone from nftables');

  // reset: no guests left, so switches, owned bridges and vmd's tables go; the StateDb forgets them.
  await net2.reset(true);
  t.same(db.ownedList(), [], 'nothing owned any more');
  t.notOk((await linkNames()).some((n) => n.startsWith('vmdtnw')), 'bridges removed');
  t.equal((await execa('nft', ['list', 'table', 'inet', 'vmd'], { reject: false })).exitCode, 1, 'table inet vmd removed');
  t.notOk(existsSync(join(dir, 'net', 'switch-lan.pid')), 'switch dnsmasq stopped');
});

t.test('the user\'s nftables files: included into table inet vmd, matching @group_NAME, a broken one skipped with a warning', {
  skip: inNetns === undefined && 'needs root',
}, async (t) => {
  const dir = stateDir(t);
  const nftDir = join(dir, 'nft.d');
  mkdirSync(nftDir);
  process.env.VMD_NFT_DIR = nftDir;
  t.teardown(() => { process.env.VMD_NFT_DIR = noUserNft; });
  const db = new StateDb(dir);
  t.teardown(() => db.close());
  const c = config('switch "lan" {\n interface vmdtnw3\n group lan\n}\nvm "web" {\n interface {\n  switch "lan"\n  group web\n }\n local interface\n}\n');
  writeFileSync(join(nftDir, 'web.nft'), 'chain user_web {\n\ttype filter hook forward priority filter; policy accept;\n\toifname @group_web counter comment "user web"\n}\n');
  writeFileSync(join(nftDir, 'README'), 'not an nft file: ignored\n');
  const warnings: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    warnings.push(String(chunk));
    return (write as (c: string | Uint8Array, ...r: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stderr.write;
  t.teardown(() => { process.stderr.write = write; });
  const net = new Network(c, db, dir, true);
  t.teardown(() => net.shutdown());
  const table = async () => (await execa('nft', ['list', 'table', 'inet', 'vmd'])).stdout;
  const members = async (g: string) => {
    const j = JSON.parse((await execa('nft', ['-j', 'list', 'set', 'inet', 'vmd', `group_${g}`])).stdout) as { nftables: Array<{ set?: { elem?: string[] } }> };
    return [...(j.nftables.find((e) => e.set)?.set?.elem ?? [])].sort();
  };

  await net.switchesUp();
  t.match(await table(), /chain user_web/, 'the user\'s chain is in vmd\'s table before any guest runs');
  t.same(await members('web'), [], 'group_web exists, empty, because vm.conf names it');
  t.same(await members('lan'), ['vmdtnw3']);
  const up = await net.vmUp(1, c.vms[0]!);
  t.teardown(() => { for (const fd of up.fds) try { closeFd(fd); } catch { /* closed */ } });
  t.same(await members('web'), ['vmd1i0'], 'the guest\'s link joins the group');
  t.match(await table(), /chain user_web[^}]*oifname @group_web counter/, 'and the user\'s rule survived the replace');

  writeFileSync(join(nftDir, 'zz-broken.nft'), 'chain oops {\n\tiifname @group_web drop\n');
  await net.sync();
  const warned = warnings.join('');
  t.match(warned, `nftables: ${join(nftDir, 'zz-broken.nft')}:`, 'the warning names the broken file');
  t.match(warned, /vmd's rules are loaded without .*nft\.d\/\*\.nft until it is fixed/);
  const without = await table();
  t.notMatch(without, /user_web/, 'loaded without the include');
  t.match(without, /chain link_vmd1i1 \{/, 'but with all of vmd\'s own rules');
  t.match(without, /masquerade/);
  const count = warnings.length;
  await net.sync();
  t.equal(warnings.length, count, 'warned once, not at every change');
  rmSync(join(nftDir, 'zz-broken.nft'));
  await net.sync();
  t.match(await table(), /chain user_web/, 'fixed: included again');

  for (const fd of up.fds) closeFd(fd);
  await net.vmDown(1);
  await net.reset(true);
  t.equal((await execa('nft', ['list', 'table', 'inet', 'vmd'], { reject: false })).exitCode, 1, 'reset removes the table, the user\'s chains with it');
});

t.test('two guests started at once both keep their links and forwards in nftables', {
  skip: inNetns === undefined && 'needs root',
}, async (t) => {
  const { dir, db } = stateOf(t);
  const c = config([
    'switch "both" {\n interface vmdtnw5\n address 10.82.0.1/24\n dhcp\n nat\n}',
    'vm "one" {\n interface {\n  switch "both"\n  forward tcp 8101 to 80\n }\n local interface {\n  forward tcp 8103 to 80\n }\n}',
    'vm "two" {\n interface {\n  switch "both"\n  forward tcp 8102 to 80\n }\n local interface {\n  forward tcp 8104 to 80\n }\n}',
  ].join('\n') + '\n');
  const vmOf = (name: string) => c.vms.find((v) => v.name === name)!;
  const net = new Network(c, db, dir, true);
  t.teardown(() => net.shutdown());
  await net.switchesUp();
  // A staggered batch starts guests together: each start's ruleset used to be planned, then loaded after some
  // awaits, so whichever loaded last dropped the other's forwards. Several rounds, as the interleaving varies.
  for (let round = 0; round < 6; round++) {
    const ups = await Promise.all([net.vmUp(1, vmOf('one')), net.vmUp(2, vmOf('two'))]);
    const ruleset = (await execa('nft', ['list', 'table', 'inet', 'vmd'])).stdout;
    for (const port of [8101, 8102, 8103, 8104]) t.match(ruleset, new RegExp(`chain dnat_tcp_${port} `), `round ${round}: forward ${port} is loaded`);
    for (const u of ups) for (const fd of u.fds) closeFd(fd);
    await Promise.all([net.vmDown(1), net.vmDown(2)]);
  }
});

t.test('rulesets are applied one at a time, each planned when its turn comes; callers meanwhile share one', {
  skip: inNetns === undefined && 'needs root',
}, async (t) => {
  const { Rulesets } = await import('../../vmd/net/ruleset.js');
  const rulesets = new Rulesets();
  const events: string[] = [];
  const empty = { switches: [], links: [], forwards: [], masquerade: [], masquerade6: [] };
  const planner = (name: string) => () => { events.push(`plan ${name}`); return empty; };
  const later: Promise<void>[] = [];
  // While the first is being loaded, two more come: they wait for it, then one plan made after it serves both.
  const first = rulesets.apply([null], () => {
    events.push('plan first');
    later.push(rulesets.apply([null], planner('second'), [], new Set()).then(() => { events.push('second loaded'); }));
    later.push(rulesets.apply([null], planner('third'), [], new Set()).then(() => { events.push('third loaded'); }));
    return empty;
  }, [], new Set()).then(() => { events.push('first loaded'); });
  await first;
  await Promise.all(later);
  t.same(events, ['plan first', 'first loaded', 'plan third', 'second loaded', 'third loaded'],
    'the later plan is made after the first is loaded, so it sees every link the first start added, and made once');
});

t.test('a start whose link cannot be configured leaves no tap behind', {
  skip: inNetns === undefined && 'needs root',
}, async (t) => {
  const { dir, db } = stateOf(t);
  const { linkName } = await import('../../vmd/net/addr.js');
  // The switch's bridge was never made (no switchesUp): the tap is created, then attaching it fails.
  const c = config('switch "gone" {\n interface vmdtnw9\n}\nvm "lone" {\n interface { switch "gone" }\n}\n');
  const net = new Network(c, db, dir, true);
  t.teardown(() => net.shutdown());
  await t.rejects(net.vmUp(7, c.vms[0]!), { code: 'ERR_INTERNAL', message: /^link \S+: argument "vmdtnw9" is wrong: Device does not exist$/ });
  // The tap is not persistent: it goes with the last fd, which vmUp must close since its caller never got it.
  const shown = await execa('ip', ['link', 'show', 'dev', linkName(7, 0)], { reject: false });
  t.not(shown.exitCode, 0, `no ${linkName(7, 0)} left`);
});
