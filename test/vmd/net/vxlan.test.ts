// Tests for vmd/net/vxlan: the MTU a spanned switch gets, head-end replication lists kept in step, and the
// multicast form, across three namespaces (vmdvx-<pid>-*) this test makes on an underlay bridge and removes.

import t from 'tap';
import { execa } from 'execa';
import { bridgeEnsure } from '../../../vmd/net/bridges.js';
import { netnsEnsure } from '../../../vmd/net/links.js';
import { vxlanEnsure, vxlanMtu, vxlanOverhead, vxlanPortName, vxlanRemotes, vxlanRemotesSync } from '../../../vmd/net/vxlan.js';

const tag = `vmdvx-${process.pid}`;
const made: string[] = [];

async function sh(args: string[]): Promise<string> {
  return String((await execa('ip', args, { stdin: 'ignore' })).stdout);
}

/** Three "hosts" (`p`h0–h2) on an underlay bridge (10.96.77.N on ul0), each with an endpoint namespace e0–e2 on its switch. */
async function threeHosts(p: string): Promise<{ hosts: string[]; eps: string[] }> {
  const ul = `${tag}-${p}ul`;
  made.push(ul);
  await netnsEnsure(ul);
  await sh(['-n', ul, 'link', 'add', 'ulbr', 'type', 'bridge']);
  await sh(['-n', ul, 'link', 'set', 'ulbr', 'up']);
  const hosts: string[] = [];
  const eps: string[] = [];
  for (let i = 0; i < 3; i++) {
    const [h, e] = [`${tag}-${p}h${i}`, `${tag}-${p}e${i}`];
    made.push(h, e);
    hosts.push(h);
    eps.push(e);
    await netnsEnsure(h);
    await netnsEnsure(e);
    await sh(['-n', ul, 'link', 'add', `uh${i}`, 'type', 'veth', 'peer', 'name', 'ul0', 'netns', h]);
    await sh(['-n', ul, 'link', 'set', `uh${i}`, 'master', 'ulbr', 'up']);
    await sh(['-n', h, 'address', 'add', `10.96.77.${i + 1}/24`, 'dev', 'ul0']);
    await sh(['-n', h, 'link', 'set', 'ul0', 'up']);
    await bridgeEnsure({ name: 'brs', netns: h, mac: `02:76:6d:64:0c:0${i}`, up: true, address: null, mtu: 1450 });
    await sh(['-n', h, 'link', 'add', 'vep', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', e]);
    await sh(['-n', h, 'link', 'set', 'vep', 'master', 'brs', 'up']);
    await sh(['-n', e, 'address', 'add', `10.95.77.${i + 1}/24`, 'dev', 'eth0']);
    await sh(['-n', e, 'link', 'set', 'eth0', 'mtu', '1450', 'up']);
  }
  return { hosts, eps };
}

async function pings(from: string, to: string): Promise<boolean> {
  const r = await execa('ip', ['netns', 'exec', from, 'busybox', 'ping', '-c', '2', '-w', '8', to], { reject: false, stdin: 'ignore', timeout: 15_000 });
  return r.exitCode === 0;
}

t.teardown(async () => {
  for (const n of made) await execa('ip', ['netns', 'del', n], { reject: false });
});

t.test('the MTU of a spanned switch: the underlay less 50 (IPv4) or 70 (IPv6) bytes', async (t) => {
  t.equal(vxlanOverhead({ remotes: ['10.0.0.2'], group: null, local: null }), 50);
  t.equal(vxlanOverhead({ remotes: ['2001:db8::2'], group: null, local: null }), 70);
  t.equal(vxlanOverhead({ remotes: [], group: 'ff05::42', local: null }), 70);
  t.equal(await vxlanMtu({ id: 1, remotes: ['10.0.0.2'], group: null, local: null, dev: null, port: 4789 }, null), 1450, 'no device: Ethernet');
  const h = `${tag}-mtu`;
  made.push(h);
  await netnsEnsure(h);
  await sh(['-n', h, 'link', 'add', 'jumbo', 'mtu', '9000', 'type', 'veth', 'peer', 'name', 'jumbo1', 'mtu', '9000']);
  t.equal(await vxlanMtu({ id: 1, remotes: ['10.0.0.2'], group: null, local: null, dev: 'jumbo', port: 4789 }, h), 8950, 'a jumbo underlay');
  await t.rejects(vxlanMtu({ id: 1, remotes: ['10.0.0.2'], group: null, local: null, dev: 'nosuch0', port: 4789 }, h), { code: 'ERR_INVALID', message: /vxlan device nosuch0 in netns .*: no such interface/ });
  t.equal(vxlanPortName(4242), 'vx4242');
});

t.test('head-end replication: three hosts, each FDB lists the other two, a sync changes only what moved', async (t) => {
  const { hosts, eps } = await threeHosts('u');
  const addr = (i: number): string => `10.96.77.${i + 1}`;
  for (const [i, h] of hosts.entries()) {
    const remotes = [0, 1, 2].filter((j) => j !== i).map(addr);
    t.same(await vxlanEnsure({ name: 'vx7', bridge: 'brs', id: 7, remotes, group: null, local: addr(i), dev: 'ul0', port: 4789, netns: h, mtu: 1450 }), { created: true });
    t.same((await vxlanRemotes('vx7', h)).sort(), remotes, `host ${i}: one all-zeros entry per peer`);
  }
  // ARP is a broadcast: every pair finding each other shows the replication reaches both other hosts.
  for (const i of [0, 1, 2]) for (const j of [0, 1, 2]) if (i !== j) t.ok(await pings(eps[i]!, `10.95.77.${j + 1}`), `e${i} reaches e${j}`);

  t.same(await vxlanRemotesSync('vx7', hosts[0]!, [addr(1)]), { added: [], removed: [addr(2)] }, 'a peer leaves');
  t.same(await vxlanRemotes('vx7', hosts[0]!), [addr(1)]);
  t.same(await vxlanRemotesSync('vx7', hosts[0]!, [addr(1), addr(2)]), { added: [addr(2)], removed: [] }, 'and comes back');
  t.same(await vxlanEnsure({ name: 'vx7', bridge: 'brs', id: 7, remotes: [addr(1), addr(2)], group: null, local: addr(0), dev: 'ul0', port: 4789, netns: hosts[0]!, mtu: 1450 }),
    { created: false }, 'an unchanged port is kept');
  t.ok(await pings(eps[0]!, '10.95.77.3'), 'traffic flows again after the sync');
  await t.rejects(vxlanEnsure({ name: 'vx8', bridge: 'brs', id: 8, remotes: [], group: null, local: null, dev: null, port: 4789, netns: hosts[0]! }),
    { code: 'ERR_INVALID', message: 'vxlan vx8: needs either remotes or a group' });
});

t.test('the multicast form: three hosts in one group, no list to keep', async (t) => {
  const { hosts, eps } = await threeHosts('m');
  for (const [i, h] of hosts.entries()) {
    await sh(['-n', h, 'route', 'add', '224.0.0.0/4', 'dev', 'ul0']);
    t.same(await vxlanEnsure({ name: 'vx9', bridge: 'brs', id: 9, remotes: [], group: '239.1.77.9', local: `10.96.77.${i + 1}`, dev: 'ul0', port: 4789, netns: h, mtu: 1450 }), { created: true });
    t.same(await vxlanRemotes('vx9', h), ['239.1.77.9'], `host ${i}: the group is the one destination`);
  }
  for (const i of [0, 1, 2]) for (const j of [0, 1, 2]) if (i !== j) t.ok(await pings(eps[i]!, `10.95.77.${j + 1}`), `e${i} reaches e${j}`);
  await t.rejects(vxlanEnsure({ name: 'vx9', bridge: 'brs', id: 9, remotes: [], group: '239.1.77.9', local: null, dev: null, port: 4789, netns: hosts[0]! }),
    { code: 'ERR_INVALID', message: 'vxlan vx9: group 239.1.77.9 needs dev' });
});
