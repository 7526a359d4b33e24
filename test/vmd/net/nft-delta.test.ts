// Tests for vmd/net/nft-delta and the incremental path of Rulesets: after any sequence of link additions, removals
// and rule reloads, vmd's tables (nft list, in a namespace this test makes) equal what a full rebuild produces.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { parseConfigText } from '../../../grammar/parse.js';
import type { FilterRule } from '../../../share/config.js';
import { nftModel, nftScript } from '../../../vmd/net/nft.js';
import { nftDelta } from '../../../vmd/net/nft-delta.js';
import { nftApply, nftCounters } from '../../../vmd/net/nft-apply.js';
import type { NetLink, NetPlan } from '../../../vmd/net/nft-plan.js';
import { Rulesets } from '../../../vmd/net/ruleset.js';
import { addNetns, ip } from '../../lib/netns.js';
import { rng } from '../../lib/mutate.js';

const isRoot = process.getuid?.() === 0;

function rulesOf(text: string): readonly FilterRule[] {
  const r = parseConfigText(`vm "x" {\n\tinterface {\n${text}\n\t}\n}\n`, 'vm.conf');
  if (r.config === null) throw new Error(r.diagnostics.map((d) => d.message).join('\n'));
  return r.config.vms[0]!.interfaces[0]!.rules;
}

const webRules = rulesOf('\t\tblock in\n\t\tpass in proto tcp to port 80\n\t\tpass out');
const otherRules = rulesOf('\t\tblock out proto udp to port 53\n\t\tpass in quick from 10.0.0.0/8');

/** A link of the pool by number: local (routed) links, bridged ones on vmdbr0, with locks, groups, rules and forwards. */
function poolLink(n: number, rules: readonly FilterRule[] = []): { link: NetLink; forwards: NetPlan['forwards']; masq: string[]; masq6: string[] } {
  const name = `vm${n}i0`;
  const mac = `fe:e1:bb:00:0${n}:00`;
  const base = { name, vmId: n, vm: `vm${n}`, index: 0, mac, groups: [] as string[], rules };
  if (n % 3 === 1) {
    const local = { host: `100.64.${n}.2`, guest: `100.64.${n}.3` };
    const v6 = n === 4 ? `fd00:64::${n}:2` : null;
    return {
      link: { ...base, bridge: null, lockMac: true, lockIp: local.guest, local, lockIp6: v6, guard: { dhcp: true, router: n !== 4 } },
      forwards: [{ proto: n === 4 ? 'udp' : 'tcp', hostPort: 8000 + n, guest: local.guest, guestPort: 80, vm: `vm${n}`, via: name }],
      masq: [`${local.host}/31`], masq6: v6 === null ? [] : [`fd00:64::${n}:1/96`],
    };
  }
  const locked = n % 3 === 2;
  return {
    link: {
      ...base, bridge: 'vmdbr0', lockMac: locked, lockIp: locked ? `10.77.0.${n}` : null, local: null, groups: n % 2 === 0 ? ['lan'] : ['lan', 'web'],
      lockLinkLocal: locked ? `fe80::fce1:bbff:fe00:${n}00` : null, guard: locked ? { dhcp: true, router: true } : null,
    },
    forwards: [], masq: [], masq6: [],
  };
}

function planOf(active: ReadonlyMap<number, readonly FilterRule[]>, nat: boolean): NetPlan {
  const parts = [...active].map(([n, rules]) => poolLink(n, rules));
  return {
    switches: [{ name: 'lan', bridge: 'vmdbr0', subnet: '10.77.0.0/24', nat, group: 'sw' }],
    links: parts.map((p) => p.link),
    forwards: parts.flatMap((p) => p.forwards),
    masquerade: [...parts.flatMap((p) => p.masq), ...(nat ? ['10.77.0.0/24'] : [])],
    masquerade6: parts.flatMap((p) => p.masq6),
  };
}

interface Listed { tables: Record<string, unknown>; handles: Record<string, number> }

/** vmd's tables as nft lists them, without handles and with declarations and elements in a fixed order. */
async function listVmd(netns: string): Promise<Listed> {
  const { stdout } = await execa('ip', ['netns', 'exec', netns, 'nft', '-j', 'list', 'ruleset']);
  const entries = (JSON.parse(stdout) as { nftables: Array<Record<string, Record<string, unknown>>> }).nftables;
  const tables: Record<string, unknown[]> = {};
  const handles: Record<string, number> = {};
  for (const e of entries) {
    const [kind, body] = Object.entries(e)[0]!;
    if (kind === 'metainfo' || body.table === undefined && body.name !== 'vmd') continue;
    const family = String(body.family);
    if (kind === 'table') {
      if (body.name === 'vmd') handles[family] = Number(body.handle);
      continue;
    }
    if (body.table !== 'vmd') continue;
    const { handle: _h, ...rest } = body;
    if (Array.isArray(rest.elem)) rest.elem = [...rest.elem].map((x) => JSON.stringify(x)).sort();
    (tables[family] ??= []).push({ kind, ...rest });
  }
  const key = (x: unknown): string => {
    const o = x as Record<string, unknown>;
    return o.kind === 'rule' ? `rule ${String(o.chain)}` : `${String(o.kind)} ${String(o.name)}`;
  };
  // Rules keep their order within a chain (a stable sort); declarations are compared by name.
  for (const f of Object.keys(tables)) tables[f]!.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  return { tables, handles };
}

