// vmd's nftables applier: loads, checks, flushes and reads vmd's tables (and sets sysctls) in a namespace,
// through nft(8) and sysctl(8) with argument arrays, in the root namespace or via `ip netns exec NS`.

import { readFile, writeFile } from 'node:fs/promises';
import { execa } from 'execa';
import { VmdError } from '../../share/errors.js';
import { byText, invalid } from './nft-plan.js';
import { NFT_TABLES, resetTables } from './nft.js';
import { netnsNameError } from '../../share/names.js';
import { NFT_RUN_CHECK, NFT_RUN_JSON, NFT_RUN_KEEP, nftAvailable, nftRelease, nftRun } from '../native.js';


/** A namespace's file as `ip netns` keeps it, after the name is checked (it becomes a path and an argument). */
function netnsFile(netns: string): string {
  if (netnsNameError(netns) !== null) invalid(`invalid network namespace name ${JSON.stringify(netns)}`);
  return `/run/netns/${netns}`;
}

function inNetns(netns: string | null, argv: readonly string[]): [string, string[]] {
  if (netns === null) return [argv[0]!, argv.slice(1)];
  netnsFile(netns); // the name checked, as for a run through libnftables
  return ['ip', ['netns', 'exec', netns, ...argv]];
}

/** nft's first `Error:` line without its noise: `/dev/stdin:3:1-5: Error: x` → `line 3: x`. */
function nftMessage(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
  const first = lines.find((l) => l.includes('Error:')) ?? lines[0] ?? 'failed without a message';
  const m = /^(?:\S+?:(\d+):[\d-]+:\s*)?Error:\s*(.*)$/.exec(first);
  if (m === null) return first;
  return m[1] === undefined ? m[2]! : `line ${m[1]}: ${m[2]!}`;
}

async function run(netns: string | null, argv: readonly string[], input?: string): Promise<string> {
  const [cmd, args] = inNetns(netns, argv);
  let result;
  try {
    result = await execa(cmd, args, { input: input ?? '', reject: false, stripFinalNewline: false });
  } catch (e) {
    throw new VmdError('ERR_INTERNAL', `${argv[0]}: ${(e as Error).message}`, { cause: e });
  }
  if (result.failed) {
    if (result.exitCode === undefined) throw new VmdError('ERR_INTERNAL', `${argv[0]}: ${result.shortMessage}`);
    const what = argv[0] === 'nft' ? 'nftables' : argv[0]!;
    const message = nftMessage(String(result.stderr)).replace(new RegExp(`^${what}: `), '');
    throw new VmdError('ERR_INTERNAL', `${what}: ${message}`);
  }
  return String(result.stdout);
}

let inProcess: boolean | undefined;

/**
 * nft with the script on its input: through libnftables in this process where it opens (no fork of vmd, and in
 * vmd's own namespace a context kept between runs: a start's rule change then costs well under a millisecond
 * instead of an nft process's ~10 ms), else the nft process. Output, errors and their wording are nft's either way.
 */
async function nft(netns: string | null, script: string, flags: { json?: boolean; check?: boolean; keep?: boolean } = {}): Promise<string> {
  inProcess ??= nftAvailable();
  if (!inProcess) return run(netns, ['nft', ...(flags.json ? ['-j'] : []), ...(flags.check ? ['-c'] : []), '-f', '-'], script);
  const nsPath = netns === null ? null : netnsFile(netns);
  let r;
  try {
    r = await nftRun(nsPath, script,
      (flags.json ? NFT_RUN_JSON : 0) | (flags.check ? NFT_RUN_CHECK : 0) | (flags.keep ? NFT_RUN_KEEP : 0));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // As `ip netns exec` says it of a namespace that is not there.
    if (code === 'ENOENT' && netns !== null) throw new VmdError('ERR_INTERNAL', `nftables: cannot open network namespace "${netns}": No such file or directory`, { cause: e });
    throw new VmdError('ERR_INTERNAL', `nftables: ${(e as Error).message}`, { cause: e });
  }
  if (netns === null && flags.keep === true) releaseWhenIdle();
  if (r.rc !== 0) throw new VmdError('ERR_INTERNAL', `nftables: ${nftMessage(r.err).replace(/^nftables: /, '')}`);
  return r.out;
}

/** How long the kept context outlives the last run: its cache is ~1.5 MB of the parent with a few links. */
const KEPT_IDLE_MS = 10_000;
let idle: NodeJS.Timeout | null = null;

function releaseWhenIdle(): void {
  if (idle !== null) {
    idle.refresh();
    return;
  }
  idle = setTimeout(() => {
    idle = null;
    nftRelease();
  }, KEPT_IDLE_MS);
  idle.unref();
}

/**
 * Loads a script from nftScript atomically (all of it or nothing) in the namespace. `keep`: a guest's start or stop,
 * which come in bursts: in vmd's own namespace the libnftables context stays for the next such change (freed 10 s
 * after the last); a whole replace or a listing opens and frees its own.
 */
export async function nftApply(script: string, netns: string | null, opts: { keep?: boolean } = {}): Promise<void> {
  await nft(netns, script, { keep: opts.keep === true });
}

// Checks a script without applying it (`nft -c`), for tests and `vmd -n`.
export async function nftCheck(script: string, netns: string | null): Promise<void> {
  await nft(netns, script, { check: true });
}

