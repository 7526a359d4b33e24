// Loading vmd's nftables tables into every namespace that needs them: counters carried over each atomic
// replace, the sysctls the rules depend on, the user's own included files checked before they go in.

import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { nftIncludeDir } from '../../share/paths.js';
import { logInfo, logWarn } from '../log.js';
import type { CounterSeed } from './firewall.js';
import { modelScript, nftModel, nftScript } from './nft.js';
import { deltaSeedChains, nftDelta } from './nft-delta.js';
import type { NftModel } from './nft-model.js';
import { foreignForwardDrop, nftApply, nftCounters, nftIncludeProblem, sysctlSet } from './nft-apply.js';
import { localnetInterfaces, type NetPlan } from './nft-plan.js';

/** An apply waiting for the one in progress, with what its callers asked for so far. */
interface Queued {
  readonly spaces: Set<string | null>;
  readonly strict: Set<string | null>;
  planFor: (ns: string | null) => NetPlan;
  groups: readonly string[];
  run: Promise<void>;
}

/** Applies plans namespace by namespace and remembers, between runs, what the next replace must keep or reset. */
export class Rulesets {
  private warnedForward = false;
  /** Per namespace: whether the last ruleset applied there had counters worth carrying over a replace. */
  private readonly hadCounters = new Map<string | null, boolean>();
  /** Comment prefixes whose counters start again from zero at the next replace (new run, new rules). */
  private readonly counterResets = new Set<string>();
  /** The last include problem warned about, per namespace, so a broken user file is logged once, not at every change. */
  private readonly includeWarned = new Map<string | null, string>();
  /** Per namespace: vmd's tables as last loaded there, from which the next change is computed (nft-delta.ts). */
  private readonly applied = new Map<string | null, NftModel>();
  /** Per namespace: the interfaces route_localnet was set on, and whether br_netfilter's switches are on. */
  private readonly localnet = new Map<string | null, Set<string>>();
  private readonly bridgeNf = new Set<string | null>();
  /** Counters a migrated guest brought, added at the next apply in the namespaces that may hold them (carry.ts). */
  private carried: { seed: CounterSeed; spaces: Set<string | null> } | null = null;
  /** The apply not started yet, which later callers join (see apply). */
  private queued: Queued | null = null;
  /** The apply in progress: applies run one at a time (see apply). */
  private running: Promise<void> = Promise.resolve();

  /** Counters whose comment starts with `prefix` start from zero at the next replace. */
  countersReset(prefix: string): void {
    this.counterResets.add(prefix);
  }

  /**
   * Counters to add to the current ones at the next apply, by comment, in whichever of `spaces` holds them: those
   * namespaces are then replaced whole (a rule's anonymous counter can only be set by writing the rule again).
   */
  countersCarry(spaces: Iterable<string | null>, seed: CounterSeed): void {
    const c = this.carried ?? { seed: new Map(), spaces: new Set() };
    for (const [k, v] of seed) {
      const had = c.seed.get(k) ?? { packets: 0, bytes: 0 };
      c.seed.set(k, { packets: had.packets + v.packets, bytes: had.bytes + v.bytes });
    }
    for (const ns of spaces) c.spaces.add(ns);
    this.carried = c;
  }

  /**
   * Recompute and atomically apply vmd's tables in each of `spaces`. A failure in a namespace is logged and the
   * others still get their rules; with `strict`, a failure in one of those namespaces is thrown once all are done,
   * so a guest never runs without the locks and rules it asked for. `groups` names every group vm.conf has.
   */
  apply(spaces: Iterable<string | null>, planFor: (ns: string | null) => NetPlan, groups: readonly string[], strict: ReadonlySet<string | null>): Promise<void> {
    // One at a time, each plan made when its turn comes: two starts at once (a staggered batch) each computed a
    // plan, awaited, then loaded it, so the start that loaded last removed the other's links and forwards.
    // Callers that come while an apply runs join the one queued after it: twenty starts at once cost two nft runs,
    // not twenty in a row (each plan holds every link there is when it is made).
    if (this.queued !== null) {
      for (const ns of spaces) this.queued.spaces.add(ns);
      for (const ns of strict) this.queued.strict.add(ns);
      this.queued.planFor = planFor;
      this.queued.groups = groups;
      return this.queued.run;
    }
    const q: Queued = { spaces: new Set(spaces), strict: new Set(strict), planFor, groups, run: Promise.resolve() };
    q.run = this.running.then(() => {
      this.queued = null;
      return this.applyNow([...q.spaces], q.planFor, q.groups, q.strict);
    });
    this.queued = q;
    this.running = q.run.catch(() => undefined);
    return q.run;
  }

