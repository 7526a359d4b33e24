// Tests for vmd/net/links: namespaces, bridges (created, adopted, removed), taps, VXLAN ports and link statistics.
// Everything happens in network namespaces named vmdlnk-<pid>-* that this test creates and removes (taps pass through the root one for an instant).

import t, { type Test } from 'tap';
import { execa, type ResultPromise } from 'execa';
import { closeFd } from '../../../vmd/native.js';
import { VmdError } from '../../../share/errors.js';
import { linkConfigure, linkStats, netnsEnsure, netnsExists, netnsRemove, tapCreate } from '../../../vmd/net/links.js';
import { bridgeEnsure, bridgeOwned, bridgeRemove, linkRemove, ownedBridges } from '../../../vmd/net/bridges.js';
import { vxlanEnsure, vxlanRemotes } from '../../../vmd/net/vxlan.js';
import { OWNED_BRIDGE_ALIAS_PREFIX } from '../../../vmd/net/ip.js';

const isRoot = process.getuid?.() === 0;
const tag = `vmdlnk-${process.pid}`;
/** Short per-run link names (at most 15 characters). */
const short = String(process.pid % 100000);
const made = new Set<string>();

/** A namespace name of this run; remembered so teardown removes it whatever a test did. */
function ns(suffix: string): string {
  const name = `${tag}-${suffix}`;
  made.add(name);
  return name;
}

async function sh(args: string[]): Promise<string> {
  return String((await execa('ip', args, { stdin: 'ignore' })).stdout);
}

async function link(netns: string, name: string): Promise<Record<string, any> | undefined> {
  const r = await execa('ip', ['-n', netns, '-j', '-d', 'link', 'show', 'dev', name], { reject: false, stdin: 'ignore' });
  return r.exitCode === 0 ? (JSON.parse(String(r.stdout)) as Record<string, any>[])[0] : undefined;
}

async function addrs(netns: string, name: string): Promise<string[]> {
  const j = JSON.parse(await sh(['-n', netns, '-j', '-4', 'address', 'show', 'dev', name, 'scope', 'global'])) as Array<{ addr_info: Array<{ local?: string; prefixlen?: number }> }>;
  return (j[0]?.addr_info ?? []).filter((a) => a.local !== undefined).map((a) => `${a.local}/${a.prefixlen}`);
}

/** Polls (bounded) until a condition holds. */
async function eventually(cond: () => Promise<boolean>, ms = 3000): Promise<boolean> {
  for (let waited = 0; waited < ms; waited += 50) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
}

async function rejectsWith(t: Test, p: Promise<unknown> | (() => unknown), code: string, message: RegExp, name: string): Promise<void> {
  try {
    await (typeof p === 'function' ? p() : p);
    t.fail(`${name}: did not fail`);
  } catch (err) {
    t.ok(err instanceof VmdError, `${name}: VmdError`);
    t.equal((err as VmdError).code, code, `${name}: ${code}`);
    t.match((err as Error).message, message, `${name}: message`);
  }
}