/**
 * Checks a script with `include` (nft -c) and returns null when nft accepts it, else what is wrong, naming the
 * included file when the error is in one (`/etc/vmd/nft.d/x.nft:3: syntax error, …`), for a warning.
 */
export async function nftIncludeProblem(script: string, netns: string | null): Promise<string | null> {
  const [cmd, args] = inNetns(netns, ['nft', '-c', '-f', '-']);
  const r = await execa(cmd, args, { input: script, reject: false });
  if (r.exitCode === 0) return null;
  const stderr = String(r.stderr ?? '');
  for (const line of stderr.split('\n')) {
    const m = /^(\S+?):(\d+):[\d-]+:\s*Error:\s*(.*)$/.exec(line.trim());
    if (m !== null && m[1] !== '/dev/stdin') return `${m[1]}:${m[2]}: ${m[3]}`;
  }
  return nftMessage(stderr || String(r.shortMessage));
}

// Removes vmd's tables (only them) from the namespace; their absence is fine.
export async function nftFlush(netns: string | null): Promise<void> {
  await nftApply(`${resetTables().join('\n')}\n`, netns);
}

interface NftJson {
  nftables?: Array<Record<string, Record<string, unknown>>>;
}

// Packet and byte counts by comment (`vm 'web' if0 mac-spoof`, `vm 'web' forward tcp/8080`), summed over vmd's tables.
// `what` narrows the listing (`['chain', 'inet', 'vmd', 'postrouting']`) where only some chains matter.
export async function nftCounters(netns: string | null, what: readonly string[] = ['ruleset']): Promise<Map<string, { packets: number; bytes: number }>> {
  const counters = new Map<string, { packets: number; bytes: number }>();
  const addTo = (comment: string, packets: unknown, bytes: unknown): void => {
    const c = counters.get(comment) ?? { packets: 0, bytes: 0 };
    counters.set(comment, { packets: c.packets + Number(packets ?? 0), bytes: c.bytes + Number(bytes ?? 0) });
  };
  const ours = (o: Record<string, unknown>): boolean => NFT_TABLES.some(([f, n]) => f === o.family && n === o.table);
  // One listing of the whole ruleset (one exec) rather than one per table: this runs before every full replace.
  const json = JSON.parse(await nft(netns, `list ${what.join(' ')}`, { json: true })) as NftJson;
  for (const entry of json.nftables ?? []) {
    const obj = entry.counter;
    if (obj !== undefined && ours(obj)) addTo(String(obj.comment ?? obj.name), obj.packets, obj.bytes);
    const rule = entry.rule;
    if (rule !== undefined && ours(rule) && typeof rule.comment === 'string' && Array.isArray(rule.expr)) {
      for (const e of rule.expr as Array<Record<string, unknown>>) {
        const c = e.counter;
        if (c !== null && typeof c === 'object') addTo(rule.comment, (c as Record<string, unknown>).packets, (c as Record<string, unknown>).bytes);
      }
    }
  }
  return counters;
}

// Warns about another firewall's forward hook with policy drop (Docker's FORWARD DROP), which vmd's tables cannot override.
export async function foreignForwardDrop(netns: string | null): Promise<string | null> {
  const json = JSON.parse(await nft(netns, 'list ruleset', { json: true })) as NftJson;
  const found: string[] = [];
  for (const entry of json.nftables ?? []) {
    const c = entry.chain;
    if (c === undefined || c.hook !== 'forward' || c.policy !== 'drop') continue;
    if (NFT_TABLES.some(([f, n]) => f === c.family && n === c.table)) continue;
    found.push(`table ${String(c.family)} ${String(c.table)} chain ${String(c.name)}`);
  }
  if (found.length === 0) return null;
  return `forwarded guest traffic may be dropped: ${found.sort(byText).join(', ')} ${found.length === 1 ? 'has' : 'have'} policy drop on the forward hook (as docker sets it); accept the guests' interfaces there`;
}

const SYSCTL_KEY = /^(net)\.(ipv4|ipv6)\.(conf|neigh)\.([A-Za-z0-9_.-]{1,15})\.([a-z0-9_]+)$/;

/** `net.ipv4.conf.eth0.1.route_localnet` → `net/ipv4/conf/eth0.1/route_localnet`: interface names may hold dots. */
function sysctlPath(key: string): string {
  const m = SYSCTL_KEY.exec(key);
  if (m !== null) return m.slice(1).join('/');
  if (!/^[a-z0-9_]+(\.[a-z0-9_-]+)+$/.test(key)) invalid(`invalid sysctl key ${JSON.stringify(key)}`);
  return key.split('.').join('/');
}

// Sets a sysctl (ip_forward, route_localnet) in the namespace and returns the previous value, so the caller can log a change.
export async function sysctlSet(key: string, value: string, netns: string | null): Promise<string> {
  const path = sysctlPath(key);
  if (!/^[0-9 -]{1,32}$/.test(value)) invalid(`sysctl ${key}: invalid value ${JSON.stringify(value)}`);
  if (netns === null) {
    const file = `/proc/sys/${path}`;
    let previous: string;
    try {
      previous = (await readFile(file, 'utf8')).trim();
      if (previous !== value) await writeFile(file, value);
    } catch (e) {
      throw new VmdError('ERR_INTERNAL', `sysctl ${key}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
    }
    return previous;
  }
  const previous = (await run(netns, ['sysctl', '-n', path])).trim();
  if (previous !== value) await run(netns, ['sysctl', '-q', '-w', `${path}=${value}`]);
  return previous;
}