  /** vmd forgets what it loaded in a namespace (removed, or its tables flushed): the next apply there replaces all. */
  forget(ns: string | null): void {
    this.applied.delete(ns);
    this.localnet.delete(ns);
    this.bridgeNf.delete(ns);
  }

  // PRIV: loads nftables rulesets into vmd's own tables and sets the sysctls they need.
  private async applyNow(spaces: readonly (string | null)[], planFor: (ns: string | null) => NetPlan, groups: readonly string[], strict: ReadonlySet<string | null>): Promise<void> {
    let failure: unknown = null;
    let replaced = false;
    // Taken now: counters carried while this apply runs wait for the next one, which their caller asked for.
    const carried = this.carried;
    this.carried = null;
    for (const ns of spaces) {
      const plan = planFor(ns);
      const carry = carried?.spaces.has(ns) === true ? carried.seed : undefined;
      try {
        await this.prepare(plan, ns);
        const withInclude = await this.withInclude(plan, ns, groups);
        if (carry === undefined && withInclude.include == null && await this.applyDelta(plan, ns)) continue;
        await this.applyFull(withInclude, ns, carry);
        replaced = true;
      } catch (err) {
        this.forget(ns);
        logWarn(`nftables${ns === null ? '' : ` in ${ns}`}: ${err instanceof Error ? err.message : String(err)}`);
        if (strict.has(ns) && failure === null) failure = err;
      }
    }
    this.counterResets.clear();
    if (carried !== null && carried.seed.size > 0) {
      logWarn(`nftables: ${carried.seed.size} migrated counters not added (no such rule here, or the replace failed): ${[...carried.seed.keys()].slice(0, 3).join(', ')}`);
    }
    if (failure !== null) throw failure;
    if (replaced && !this.warnedForward) {
      const w = await foreignForwardDrop(null).catch(() => null);
      if (w !== null) {
        logWarn(w);
        this.warnedForward = true;
      }
    }
  }

  /** The sysctls the rules depend on, set once for each interface (a new tap of the same name is a new interface). */
  private async prepare(plan: NetPlan, ns: string | null): Promise<void> {
    // Forwards from 127.0.0.1 need the guest-side interface to accept loopback sources (HOST-FACTS §4).
    const done = this.localnet.get(ns) ?? new Set<string>();
    const wanted = localnetInterfaces(plan);
    for (const ifname of wanted) if (!done.has(ifname)) await sysctlSet(`net.ipv4.conf.${ifname}.route_localnet`, '1', ns);
    this.localnet.set(ns, new Set(wanted));
    if (!this.bridgeNf.has(ns) && plan.links.some((l) => l.bridge !== null && (l.rules?.length ?? 0) > 0)) {
      await bridgeNetfilter(ns);
      this.bridgeNf.add(ns);
    }
  }

  /**
   * Only what changed since the last load, in one nft run whose cost does not grow with the number of links;
   * false when a full replace must do it (nothing loaded yet, a declaration that changed type, nft refused).
   */
  private async applyDelta(plan: NetPlan, ns: string | null): Promise<boolean> {
    const old = this.applied.get(ns);
    if (old === undefined) return false;
    const next = nftModel(plan);
    const seeds = new Map<string, CounterSeed>();
    for (const { family, chain } of deltaSeedChains(old, next)) {
      const seed = await nftCounters(ns, ['chain', family, 'vmd', chain]).catch(() => undefined);
      if (seed === undefined) return false;
      for (const key of seed.keys()) if ([...this.counterResets].some((p) => key.startsWith(p))) seed.delete(key);
      seeds.set(`${family} ${chain}`, seed);
    }
    const script = nftDelta(old, next, seeds);
    if (script === null) return false;
    if (script !== '') {
      try {
        await nftApply(script, ns, { keep: true });
      } catch (err) {
        logWarn(`nftables${ns === null ? '' : ` in ${ns}`}: ${err instanceof Error ? err.message : String(err)}; replacing vmd's tables whole`);
        return false;
      }
    }
    this.applied.set(ns, next);
    this.hadCounters.set(ns, hasCounters(plan));
    return true;
  }