// Root is what makes namespaces, bridges and taps; ip(8) is a dependency of vmd, so a missing one fails loudly.
t.test('as root, in namespaces of this test', { skip: !isRoot && 'needs root (network namespaces, bridges and taps)' }, async (t) => {
  t.teardown(async () => {
    for (const name of made) await execa('ip', ['netns', 'delete', name], { reject: false, stdin: 'ignore' });
  });

  t.test('namespaces: ensure is idempotent and brings lo up', async (t) => {
    const a = ns('n');
    t.equal(await netnsExists(a), false);
    t.equal(await netnsEnsure(a), true, 'created');
    t.equal(await netnsEnsure(a), false, 'already there');
    t.equal(await netnsExists(a), true);
    t.same((await link(a, 'lo'))?.flags.includes('UP'), true, 'lo is up');
    t.same(await netnsRemove(a), { removed: true, users: [] });
    t.equal(await netnsExists(a), false);
    t.same(await netnsRemove(a), { removed: false, users: [] }, 'an absent namespace is not an error');
    await rejectsWith(t, () => netnsEnsure('../etc'), 'ERR_INVALID', /^netns "\.\.\/etc": invalid namespace name$/, 'bad name');
    await rejectsWith(t, () => netnsEnsure('-n'), 'ERR_INVALID', /invalid namespace name/, 'option-like name');
  });

  t.test('bridges: create, adopt, remove only what vmd made', async (t) => {
    const a = ns('b');
    await netnsEnsure(a);
    const mine = await bridgeEnsure({ name: 'vbr0', netns: a, mac: '02:76:6d:64:00:01', up: true, address: '10.77.0.1/24', description: 'switch1-uplink' });
    t.same(mine, { created: true, owned: true });
    let l = await link(a, 'vbr0');
    t.equal(l?.address, '02:76:6d:64:00:01', 'fixed MAC');
    t.equal(l?.ifalias, `${OWNED_BRIDGE_ALIAS_PREFIX}switch1-uplink`, 'ownership alias');
    t.ok(l?.flags.includes('UP'), 'up');
    t.same(await addrs(a, 'vbr0'), ['10.77.0.1/24']);

    // Again, with a changed address and down: the same bridge, exactly the new address.
    t.same(await bridgeEnsure({ name: 'vbr0', netns: a, mac: '02:76:6d:64:00:01', up: false, address: '10.77.1.1/24', mtu: 1450 }), { created: false, owned: true });
    l = await link(a, 'vbr0');
    t.notOk(l?.flags.includes('UP'), 'down');
    t.equal(l?.mtu, 1450);
    t.same(await addrs(a, 'vbr0'), ['10.77.1.1/24'], 'the old address went');

    // The user's own bridge: adopted, MAC and alias untouched, address added, never deleted.
    await sh(['-n', a, 'link', 'add', 'name', 'ubr0', 'address', '06:00:00:00:00:07', 'type', 'bridge']);
    await sh(['-n', a, 'link', 'set', 'dev', 'ubr0', 'alias', 'users-bridge']);
    await sh(['-n', a, 'address', 'add', '192.168.5.1/24', 'dev', 'ubr0']);
    t.same(await bridgeEnsure({ name: 'ubr0', netns: a, mac: '02:76:6d:64:00:02', up: true, address: '10.78.0.1/24' }), { created: false, owned: false });
    l = await link(a, 'ubr0');
    t.equal(l?.address, '06:00:00:00:00:07', 'adopted MAC kept');
    t.equal(l?.ifalias, 'users-bridge', 'adopted alias kept');
    t.same((await addrs(a, 'ubr0')).sort(), ['10.78.0.1/24', '192.168.5.1/24'], 'configured address added, the user\'s kept');
    t.equal(await bridgeOwned('ubr0', a), false);
    t.equal(await bridgeOwned('vbr0', a), true);
    t.equal(await bridgeOwned('nosuch0', a), undefined);
    t.same(await ownedBridges(a), ['vbr0']);
    t.same(await bridgeRemove('ubr0', a), { removed: false }, 'an adopted bridge is not removed');
    t.ok(await link(a, 'ubr0'), 'and is still there');

    // A name taken by something that is not a bridge.
    await sh(['-n', a, 'link', 'add', 'name', 'notbr0', 'type', 'veth', 'peer', 'name', 'notbr1']);
    await rejectsWith(t, bridgeEnsure({ name: 'notbr0', netns: a, mac: '02:76:6d:64:00:03', up: true, address: null }),
      'ERR_INTERNAL', new RegExp(`^bridge notbr0 in netns ${a}: exists and is not a bridge \\(veth\\)$`), 'not a bridge');
    await rejectsWith(t, bridgeEnsure({ name: 'vbr0', netns: a, mac: '03:00:00:00:00:01', up: true, address: null }), 'ERR_INVALID', /multicast/, 'multicast MAC');
    await rejectsWith(t, bridgeEnsure({ name: 'vbr0', netns: a, mac: '02:76:6d:64:00:01', up: true, address: '10.0.0.1' }), 'ERR_INVALID', /address\/prefix/, 'address without prefix');
    await rejectsWith(t, bridgeEnsure({ name: 'x'.repeat(16), netns: a, mac: '02:76:6d:64:00:01', up: true, address: null }), 'ERR_INVALID', /invalid interface name/, 'long name');
    await rejectsWith(t, bridgeEnsure({ name: 'vbr9', netns: `${tag}-nosuch`, mac: '02:76:6d:64:00:01', up: true, address: null }),
      'ERR_INTERNAL', /^bridge vbr9 in netns .*-nosuch: /, 'missing namespace');

    t.same(await bridgeRemove('vbr0', a), { removed: true });
    t.equal(await link(a, 'vbr0'), undefined, 'gone');
    t.same(await bridgeRemove('vbr0', a), { removed: false }, 'removing twice is fine');
  });

  t.test('a vmd bridge keeps its fixed MAC as ports come and go (a plain one does not)', async (t) => {
    const a = ns('m');
    await netnsEnsure(a);
    const fixed = '0a:76:6d:64:ff:ff';
    await bridgeEnsure({ name: 'vbr0', netns: a, mac: fixed, up: true, address: null });
    await sh(['-n', a, 'link', 'add', 'name', 'plain0', 'type', 'bridge']);
    const ports = [['p1', '02:00:00:00:00:01'], ['p2', '02:00:00:00:00:02']] as const;
    for (const [p, mac] of ports) {
      await sh(['-n', a, 'link', 'add', 'name', `${p}a`, 'address', mac, 'type', 'veth', 'peer', 'name', `${p}b`]);
      await sh(['-n', a, 'link', 'set', 'dev', `${p}a`, 'master', 'vbr0', 'up']);
    }
    await sh(['-n', a, 'link', 'add', 'name', 'p3a', 'address', '02:00:00:00:00:03', 'type', 'veth', 'peer', 'name', 'p3b']);
    await sh(['-n', a, 'link', 'set', 'dev', 'p3a', 'master', 'plain0']);
    t.equal((await link(a, 'vbr0'))?.address, fixed, 'with lower-MAC ports');
    t.equal((await link(a, 'plain0'))?.address, '02:00:00:00:00:03', 'a bridge without a set MAC takes its port\'s (HOST-FACTS §2)');
    await sh(['-n', a, 'link', 'delete', 'dev', 'p1a']);
    t.equal((await link(a, 'vbr0'))?.address, fixed, 'after a port left');
    await sh(['-n', a, 'link', 'delete', 'dev', 'p2a']);
    t.equal((await link(a, 'vbr0'))?.address, fixed, 'with no ports');
  });

  t.test('taps: made, moved into a namespace, configured, counted, gone with the fd', async (t) => {
    const a = ns('t');
    await netnsEnsure(a);
    await bridgeEnsure({ name: 'vbr0', netns: a, mac: '02:76:6d:64:00:10', up: true, address: '10.79.0.1/24' });
    const name = `vlk${short}t0`;
    const tap = tapCreate(name, { vnetHdr: true, netns: a });
    t.equal(tap.name, name);
    t.ok(Number.isInteger(tap.fd) && tap.fd > 2);
    let closed = false;
    t.teardown(() => {
      if (!closed) closeFd(tap.fd);
    });
    const inRoot = await execa('ip', ['link', 'show', 'dev', name], { reject: false, stdin: 'ignore' });
    t.not(inRoot.exitCode, 0, 'not left in the root namespace');
    const info = await link(a, name);
    t.equal(info?.linkinfo?.info_kind, 'tun');
    t.equal(info?.linkinfo?.info_data?.persist, false, 'non-persistent');
    t.equal(info?.linkinfo?.info_data?.vnet_hdr, true);

    await linkConfigure({ name, netns: a, alias: 'vm1-if0-web', master: 'vbr0', up: true, address: null });
    const stats = await linkStats(a);
    const s = stats.get(name);
    t.match(s, { alias: 'vm1-if0-web', master: 'vbr0', kind: 'tun', mtu: 1500 }, 'alias, master');
    t.match(s?.mac, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    t.equal(s?.operstate, 'unknown', 'a tap with its fd held is up, state unknown');
    for (const k of ['rxPackets', 'rxBytes', 'rxDropped', 'txPackets', 'txBytes', 'txDropped'] as const) t.equal(typeof s?.[k], 'number', k);
    t.equal(stats.get('vbr0')?.kind, 'bridge');
    t.equal(stats.get('vbr0')?.alias, `${OWNED_BRIDGE_ALIAS_PREFIX}vbr0`);

    // Reconfigured as a local link: off the bridge, exactly its host address, down.
    await linkConfigure({ name, netns: a, alias: 'vm1-if0-web', master: null, up: false, address: '100.64.1.2/31', mtu: 1400 });
    const again = (await linkStats(a)).get(name);
    t.match(again, { master: null, operstate: 'down', mtu: 1400 });
    t.same(await addrs(a, name), ['100.64.1.2/31']);
    await linkConfigure({ name, netns: a, alias: 'vm1-if0-web', master: null, up: true, address: ['100.64.1.4/31', 'fd00::6440:104:1/96'] });
    t.same(await addrs(a, name), ['100.64.1.4/31'], 'inet addresses replaced');
    const six = JSON.parse(await sh(['-n', a, '-j', '-6', 'address', 'show', 'dev', name, 'scope', 'global'])) as Array<{ addr_info: Array<{ local: string }> }>;
    t.same(six[0]?.addr_info.map((x) => x.local).filter((x) => x !== undefined), ['fd00::6440:104:1'], 'inet6 too');

    await rejectsWith(t, linkConfigure({ name, netns: a, alias: 'x', master: 'nosuch0', up: true, address: null }),
      'ERR_INTERNAL', new RegExp(`^link ${name} in netns ${a}: [a-z]`), 'missing master: ip\'s words, lowercase');
    await rejectsWith(t, linkConfigure({ name, netns: a, alias: '', master: null, up: true, address: null }), 'ERR_INVALID', /invalid alias/, 'empty alias');

    closeFd(tap.fd);
    closed = true;
    t.ok(await eventually(async () => (await link(a, name)) === undefined), 'the tap vanished when its fd was closed');
  });

  t.test('tapCreate into a missing namespace fails and leaves nothing', async (t) => {
    const name = `vlk${short}t1`;
    await rejectsWith(t, () => tapCreate(name, { vnetHdr: false, netns: `${tag}-nosuch` }), 'ERR_INTERNAL', new RegExp(`^link ${name} in netns ${tag}-nosuch: `), 'move fails');
    t.ok(await eventually(async () => (await execa('ip', ['link', 'show', 'dev', name], { reject: false, stdin: 'ignore' })).exitCode !== 0), 'no tap left in the root namespace');
    await rejectsWith(t, () => tapCreate('-x', { vnetHdr: false, netns: null }), 'ERR_INVALID', /invalid interface name/, 'bad name');
  });

  t.test('VXLAN: two switches in different namespaces pass traffic between veth endpoints', async (t) => {
    const [ua, ub, bb, ea, eb] = [ns('ua'), ns('ub'), ns('bb'), ns('ea'), ns('eb')];
    for (const n of [ua, ub, bb, ea, eb]) await netnsEnsure(n);
    // Underlay: a veth between the two "hosts".
    await sh(['-n', ua, 'link', 'add', 'name', 'ul0', 'type', 'veth', 'peer', 'name', 'ul0', 'netns', ub]);
    await sh(['-n', ua, 'address', 'add', '10.96.0.1/24', 'dev', 'ul0']);
    await sh(['-n', ub, 'address', 'add', '10.96.0.2/24', 'dev', 'ul0']);
    await sh(['-n', ua, 'link', 'set', 'dev', 'ul0', 'up']);
    await sh(['-n', ub, 'link', 'set', 'dev', 'ul0', 'up']);
    // Side A: bridge and tunnel in the underlay namespace. Side B: the bridge in its own namespace (an rdomain),
    // the tunnel made on the underlay side and moved there.
    await bridgeEnsure({ name: 'brv', netns: ua, mac: '02:76:6d:64:0a:01', up: true, address: null, mtu: 1450 });
    await bridgeEnsure({ name: 'brv', netns: bb, mac: '02:76:6d:64:0b:01', up: true, address: null, mtu: 1450 });
    t.same(await vxlanEnsure({ name: 'vx0', bridge: 'brv', id: 42, remotes: ['10.96.0.2'], group: null, local: '10.96.0.1', dev: 'ul0', port: 4789, netns: ua }), { created: true });
    t.same(await vxlanEnsure({ name: 'vx0', bridge: 'brv', id: 42, remotes: ['10.96.0.1'], group: null, local: '10.96.0.2', dev: 'ul0', port: 4789, netns: bb, underlayNetns: ub }), { created: true });
    t.same(await vxlanEnsure({ name: 'vx0', bridge: 'brv', id: 42, remotes: ['10.96.0.2'], group: null, local: '10.96.0.1', dev: 'ul0', port: 4789, netns: ua }), { created: false }, 'kept when unchanged');
    // Endpoints: a veth from each bridge into an endpoint namespace.
    for (const [sw, ep, addr] of [[ua, ea, '10.95.0.21/24'], [bb, eb, '10.95.0.22/24']] as const) {
      await sh(['-n', sw, 'link', 'add', 'name', 'vep', 'mtu', '1450', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ep]);
      await sh(['-n', sw, 'link', 'set', 'dev', 'vep', 'master', 'brv', 'up']);
      await sh(['-n', ep, 'address', 'add', addr, 'dev', 'eth0']);
      await sh(['-n', ep, 'link', 'set', 'dev', 'eth0', 'mtu', '1450', 'up']);
    }
    const ping = await execa('ip', ['netns', 'exec', ea, 'busybox', 'ping', '-c', '3', '-w', '10', '10.95.0.22'], { reject: false, stdin: 'ignore', timeout: 20_000 });
    t.equal(ping.exitCode, 0, `ping across the tunnel: ${String(ping.stdout).split('\n').slice(-2).join(' ')}`);
    const sa = (await linkStats(ua)).get('vx0');
    t.ok((sa?.txPackets ?? 0) > 0 && (sa?.rxPackets ?? 0) > 0, 'the tunnel counted traffic both ways');
    t.equal(sa?.master, 'brv');
    t.same((await ownedBridges(bb)).sort(), ['brv', 'vx0'], 'the bridge and the port are vmd\'s');

    // Changing the remote keeps the port and rewrites its FDB; changing the local address replaces it; a name
    // taken by another kind of link is refused.
    t.same(await vxlanEnsure({ name: 'vx0', bridge: 'brv', id: 42, remotes: ['10.96.0.9'], group: null, local: '10.96.0.1', dev: 'ul0', port: 4789, netns: ua }), { created: false }, 'kept');
    t.same(await vxlanRemotes('vx0', ua), ['10.96.0.9'], 'the new remote replaced the old one');
    t.same(await vxlanEnsure({ name: 'vx0', bridge: 'brv', id: 42, remotes: ['10.96.0.9'], group: null, local: '10.96.0.3', dev: 'ul0', port: 4789, netns: ua }), { created: true }, 'replaced');
    await rejectsWith(t, vxlanEnsure({ name: 'vep', bridge: 'brv', id: 42, remotes: ['10.96.0.2'], group: null, local: null, dev: 'ul0', port: 4789, netns: ua }),
      'ERR_INTERNAL', /^vxlan vep in netns .*: exists and is not vmd's vxlan \(veth\)$/, 'not a vxlan');
    t.same(await bridgeRemove('vx0', ua), { removed: true }, 'a vmd VXLAN port is removed like its bridge');
    t.same(await linkRemove('vx0', ua), { removed: false }, 'already gone');
  });

  t.test('netnsRemove refuses a namespace in use and removes an unused one', async (t) => {
    const a = ns('r');
    await netnsEnsure(a);
    await bridgeEnsure({ name: 'vbr0', netns: a, mac: '02:76:6d:64:00:20', up: true, address: null });
    await sh(['-n', a, 'link', 'add', 'name', 'tapx', 'type', 'veth', 'peer', 'name', 'tapy']);
    // A link vmd does not know keeps it.
    let r = await netnsRemove(a);
    t.same({ ...r, users: [...r.users].sort() }, { removed: false, users: ['link tapx', 'link tapy'] });
    // Named as vmd's, the same links do not.
    const sleeper: ResultPromise = execa('ip', ['netns', 'exec', a, 'sleep', '30'], { reject: false, stdin: 'ignore' });
    t.teardown(() => {
      sleeper.kill();
    });
    t.ok(await eventually(async () => (await sh(['netns', 'pids', a])).trim() !== ''), 'the process is in the namespace');
    r = await netnsRemove(a, ['tapx', 'tapy']);
    t.equal(r.removed, false, 'a process keeps it');
    t.match(r.users, [/^pid \d+$/]);
    sleeper.kill();
    await sleeper;
    t.ok(await eventually(async () => (await sh(['netns', 'pids', a])).trim() === ''), 'the process is gone');
    t.same(await netnsRemove(a, new Set(['tapx', 'tapy'])), { removed: true, users: [] }, 'vmd\'s bridge and named links do not keep it');
    t.equal(await netnsExists(a), false);
  });
});
