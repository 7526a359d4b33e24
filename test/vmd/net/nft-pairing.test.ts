// vmd/net/nft-delta.ts: the side-by-side walk that pairs two versions of a table agrees with the pairing by key
// whenever it answers, over long random sequences of starts, stops and reloads among hundreds of links.

import t from 'tap';
import { parseConfigText } from '../../../grammar/parse.js';
import type { FilterRule } from '../../../share/config.js';
import { nftModel } from '../../../vmd/net/nft.js';
import { pairByKey, pairByWalk, type Pairing } from '../../../vmd/net/nft-delta.js';
import type { NftItem, NftModel } from '../../../vmd/net/nft-model.js';
import type { NetLink, NetPlan } from '../../../vmd/net/nft-plan.js';
import { rng } from '../../lib/mutate.js';

function rulesOf(text: string): readonly FilterRule[] {
  const r = parseConfigText(`vm "x" {\n\tinterface {\n${text}\n\t}\n}\n`, 'vm.conf');
  if (r.config === null) throw new Error(r.diagnostics.map((d) => d.message).join('\n'));
  return r.config.vms[0]!.interfaces[0]!.rules;
}

const RULES = [[], rulesOf('\t\tblock in\n\t\tpass in proto tcp to port 80\n\t\tpass out'), rulesOf('\t\tblock out proto udp to port 53')] as const;

/** Link n: routed (local) every third, the others bridged, locked or not, in groups or not; `r` picks its rules. */
function linkOf(n: number, r: number): NetLink {
  const name = `vm${n}i0`;
  const mac = `fe:e1:bb:00:${(n >> 8).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`;
  const base = { name, vmId: n, vm: `vm${n}`, index: 0, mac, rules: RULES[r]! };
  if (n % 3 === 1) {
    const local = { host: `100.64.${n >> 8}.${(n & 127) * 2}`, guest: `100.64.${n >> 8}.${(n & 127) * 2 + 1}` };
    return { ...base, bridge: null, lockMac: true, lockIp: local.guest, local, groups: n % 2 === 0 ? ['web'] : [], guard: { dhcp: true, router: true } };
  }
  const locked = n % 3 === 2;
  return {
    ...base, bridge: 'vmdbr0', lockMac: locked, lockIp: locked ? `10.77.${n >> 8}.${n & 255}` : null, local: null, groups: n % 4 === 0 ? ['lan'] : [],
    guard: locked ? { dhcp: true, router: n % 5 !== 0 } : null,
  };
}

function planOf(active: ReadonlyMap<number, number>, nat: boolean): NetPlan {
  return {
    switches: [{ name: 'lan', bridge: 'vmdbr0', subnet: '10.77.0.0/16', nat, group: 'sw' }],
    links: [...active].map(([n, r]) => linkOf(n, r)), forwards: [], masquerade: nat ? ['10.77.0.0/16'] : [],
  };
}

const keys = (p: Pairing): unknown => ({
  added: p.added.map((i) => `${i.kind} ${i.name}`),
  kept: p.kept.map(([o, i]) => [`${o.kind} ${o.name}`, `${i.kind} ${i.name}`]),
  removed: p.removed.map((i) => `${i.kind} ${i.name}`),
});

t.test('the walk agrees with the pairing by key, and answers for single starts and stops', async (t) => {
  for (const seed of [1, 2, 3]) {
    const rnd = rng(seed);
    const active = new Map<number, number>();
    for (let n = 1; n <= 300; n++) if (rnd() < 0.6) active.set(n, Math.floor(rnd() * 3));
    let nat = true;
    let old: NftModel = nftModel(planOf(active, nat));
    let walked = 0;
    let single = 0;
    let mismatches = 0;
    for (let step = 0; step < 300; step++) {
      const r = rnd();
      const changes = r < 0.8 ? 1 : 1 + Math.floor(rnd() * 40);
      if (r > 0.97) nat = !nat;
      for (let c = 0; c < changes; c++) {
        const n = 1 + Math.floor(rnd() * 320);
        if (active.has(n) && rnd() < 0.3) active.set(n, (active.get(n)! + 1) % 3);
        else if (active.has(n)) active.delete(n);
        else active.set(n, Math.floor(rnd() * 3));
      }
      const next = nftModel(planOf(active, nat));
      for (const [family, items] of next) {
        const before = old.get(family);
        if (before === undefined) continue;
        const reference = pairByKey(before, items);
        const walk = pairByWalk(before, items);
        if (walk === null) continue;
        walked++;
        if (changes === 1) single++;
        if (reference === null || JSON.stringify(keys(walk)) !== JSON.stringify(keys(reference))) {
          mismatches++;
          t.same(walk === null ? null : keys(walk), reference === null ? null : keys(reference), `seed ${seed} step ${step} ${family}`);
        }
      }
      old = next;
    }
    t.equal(mismatches, 0, `seed ${seed}: ${walked} pairings by the walk, all as by key`);
    t.ok(single > 300, `seed ${seed}: the walk answered for most single changes (${single})`);
  }
});

t.test('a declaration that moved is left to the pairing by key', async (t) => {
  const chain = (name: string, rules: string[]): NftItem => ({ kind: 'chain', name, hook: null, rules });
  const a = chain('a', ['accept']);
  const b = chain('b', ['drop']);
  const moved = chain('b', ['accept']);
  t.equal(pairByWalk([a, b], [moved, a]), null, 'b moved ahead of a: the walk does not answer');
  t.same(keys(pairByKey([a, b], [moved, a])!), { added: [], kept: [['chain b', 'chain b']], removed: [] }, 'by key, b is kept and rewritten');
  const c = chain('c', ['drop']);
  t.same(keys(pairByWalk([a, b], [a, c, b])!), { added: ['chain c'], kept: [], removed: [] }, 'a new declaration between two');
  t.same(keys(pairByWalk([a, c, b], [a, b])!), { added: [], kept: [], removed: ['chain c'] }, 'and gone again');
});