  /**
   * vmd's tables replaced whole and atomically, counters carried over except those of new runs and new rules;
   * `carry`'s counts are added to the current ones, and those that found their rule here leave it.
   */
  private async applyFull(plan: NetPlan, ns: string | null, carry?: CounterSeed): Promise<void> {
    let seed: CounterSeed | undefined;
    if (this.hadCounters.get(ns) !== false || carry !== undefined) {
      seed = await nftCounters(ns).catch(() => undefined);
      for (const key of seed?.keys() ?? []) if ([...this.counterResets].some((p) => key.startsWith(p))) seed!.delete(key);
    }
    if (carry !== undefined) seed = seedsAdded(seed ?? new Map(), carry);
    const model = nftModel(plan, seed);
    this.applied.delete(ns);
    await nftApply(modelScript(model), ns);
    // The model took (deleted) the seeds of the counters it has: those carried counts are in place now.
    for (const key of [...carry?.keys() ?? []]) if (!seed!.has(key)) carry!.delete(key);
    this.hadCounters.set(ns, hasCounters(plan));
    // A user's included file can add anything to the table: only a replace knows what it holds afterwards.
    if (plan.include == null) this.applied.set(ns, model);
  }

  /**
   * The plan with the user's own files (`*.nft` in /etc/vmd/nft.d or VMD_NFT_DIR) included into `table inet vmd`,
   * where their chains can match vmd's `@group_NAME` sets. Checked first with `nft -c`: a broken file is named in a
   * warning and vmd's own rules are loaded without the include, so a user's typo never costs the guests their NAT.
   */
  private async withInclude(plan: NetPlan, ns: string | null, groupNames: readonly string[]): Promise<NetPlan> {
    const dir = nftIncludeDir();
    let files: string[];
    try {
      files = readdirSync(dir).filter((f) => f.endsWith('.nft'));
    } catch {
      files = [];
    }
    if (files.length === 0) return plan;
    const full: NetPlan = { ...plan, include: join(dir, '*.nft'), groups: groupNames };
    const check = (p: NetPlan) => nftIncludeProblem(nftScript(p), ns).catch((err: unknown) => (err instanceof Error ? err.message : String(err)));
    let problem = await check(full);
    if (problem === null) {
      this.includeWarned.delete(ns);
      return full;
    }
    if (!problem.startsWith(`${dir}/`)) {
      // nft blamed vmd's script (an unclosed brace in a file swallows the table's own): find the file by itself.
      const bad: string[] = [];
      for (const f of files.sort()) {
        const one = await check({ ...full, include: join(dir, f) });
        if (one !== null) bad.push(one.startsWith(`${join(dir, f)}:`) ? one : `${join(dir, f)}: breaks vmd's table, an unclosed block? (nft: ${one})`);
      }
      if (bad.length > 0) problem = bad.join('; ');
    }
    if (this.includeWarned.get(ns) !== problem) {
      logWarn(`nftables${ns === null ? '' : ` in ${ns}`}: ${problem}; vmd's rules are loaded without ${join(dir, '*.nft')} until it is fixed`);
      this.includeWarned.set(ns, problem);
    }
    return plan;
  }

}

/**
 * Stateful filtering of bridged links needs conntrack to see bridged IPv4/IPv6: br_netfilter, with its
 * call-iptables switches on in the namespace. Said in the log when vmd turns them on.
 */
async function bridgeNetfilter(netns: string | null): Promise<void> {
  if (!existsSync('/proc/sys/net/bridge')) {
    await execa('modprobe', ['br_netfilter'], { reject: false });
  }
  for (const key of ['net.bridge.bridge-nf-call-iptables', 'net.bridge.bridge-nf-call-ip6tables']) {
    const previous = await sysctlSet(key, '1', netns);
    if (previous !== '1') logInfo(`enabled ${key}${netns === null ? '' : ` in ${netns}`}: bridged guests have filter rules`);
  }
}

/** The current counts with carried ones added (never replaced: the target counted too since its guest resumed). */
function seedsAdded(current: CounterSeed, carry: CounterSeed): CounterSeed {
  const out: CounterSeed = new Map(current);
  for (const [k, v] of carry) {
    const had = out.get(k) ?? { packets: 0, bytes: 0 };
    out.set(k, { packets: Math.min(had.packets + v.packets, Number.MAX_SAFE_INTEGER), bytes: Math.min(had.bytes + v.bytes, Number.MAX_SAFE_INTEGER) });
  }
  return out;
}

/** Whether a plan's tables hold counters worth carrying over a replace. */
function hasCounters(plan: NetPlan): boolean {
  return plan.links.some((l) => l.lockMac || l.lockIp !== null || !!l.guard || !!l.lockLinkLocal || (l.rules?.length ?? 0) > 0) || plan.forwards.length > 0;
}
