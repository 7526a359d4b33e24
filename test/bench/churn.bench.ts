// Benchmark of vmd's memory after a day's work: 100 defined VMs and one guest with a NIC on a dhcp switch, the
// RSS/PSS/private memory of each role fresh and after 500 start/stop cycles of that guest, and nothing leaked by them.

import { execa } from 'execa';
import { existsSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { loadavg } from 'node:os';
import { guestKernel, VmdHarness } from '../lib/vmd-harness.js';
import type { BenchSection, Measurement } from './bench.js';
import { daemonConsoleWait, memOf, procPids, READY, requestOnce, sleep, type Mem } from './daemon-lib.js';
import { fleetConfig, roleOf } from './fleet.bench.js';

const CYCLES = Number(process.env.VMD_BENCH_CHURN_CYCLES ?? 500);
/** Every this many cycles the guest must boot to its ready line before it is stopped: the others stop it at once. */
const BOOT_EVERY = 50;
/** RSS is sampled every this many cycles for the high-water mark. */
const SAMPLE_EVERY = 10;
/** Longer than heap-trim's period plus its delay. */
const SETTLE_MS = 13_000;
const NAME = 'churn';
/** Issue target: the three roles (parent, vmm, control), not QEMU, fresh and after 500 cycles. */
const TARGET_RSS_MB = 150;
const MB = 1024 * 1024;
const ROLES = ['parent', 'vmm', 'control'] as const;

/** fleet's 100 disabled VMs plus the churned guest, with one NIC on a dhcp switch. */
export function churnConfig(): string {
  return [
    fleetConfig(100),
    'switch "lan" {', '\tinterface vmdbr0', '\taddress 10.82.0.1/24', '\tdhcp', '}', '',
    `vm "${NAME}" {`, '\tdisable', '\tboot $guest_kernel', '\tinitrd $guest_initrd', '\tmemory 128M',
    '\tinterface { switch "lan" }', '}', '',
  ].join('\n');
}

/** Each role's pid; throws unless exactly the three roles run. */
function rolePids(h: VmdHarness): Map<string, number> {
  const out = new Map<string, number>();
  for (const pid of h.daemonPids()) {
    const role = roleOf(pid);
    if (out.has(role)) throw new Error(`two vmd ${role} processes (${out.get(role)}, ${pid})`);
    out.set(role, pid);
  }
  for (const r of ROLES) if (!out.has(r)) throw new Error(`no vmd ${r} process`);
  return out;
}

function memByRole(pids: Map<string, number>): Map<string, Mem> {
  return new Map(ROLES.map((r) => [r, memOf(pids.get(r)!)]));
}

/** What a cycle may leak: links, nftables rules, each role's descriptors, processes in the namespace. */
interface Leftovers { links: string; rules: string; fds: Record<string, number>; processes: string }

/** Pids whose network namespace is the harness's: vmd, its dnsmasq, QEMU. */
function netnsProcesses(h: VmdHarness): string {
  const ino = statSync(`/run/netns/${h.netns}`).ino;
  const out: string[] = [];
  for (const pid of procPids()) {
    try {
      if (readlinkSync(`/proc/${pid}/ns/net`) !== `net:[${ino}]`) continue;
      out.push(readFileSync(`/proc/${pid}/comm`, 'utf8').trim());
    } catch {
      /* gone */
    }
  }
  return out.sort().join(' ');
}

async function leftovers(h: VmdHarness, pids: Map<string, number>): Promise<Leftovers> {
  const links = (await execa('ip', ['-n', h.netns, '-o', 'link', 'show'])).stdout
    .split('\n').map((l) => l.split(':')[1]?.trim().replace(/@.*/, '') ?? '').sort().join(' ');
  // -s: stateless, without the counters that churn changes by design.
  const rules = (await execa('ip', ['netns', 'exec', h.netns, 'nft', '-s', 'list', 'ruleset'])).stdout;
  const fds: Record<string, number> = {};
  for (const r of ROLES) fds[r] = readdirSync(`/proc/${pids.get(r)!}/fd`).length;
  return { links, rules, fds, processes: netnsProcesses(h) };
}

function compareLeftovers(before: Leftovers, after: Leftovers): string[] {
  const out: string[] = [];
  if (before.links !== after.links) out.push(`links: before "${before.links}", after "${after.links}"`);
  if (before.rules !== after.rules) out.push(`nftables ruleset changed (${before.rules.split('\n').length} -> ${after.rules.split('\n').length} lines)`);
  for (const r of ROLES) if (before.fds[r] !== after.fds[r]) out.push(`${r} descriptors: ${before.fds[r]} -> ${after.fds[r]}`);
  if (before.processes !== after.processes) out.push(`processes: before "${before.processes}", after "${after.processes}"`);
  return out;
}

/** The guest's state in vmd's listing. */
async function stateOf(socket: string): Promise<{ state: string; pid: number | null }> {
  const r = await requestOnce(socket, { type: 'vm.status.request', target: NAME }, 30_000);
  if (r.type !== 'vm.status.response' || r.vms.length !== 1) throw new Error(`status ${NAME}: ${JSON.stringify(r)}`);
  return { state: r.vms[0]!.state, pid: r.vms[0]!.pid };
}

/**
 * One cycle as an operator's vmctl runs it, a connection per request: start, wait until running with a QEMU pid,
 * optionally until booted (a console attach), stop -f -w, check it is stopped.
 */
export async function churnCycle(h: VmdHarness, boot: boolean): Promise<void> {
  await requestOnce(h.socket, { type: 'vm.start.request', target: NAME, options: {} }, 60_000);
  for (let i = 0; ; i++) {
    const s = await stateOf(h.socket);
    if (s.state === 'running' && s.pid !== null) break;
    if (i > 600) throw new Error(`${NAME} not running after its start: ${s.state}`);
    await sleep(50);
  }
  if (boot) await daemonConsoleWait(h.socket, NAME, READY, 120_000);
  await requestOnce(h.socket, { type: 'vm.stop.request', target: NAME, force: true, wait: true }, 60_000);
  const s = await stateOf(h.socket);
  if (s.state !== 'stopped' || s.pid !== null) throw new Error(`${NAME} after stop -f -w: ${s.state}, pid ${s.pid}`);
}

function memLines(when: string, mem: Map<string, Mem>): Measurement[] {
  const out: Measurement[] = [];
  for (const [role, m] of mem) {
    out.push({ name: `${when}: vmd ${role} RSS (PSS ${(m.pss / MB).toFixed(1)}, private ${(m.priv / MB).toFixed(1)})`, value: m.rss / MB, unit: 'MB' });
  }
  const sum = (k: keyof Mem): number => [...mem.values()].reduce((a, m) => a + m[k], 0) / MB;
  out.push({ name: `${when}: PSS of the three roles`, value: sum('pss'), unit: 'MB' });
  out.push({ name: `${when}: private memory of the three roles`, value: sum('priv'), unit: 'MB' });
  out.push({ name: `${when}: RSS of the three roles (parent + vmm + control; not QEMU)`, value: sum('rss'), unit: 'MB', target: TARGET_RSS_MB });
  return out;
}

/** The churn section of `npm run bench`. */
export const churnBench: BenchSection = {
  name: 'churn',
  async run(): Promise<readonly Measurement[]> {
    if (!existsSync(guestKernel)) throw new Error(`test guest missing: run share/guest/build (${guestKernel})`);
    const h = await VmdHarness.start({ config: churnConfig() });
    try {
      const pids = rolePids(h);
      const fresh = memByRole(pids);
      let booted = 0;
      // One booted cycle before the leak baseline: the first start may open what stays open (the switch's lease
      // file, a QMP module's state), which is not a leak; the memory growth is still counted from `fresh`.
      await churnCycle(h, true);
      booted++;
      const before = await leftovers(h, pids);
      // The high-water mark between collections, sampled: the figures after the churn are what an idle daemon holds.
      let peak = 0;
      for (let i = 1; i <= CYCLES; i++) {
        const boot = i % BOOT_EVERY === 0;
        try {
          await churnCycle(h, boot);
        } catch (err) {
          throw new Error(`cycle ${i} of ${CYCLES}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        }
        if (boot) booted++;
        if (i % SAMPLE_EVERY === 0) peak = Math.max(peak, [...memByRole(pids).values()].reduce((a, m) => a + m.rss, 0));
      }
      const after = await leftovers(h, pids);
      const leaks = compareLeftovers(before, after);
      if (leaks.length > 0) throw new Error(`after ${CYCLES} cycles: ${leaks.join('; ')}`);
      // The same processes: a role that died and was respawned would hide its growth.
      const now = rolePids(h);
      for (const r of ROLES) if (now.get(r) !== pids.get(r)) throw new Error(`vmd ${r} was restarted during the churn`);
      // What an idle daemon holds after its day: vmd/heap-trim.ts collects at most every 10 s, 2 s after the last
      // guest or connection went; measured at once, the figure depends on where in that period the churn ended.
      await sleep(SETTLE_MS);
      const churned = memByRole(pids);
      const growth = ROLES.map((r) => ({
        name: `growth of vmd ${r} RSS over ${CYCLES} cycles (PSS ${((churned.get(r)!.pss - fresh.get(r)!.pss) / MB).toFixed(1)} MB)`,
        value: (churned.get(r)!.rss - fresh.get(r)!.rss) / MB, unit: 'MB',
      }));
      return [
        { name: 'machine load average (1 min) at the end, for reading the numbers', value: loadavg()[0]!, unit: '' },
        ...memLines('fresh, 100 vms', fresh),
        { name: `start/stop cycles of a guest with a NIC on a dhcp switch, all ok, ${booted} booted to "${READY}"; no link, rule, descriptor or process left`, value: CYCLES + 1, unit: '' },
        ...memLines(`after ${CYCLES} cycles and ${SETTLE_MS / 1000} s idle`, churned),
        ...growth,
        { name: `highest RSS of the three roles sampled during the churn (every ${SAMPLE_EVERY} cycles)`, value: peak / MB, unit: 'MB' },
      ];
    } catch (err) {
      throw new Error(`${err instanceof Error ? err.message : String(err)}; vmd's log: ${h.daemonLog.trim().split('\n').slice(-4).join(' | ')}`, { cause: err });
    } finally {
      await h.vmctl(['stop', '-f', '-w', NAME]).catch(() => undefined);
      await h.teardown();
    }
  },
};
