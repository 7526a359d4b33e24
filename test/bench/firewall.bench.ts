// Benchmark: what the hypervisor firewall costs a TCP stream. Two veth "guests" on a bridge in a namespace of
// their own, the receiver with stateful rules (block in, pass in tcp to its port), and the rules of 1,000 more
// links loaded beside them; the same stream with vmd's tables but no rules is the baseline. Runs alternate
// between the two, and the medians are compared.

import { execa, type ResultPromise } from 'execa';
import type { FilterRule } from '../../share/config.js';
import { parseConfigText } from '../../grammar/parse.js';
import { nftScript } from '../../vmd/net/nft.js';
import { nftApply, sysctlSet } from '../../vmd/net/nft-apply.js';
import type { NetLink, NetPlan } from '../../vmd/net/nft-plan.js';
import type { BenchSection, Measurement } from './bench.js';
import { addNetns, ip } from '../lib/netns.js';

const LINKS = 1000;
const ROUNDS = 5;
const SECONDS = 2;
const PORT = 5001;

function rulesOf(text: string): readonly FilterRule[] {
  const r = parseConfigText(`switch "lan" { interface br0 }\nvm "x" {\n interface {\n switch "lan"\n${text}\n }\n}\n`, 'bench.conf');
  if (r.config === null) throw new Error('bench rules do not parse');
  return r.config.vms[0]!.interfaces[0]!.rules;
}

function plan(withRules: boolean): NetPlan {
  const receiver = rulesOf(`block in\npass in proto tcp to port ${PORT}\npass in proto icmp`);
  const typical = rulesOf('block in\npass in proto tcp to port { 22 80 443 }\npass in proto tcp from 10.0.0.0/8 to port 5432\nblock out proto tcp to port 25');
  const link = (name: string, n: number, rules: readonly FilterRule[]): NetLink => ({
    name, vmId: n, vm: `vm${n}`, index: 0, bridge: 'br0', mac: `fe:e1:bb:00:${(n >> 8).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`,
    lockMac: false, lockIp: null, local: null, groups: [], rules: withRules ? rules : [],
  });
  return {
    switches: [{ name: 'lan', bridge: 'br0', subnet: '10.95.0.1/24', nat: false, group: null }],
    links: [
      link('ta', 1, typical),
      link('tb', 2, receiver),
      ...Array.from({ length: LINKS }, (_, i) => link(`vmd${i + 3}i0`, i + 3, typical)),
    ],
    forwards: [],
    masquerade: [],
  };
}

const receiverSource = `
const server = require('net').createServer((s) => { s.on('data', () => {}); s.on('error', () => {}); });
server.listen(${PORT}, '0.0.0.0', () => console.log('ready'));
`;
// Sends as fast as it can for SECONDS and prints the bytes it handed to the socket.
const senderSource = `
const s = require('net').connect(${PORT}, '10.95.0.12');
const chunk = Buffer.alloc(256 * 1024);
let bytes = 0, done = false;
s.on('connect', () => {
  const end = Date.now() + ${SECONDS * 1000};
  const pump = () => {
    while (!done) {
      if (Date.now() > end) { done = true; break; }
      bytes += chunk.length;
      if (!s.write(chunk)) return;
    }
    console.log(bytes);
    process.exit(0);
  };
  s.on('drain', pump);
  pump();
});
s.on('error', (e) => { console.error(e.message); process.exit(1); });
`;

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export const firewallBench: BenchSection = {
  name: 'firewall',
  async run(): Promise<readonly Measurement[]> {
    const tag = `vmdbfw-${process.pid}`;
    const ns = { h: `${tag}-h`, a: `${tag}-a`, b: `${tag}-b` };
    let receiver: ResultPromise | null = null;
    try {
      await addNetns(...Object.values(ns));
      await ip(ns.h, 'link', 'add', 'br0', 'type', 'bridge');
      await ip(ns.h, 'link', 'set', 'br0', 'up');
      for (const [g, addr] of [['a', '10.95.0.11'], ['b', '10.95.0.12']] as const) {
        await ip(ns.h, 'link', 'add', `t${g}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns[g]);
        await ip(ns.h, 'link', 'set', `t${g}`, 'master', 'br0', 'up');
        await ip(ns[g], 'addr', 'add', `${addr}/24`, 'dev', 'eth0');
        await ip(ns[g], 'link', 'set', 'eth0', 'up');
      }
      for (const k of ['net.bridge.bridge-nf-call-iptables', 'net.bridge.bridge-nf-call-ip6tables']) await sysctlSet(k, '1', ns.h);
      receiver = execa('ip', ['netns', 'exec', ns.b, process.execPath, '-e', receiverSource], { reject: false, buffer: false });
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('receiver did not start')), 10_000);
        receiver!.stdout!.on('data', (d: Buffer) => { if (String(d).includes('ready')) { clearTimeout(timer); resolve(); } });
      });
      // A host that tracks connections already (any NAT, Docker, firewalld): a foreign table using conntrack.
      const ct = 'table inet vmdbench\ndelete table inet vmdbench\ntable inet vmdbench {\n\tchain c {\n\t\ttype filter hook prerouting priority 0; policy accept;\n\t\tct state invalid counter\n\t}\n}\n';
      const noCt = 'table inet vmdbench\ndelete table inet vmdbench\n';
      const scripts = { bare: nftScript(plan(false)), rules: nftScript(plan(true)) };
      let tracking = noCt;
      const rate = async (which: 'bare' | 'rules'): Promise<number> => {
        await nftApply(scripts[which] + tracking, ns.h);
        const r = await execa('ip', ['netns', 'exec', ns.a, process.execPath, '-e', senderSource], { timeout: (SECONDS + 10) * 1000 });
        return Number(r.stdout.trim()) / SECONDS;
      };
      await rate('rules'); // warm-up, and proof that the rules let the stream through
      const bare: number[] = [];
      const rules: number[] = [];
      const bareCt: number[] = [];
      const rulesCt: number[] = [];
      for (let i = 0; i < ROUNDS; i++) {
        tracking = noCt;
        bare.push(await rate('bare'));
        rules.push(await rate('rules'));
        tracking = ct;
        bareCt.push(await rate('bare'));
        rulesCt.push(await rate('rules'));
      }
      const mb = (xs: readonly number[]): number => Math.round(median(xs) / 1e6);
      return [
        { name: 'TCP stream across a switch, no rules', value: mb(bare), unit: 'MB/s' },
        { name: `same, with the rules of ${LINKS + 2} links loaded`, value: mb(rules), unit: 'MB/s' },
        // Stateful rules turn on connection tracking in the namespace: on a host without it, that is most of the cost.
        { name: 'throughput with rules / without (higher is better)', value: median(rules) / median(bare), unit: 'x', atLeast: 0.9 },
        { name: 'same ratio on a host that tracks connections already (NAT, Docker, firewalld)', value: median(rulesCt) / median(bareCt), unit: 'x', atLeast: 0.9 },
      ];
    } finally {
      receiver?.kill('SIGKILL');
      await receiver?.catch(() => undefined);
      for (const n of Object.values(ns)) await execa('ip', ['netns', 'del', n], { reject: false });
    }
  },
};