t.test('no change, no script; an included file needs a full replace', async (t) => {
  const plan = planOf(new Map([[1, webRules], [2, []]]), true);
  t.equal(nftDelta(nftModel(plan), nftModel(plan)), '');
  t.equal(nftDelta(nftModel(plan), nftModel({ ...plan, include: '/etc/vmd/nft.d/*.nft' })), null);
  const one = nftDelta(nftModel(plan), nftModel(planOf(new Map([[1, webRules], [2, []], [5, []]]), true)))!;
  t.match(one, /add element inet vmd group_lan/, 'a new link adds elements');
  t.notMatch(one, /vm1i0/, 'and leaves the others alone');
  t.notMatch(one, /delete table/);
});

t.test('in network namespaces', { skip: !isRoot && 'needs root' }, async (t) => {
  const tag = `${process.pid % 100000}`;
  const inc = `vmdd-i${tag}`;
  const full = `vmdd-f${tag}`;
  const nftDir = mkdtempSync(join(tmpdir(), 'vmd-delta-'));
  const saved = process.env.VMD_NFT_DIR;
  process.env.VMD_NFT_DIR = nftDir;
  t.teardown(async () => {
    for (const n of [inc, full]) await execa('ip', ['netns', 'del', n], { reject: false });
    rmSync(nftDir, { recursive: true, force: true });
    if (saved === undefined) delete process.env.VMD_NFT_DIR;
    else process.env.VMD_NFT_DIR = saved;
  });
  await addNetns(inc, full);
  // Forwards set route_localnet on their link, which must exist.
  for (const n of [1, 4, 7]) await ip(inc, 'link', 'add', `vm${n}i0`, 'type', 'bridge');

  await t.test('after any sequence of additions, removals and reloads, the tables equal a full rebuild', async (t) => {
    const seed = 16;
    const rnd = rng(seed);
    const rulesets = new Rulesets();
    const active = new Map<number, readonly FilterRule[]>();
    let nat = true;
    const apply = async (): Promise<void> => {
      const plan = planOf(active, nat);
      await rulesets.apply([inc], () => plan, [], new Set([inc]));
      await nftApply(nftScript(plan), full);
    };
    await apply();
    const first = (await listVmd(inc)).handles.inet;
    t.type(first, 'number');
    for (let step = 0; step < 40; step++) {
      const n = 1 + Math.floor(rnd() * 8);
      const r = rnd();
      let what: string;
      if (r < 0.1) {
        nat = !nat;
        what = `nat ${nat}`;
      } else if (active.has(n) && r < 0.3) {
        active.set(n, active.get(n) === webRules ? otherRules : webRules);
        what = `reload vm${n}`;
      } else if (active.has(n)) {
        active.delete(n);
        what = `remove vm${n}`;
      } else {
        active.set(n, r < 0.6 ? [] : webRules);
        what = `add vm${n}`;
      }
      await apply();
      const a = await listVmd(inc);
      const b = await listVmd(full);
      t.same(a.tables, b.tables, `seed ${seed} step ${step}: ${what}`);
      // The switch keeps table inet vmd alive throughout: a replace would have made it anew, with another handle.
      t.equal(a.handles.inet, first, `step ${step}: table inet vmd changed in place`);
    }
  });

  await t.test('counters survive the changes around them', async (t) => {
    const rulesets = new Rulesets();
    const active = new Map<number, readonly FilterRule[]>([[1, webRules], [2, []]]);
    const plan1 = planOf(active, true);
    // Counters as traffic would have left them, loaded once by a full replace with seeds.
    const seed = new Map([["vm 'vm1' if0 mac-spoof", { packets: 7, bytes: 700 }], ["vm 'vm1' if0 rule 2", { packets: 5, bytes: 500 }]]);
    await nftApply(nftScript(plan1, new Map(seed)), inc);
    await rulesets.apply([inc], () => plan1, [], new Set([inc]));
    // A full replace starts postrouting's counters again; traffic through it, as a replace of the same rules would leave it.
    const post = nftModel(plan1).get('inet')!.find((i) => i.kind === 'chain' && i.name === 'postrouting');
    if (post?.kind !== 'chain') throw new Error('plan without postrouting');
    const rules = post.rules.map((r) => `add rule inet vmd postrouting ${r.replace(/counter/, 'counter packets 3 bytes 300')}`);
    await nftApply(`flush chain inet vmd postrouting\n${rules.join('\n')}\n`, inc);
    seed.set('vmd nat', { packets: 3, bytes: 300 });
    seed.set('vmd loopback forwards', { packets: 3, bytes: 300 });
    // A new local link with IPv6 rewrites postrouting (NAT66), adds elements and chains.
    active.set(4, otherRules);
    await rulesets.apply([inc], () => planOf(active, true), [], new Set([inc]));
    active.delete(2);
    await rulesets.apply([inc], () => planOf(active, true), [], new Set([inc]));
    const c = await nftCounters(inc);
    for (const [k, v] of seed) t.same(c.get(k), v, k);
    t.same(c.get("vm 'vm4' if0 mac-spoof"), { packets: 0, bytes: 0 }, 'a new link starts from zero');
  });

  await t.test('a migrated guest\'s counters are added to what its rules counted here, never replacing it', async (t) => {
    const rulesets = new Rulesets();
    const plan = planOf(new Map([[1, webRules]]), true);
    // What the target's rules counted between the guest's resumption and the carry.
    await nftApply(nftScript(plan, new Map([["vm 'vm1' if0 rule 2", { packets: 2, bytes: 120 }]])), inc);
    await rulesets.apply([inc], () => plan, [], new Set([inc]));
    const carried = (): Map<string, { packets: number; bytes: number }> => new Map([
      ["vm 'vm1' if0 rule 2", { packets: 5, bytes: 300 }],
      ["vm 'vm1' if0 mac-spoof", { packets: 1, bytes: 60 }],
      ["vm 'vm1' forward tcp/8001", { packets: 4, bytes: 240 }],
    ]);
    rulesets.countersCarry([inc], carried());
    await rulesets.apply([inc], () => plan, [], new Set([inc]));
    let c = await nftCounters(inc);
    t.same(c.get("vm 'vm1' if0 rule 2"), { packets: 7, bytes: 420 }, 'a rule\'s: added to its own');
    t.same(c.get("vm 'vm1' if0 mac-spoof"), { packets: 1, bytes: 60 }, 'a lock\'s named counter');
    t.same(c.get("vm 'vm1' forward tcp/8001"), { packets: 4, bytes: 240 }, 'a forward\'s');
    // Carried once more (a second migration back and forth): added again, and kept by a delta after it.
    rulesets.countersCarry([inc], carried());
    await rulesets.apply([inc], () => plan, [], new Set([inc]));
    await rulesets.apply([inc], () => planOf(new Map([[1, webRules], [2, []]]), true), [], new Set([inc]));
    c = await nftCounters(inc);
    t.same(c.get("vm 'vm1' if0 rule 2"), { packets: 12, bytes: 720 });
    t.same(c.get("vm 'vm1' forward tcp/8001"), { packets: 8, bytes: 480 });
  });

  await t.test('a guard-only link\'s drops survive a replace', async (t) => {
    // A guest on a dhcp switch with `allow router` and no locked address: its lock chain holds only guard drops.
    const link: NetLink = {
      name: 'vg1i0', vmId: 91, vm: 'vg', index: 0, bridge: 'vmdbr0', mac: 'fe:e1:bb:00:09:01', lockMac: false, lockIp: null,
      local: null, groups: [], rules: [], guard: { dhcp: true, router: false },
    };
    const plan: NetPlan = { switches: [{ name: 'lan', bridge: 'vmdbr0', subnet: null, nat: false, group: null }], links: [link], forwards: [], masquerade: [] };
    const rulesets = new Rulesets();
    await rulesets.apply([inc], () => plan, [], new Set([inc]));
    const chain = nftModel(plan).get('bridge')?.find((i) => i.kind === 'chain' && i.name === 'link_vg1i0');
    if (chain?.kind !== 'chain') throw new Error('plan without the link\'s lock chain');
    const counted = chain.rules.map((r, n) => `add rule bridge vmd link_vg1i0 ${n === 0 ? r.replace(/counter/, 'counter packets 3 bytes 300') : r}`);
    await nftApply(`flush chain bridge vmd link_vg1i0\n${counted.join('\n')}\n`, inc);
    rulesets.forget(inc);
    await rulesets.apply([inc], () => plan, [], new Set([inc]));
    t.same((await nftCounters(inc)).get("vm 'vg' if0 guard"), { packets: 3, bytes: 300 }, 'the replace read and carried them');
  });
});
