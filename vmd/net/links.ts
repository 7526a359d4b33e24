// System operations on host links for vmd's networking: rdomain namespaces, switch bridges, VXLAN ports, VM taps.
// Everything goes through ip(8) with argument arrays (batched through `ip -batch -` where it saves processes); all idempotent.

import { execa, execaSync } from 'execa';
import { closeFd, tunOpen, type TunHandle } from '../native.js';
import { VmdError } from '../../share/errors.js';
import { ifNameError, netnsNameError } from '../../share/names.js';
import { unlinkSync } from 'node:fs';
import type { LinkCounters } from '../../share/protocol.js';

// ---- names and ownership ----

/**
 * The ifalias prefix that marks a switch link vmd created (a bridge or a VXLAN port), which vmd may delete. It lives on
 * the link itself, so it survives a vmd crash: reconciliation and bridgeRemove() read it back instead of trusting
 * memory. Adopted bridges never get it (vmd does not change their alias), so bridgeRemove() cannot delete one by mistake.
 */
export const OWNED_BRIDGE_ALIAS_PREFIX = 'vmd:';

/** Tokens that can go into an `ip -batch` line unquoted (batch lines are split on blanks, `"` and `\` are special). */
const BATCH_SAFE = /^[A-Za-z0-9_.:/@+,=-]+$/;

/** Why a name is refused before ip(8) sees it: an interface name of at most 15 characters, no blanks or slashes. */
export function checkLinkName(name: string, what = 'link'): void {
  if (ifNameError(name) !== null) {
    throw new VmdError('ERR_INVALID', `${what} ${JSON.stringify(name)}: invalid interface name`, {
      hint: 'use 1 to 15 letters, digits, ".", "-" or "_", not starting with "." or "-"',
    });
  }
}

/** Why a namespace name is refused before ip(8) sees it. */
export function checkNetnsName(name: string): void {
  if (netnsNameError(name) !== null) {
    throw new VmdError('ERR_INVALID', `netns ${JSON.stringify(name)}: invalid namespace name`, {
      hint: 'use 1 to 63 letters, digits, ".", "-" or "_", not starting with "." or "-"',
    });
  }
}

// ---- running ip(8) ----

/** `what` of an error message: `link tap0`, or `link tap0 in netns r5` for a link inside a namespace. */
function where(what: string, netns: string | null): string {
  return netns === null ? what : `${what} in netns ${netns}`;
}

/** ip's stderr as the `why` part: the first real line, prefixes dropped, lowercase first letter, no final period. */
function ipMessage(stderr: string): string {
  const line = stderr
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l.length > 0 && !/^Command failed /.test(l)) ?? 'failed';
  const text = line.replace(/^RTNETLINK answers: /, '').replace(/^Error: /, '').replace(/\.$/, '');
  return text.charAt(0).toLowerCase() + text.slice(1);
}

interface IpResult {
  readonly ok: boolean;
  readonly stdout: string;
  readonly stderr: string;
}

/** One ip(8) run; never throws for ip's own failures (the caller words them), only when ip cannot be run at all. */
async function ipRaw(args: readonly string[], input?: string): Promise<IpResult> {
  const r = await execa('ip', args, {
    reject: false,
    stripFinalNewline: false,
    timeout: 30_000,
    env: { LC_ALL: 'C' },
    extendEnv: true,
    ...(input === undefined ? { stdin: 'ignore' as const } : { input }),
  });
  if (r.failed && r.exitCode === undefined) {
    const missing = (r.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
    throw new VmdError('ERR_INTERNAL', missing ? 'ip: command not found' : `ip: ${r.shortMessage}`, {
      ...(missing ? { hint: 'install iproute2' } : {}),
      cause: r.cause,
    });
  }
  return { ok: r.exitCode === 0, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** `-n NS` in front of the command when the object lives in a namespace. */
function nsArgs(netns: string | null): string[] {
  return netns === null ? [] : ['-n', netns];
}

/** Runs ip(8) commands in a namespace, batched into one process when they can be; throws VmdError(`what: why`). */
async function ip(netns: string | null, what: string, commands: readonly (readonly string[])[]): Promise<string> {
  if (commands.length === 0) return '';
  const batchable = commands.length > 1 && commands.every((c) => c.every((w) => BATCH_SAFE.test(w)));
  if (batchable) {
    const r = await ipRaw([...nsArgs(netns), '-batch', '-'], `${commands.map((c) => c.join(' ')).join('\n')}\n`);
    if (!r.ok) throw new VmdError('ERR_INTERNAL', `${where(what, netns)}: ${ipMessage(r.stderr)}`);
    return r.stdout;
  }
  let out = '';
  for (const c of commands) {
    const r = await ipRaw([...nsArgs(netns), ...c]);
    if (!r.ok) throw new VmdError('ERR_INTERNAL', `${where(what, netns)}: ${ipMessage(r.stderr)}`);
    out += r.stdout;
  }
  return out;
}

/** The subset of `ip -j -s -d link show` that vmd reads. */
interface IpLink {
  readonly ifname: string;
  readonly address?: string;
  readonly ifalias?: string;
  readonly master?: string;
  readonly operstate?: string;
  readonly mtu?: number;
  readonly flags?: readonly string[];
  readonly link_type?: string;
  readonly linkinfo?: { readonly info_kind?: string; readonly info_data?: Record<string, unknown> };
  readonly stats64?: IpStats;
  readonly stats?: IpStats;
}

interface IpStats {
  readonly rx?: { readonly packets?: number; readonly bytes?: number; readonly dropped?: number };
  readonly tx?: { readonly packets?: number; readonly bytes?: number; readonly dropped?: number };
}

function parseLinks(stdout: string, what: string): IpLink[] {
  try {
    const v: unknown = JSON.parse(stdout.trim() === '' ? '[]' : stdout);
    if (!Array.isArray(v)) throw new Error('not a list');
    return v.filter((l): l is IpLink => typeof l === 'object' && l !== null && typeof (l as IpLink).ifname === 'string');
  } catch (err) {
    throw new VmdError('ERR_INTERNAL', `${what}: cannot read ip's JSON output: ${(err as Error).message}`, { cause: err });
  }
}

/** One link's details, or undefined when there is no such link (a missing namespace is an error). */
async function showLink(name: string, netns: string | null, what: string): Promise<IpLink | undefined> {
  const r = await ipRaw([...nsArgs(netns), '-j', '-d', 'link', 'show', 'dev', name]);
  if (!r.ok) {
    if (/does not exist|Cannot find device/.test(r.stderr)) return undefined;
    throw new VmdError('ERR_INTERNAL', `${where(what, netns)}: ${ipMessage(r.stderr)}`);
  }
  return parseLinks(r.stdout, where(what, netns))[0];
}

/** Every link of a namespace, with statistics and details. */
async function showLinks(netns: string | null, what: string): Promise<IpLink[]> {
  const r = await ipRaw([...nsArgs(netns), '-j', '-s', '-d', 'link', 'show']);
  if (!r.ok) throw new VmdError('ERR_INTERNAL', `${what}: ${ipMessage(r.stderr)}`);
  return parseLinks(r.stdout, what);
}

/** ip(8) words for the global addresses of a link becoming exactly `addresses` (inet6 without DAD, usable at once). */
function exactAddresses(name: string, addresses: readonly string[]): string[][] {
  return [
    ['address', 'flush', 'dev', name, 'scope', 'global'],
    ...addresses.map((a) => ['address', 'add', a, 'dev', name, ...(a.includes(':') ? ['nodad'] : [])]),
  ];
}

/** A CIDR or a list of them as a list. */
function addressList(address: string | readonly string[] | null): readonly string[] {
  if (address === null) return [];
  return typeof address === 'string' ? [address] : address;
}

function checkCidr(a: string, what: string): void {
  if (!/^[0-9A-Fa-f.:]+\/\d{1,3}$/.test(a)) throw new VmdError('ERR_INVALID', `${what}: invalid address ${JSON.stringify(a)}: want address/prefix`);
}

function checkMac(mac: string, what: string): void {
  if (!/^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/i.test(mac)) throw new VmdError('ERR_INVALID', `${what}: invalid lladdr ${JSON.stringify(mac)}`);
  if ((parseInt(mac.slice(0, 2), 16) & 1) === 1) throw new VmdError('ERR_INVALID', `${what}: lladdr ${mac} is a multicast address`);
}

function checkMtu(mtu: number | undefined, what: string): void {
  if (mtu !== undefined && (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535)) throw new VmdError('ERR_INVALID', `${what}: invalid mtu ${mtu}`);
}

// ---- namespaces (rdomains) ----

/** Whether a named network namespace (a file under /run/netns, as `ip netns` keeps them) exists. */
export async function netnsExists(name: string): Promise<boolean> {
  checkNetnsName(name);
  const r = await ipRaw(['-j', 'netns', 'list']);
  if (!r.ok) throw new VmdError('ERR_INTERNAL', `netns ${name}: ${ipMessage(r.stderr)}`);
  let list: unknown;
  try {
    list = JSON.parse(r.stdout.trim() === '' ? '[]' : r.stdout);
  } catch {
    list = [];
  }
  return Array.isArray(list) && list.some((n) => typeof n === 'object' && n !== null && (n as { name?: unknown }).name === name);
}

/** The namespace of an rdomain: created if absent (with `lo` up, so local services work there); true if this call made it. */
export async function netnsEnsure(name: string): Promise<boolean> {
  let created = false;
  // A name whose namespace is gone (its bind mount died with the mount namespace that made it, e.g. a vmd
  // run under `ip netns exec`) is a stale file: remove it and make the namespace afresh.
  if ((await netnsExists(name)) && !(await ipRaw(['-n', name, 'link', 'show', 'lo'])).ok) {
    try {
      unlinkSync(`/run/netns/${name}`);
    } catch {
      /* gone meanwhile */
    }
  }
  if (!(await netnsExists(name))) {
    const r = await ipRaw(['netns', 'add', name]);
    // Someone else may have made it in between: that is success too.
    if (!r.ok && !/File exists/.test(r.stderr)) throw new VmdError('ERR_INTERNAL', `netns ${name}: ${ipMessage(r.stderr)}`);
    created = r.ok;
  }
  await ip(name, `netns ${name}`, [['link', 'set', 'dev', 'lo', 'up']]);
  return created;
}

/** What netnsRemove() did: `users` names what kept a namespace (`link br7`, `pid 4711`) when it was not removed. */
export interface NetnsRemoveResult {
  readonly removed: boolean;
  readonly users: readonly string[];
}

/**
 * Removes an rdomain namespace once it is unused. "Unused" means:
 *   - no process runs in it (`ip netns pids`): deleting the name would leave the namespace alive but unreachable,
 *     so the caller stops its own processes there (dnsmasq) first;
 *   - every link in it but `lo` is vmd's: named in `owned` (taps, veths vmd made) or a bridge or VXLAN port
 *     carrying vmd's ownership alias. A link the user put there (an adopted bridge, a moved NIC) keeps the namespace alive,
 *     since deleting the namespace would destroy it (or push a physical NIC back to the root namespace).
 * vmd's own links in it are destroyed by the kernel with the namespace. An absent namespace is not an error.
 */
export async function netnsRemove(name: string, owned: Iterable<string> = []): Promise<NetnsRemoveResult> {
  if (!(await netnsExists(name))) return { removed: false, users: [] };
  const mine = new Set(owned);
  const users: string[] = [];
  const pids = await ipRaw(['netns', 'pids', name]);
  if (!pids.ok) throw new VmdError('ERR_INTERNAL', `netns ${name}: ${ipMessage(pids.stderr)}`);
  for (const p of pids.stdout.split('\n').map((s) => s.trim()).filter((s) => /^\d+$/.test(s))) users.push(`pid ${p}`);
  for (const l of await showLinks(name, `netns ${name}`)) {
    if (l.ifname === 'lo' || mine.has(l.ifname)) continue;
    if (isOwnedLink(l)) continue;
    users.push(`link ${l.ifname}`);
  }
  if (users.length > 0) return { removed: false, users };
  const r = await ipRaw(['netns', 'delete', name]);
  if (!r.ok) throw new VmdError('ERR_INTERNAL', `netns ${name}: ${ipMessage(r.stderr)}`);
  return { removed: true, users: [] };
}

// ---- bridges (switches) ----

function isOwnedAlias(alias: string | undefined): boolean {
  return alias !== undefined && alias.startsWith(OWNED_BRIDGE_ALIAS_PREFIX);
}

/** A bridge or VXLAN port that carries vmd's ownership alias. */
function isOwnedLink(l: IpLink): boolean {
  const kind = l.linkinfo?.info_kind;
  return (kind === 'bridge' || kind === 'vxlan') && isOwnedAlias(l.ifalias);
}

/** A switch's bridge as vm.conf describes it. */
export interface BridgeSpec {
  readonly name: string;
  readonly netns: string | null;
  /** Fixed lladdr for a bridge vmd creates, so its MAC does not follow the lowest port MAC; ignored on adopted ones. */
  readonly mac: string;
  readonly up: boolean;
  /** Host address(es) on the switch, CIDR; on a vmd bridge they become exactly these, on an adopted one they are added. */
  readonly address: string | readonly string[] | null;
  readonly mtu?: number;
  /** OpenBSD's description (`switch1-uplink`), kept after the ownership prefix in the alias of bridges vmd creates. */
  readonly description?: string;
}

/** What bridgeEnsure() found: `created` by this call; `owned` by vmd (created now or by an earlier vmd). */
export interface BridgeState {
  readonly created: boolean;
  readonly owned: boolean;
}

/**
 * A switch's bridge: created if absent (then vmd owns it and marks it with its alias prefix) or adopted if it exists
 * (never deleted, its MAC and alias untouched). Applies mtu, the host address and up/down to either.
 */
export async function bridgeEnsure(spec: BridgeSpec): Promise<BridgeState> {
  const what = `bridge ${spec.name}`;
  checkLinkName(spec.name, 'bridge');
  if (spec.netns !== null) checkNetnsName(spec.netns);
  checkMac(spec.mac, what);
  checkMtu(spec.mtu, what);
  const addresses = addressList(spec.address);
  for (const a of addresses) checkCidr(a, what);
  const alias = `${OWNED_BRIDGE_ALIAS_PREFIX}${spec.description ?? spec.name}`;

  let created = false;
  let link = await showLink(spec.name, spec.netns, what);
  if (link === undefined) {
    const r = await ipRaw([...nsArgs(spec.netns), 'link', 'add', 'name', spec.name, 'address', spec.mac,
      ...(spec.mtu === undefined ? [] : ['mtu', String(spec.mtu)]), 'type', 'bridge']);
    if (!r.ok && !/File exists/.test(r.stderr)) throw new VmdError('ERR_INTERNAL', `${where(what, spec.netns)}: ${ipMessage(r.stderr)}`);
    created = r.ok;
    if (created) await ip(spec.netns, what, [['link', 'set', 'dev', spec.name, 'alias', alias]]);
    link = await showLink(spec.name, spec.netns, what);
    if (link === undefined) throw new VmdError('ERR_INTERNAL', `${where(what, spec.netns)}: vanished while being created`);
  }
  if (link.linkinfo?.info_kind !== 'bridge') {
    throw new VmdError('ERR_INTERNAL', `${where(what, spec.netns)}: exists and is not a bridge (${link.linkinfo?.info_kind ?? link.link_type ?? 'unknown kind'})`, {
      hint: 'name a bridge in the switch\'s interface, or a name that is free',
    });
  }
  const owned = created || isOwnedAlias(link.ifalias);
  const commands: string[][] = [];
  if (owned) {
    if (link.address?.toLowerCase() !== spec.mac.toLowerCase()) commands.push(['link', 'set', 'dev', spec.name, 'address', spec.mac]);
    if (link.ifalias !== alias) commands.push(['link', 'set', 'dev', spec.name, 'alias', alias]);
  }
  if (spec.mtu !== undefined && link.mtu !== spec.mtu) commands.push(['link', 'set', 'dev', spec.name, 'mtu', String(spec.mtu)]);
  if (owned) commands.push(...exactAddresses(spec.name, addresses));
  else for (const a of addresses) commands.push(['address', 'replace', a, 'dev', spec.name, ...(a.includes(':') ? ['nodad'] : [])]);
  commands.push(['link', 'set', 'dev', spec.name, spec.up ? 'up' : 'down']);
  await ip(spec.netns, what, commands);
  return { created, owned };
}

/** Whether a switch link (bridge or VXLAN port) is vmd's, by its ownership alias; undefined when there is no such link. */
export async function bridgeOwned(name: string, netns: string | null): Promise<boolean | undefined> {
  checkLinkName(name, 'bridge');
  if (netns !== null) checkNetnsName(netns);
  const link = await showLink(name, netns, `bridge ${name}`);
  if (link === undefined) return undefined;
  return isOwnedLink(link);
}

/** The bridges and VXLAN ports vmd made in a namespace, for reconciliation after a crash (remove those no switch uses). */
export async function ownedBridges(netns: string | null): Promise<string[]> {
  if (netns !== null) checkNetnsName(netns);
  const links = await showLinks(netns, where('bridges', netns));
  return links.filter(isOwnedLink).map((l) => l.ifname);
}

/**
 * Deletes a switch's bridge (or VXLAN port) if vmd owns it (it carries the ownership alias); an adopted bridge is left
 * alone and a missing one is fine, so callers may call this for every switch link that goes away. `removed` says
 * whether it was deleted.
 */
export async function bridgeRemove(name: string, netns: string | null): Promise<{ removed: boolean }> {
  const what = `bridge ${name}`;
  if (!(await bridgeOwned(name, netns))) return { removed: false };
  const r = await ipRaw([...nsArgs(netns), 'link', 'delete', 'dev', name]);
  if (!r.ok) {
    if (/does not exist|Cannot find device/.test(r.stderr)) return { removed: false };
    throw new VmdError('ERR_INTERNAL', `${where(what, netns)}: ${ipMessage(r.stderr)}`);
  }
  return { removed: true };
}

// ---- VXLAN ports ----

/** A VXLAN port on a switch: the tunnel to another host's switch of the same id. */
export interface VxlanSpec {
  readonly name: string;
  /** The bridge it is a port of, in `netns`. */
  readonly bridge: string;
  /** VNI, 0 to 2^24-1. */
  readonly id: number;
  readonly remote: string;
  readonly local: string | null;
  /** The underlay device (in `underlayNetns`); the VXLAN's MTU follows it (minus 50, HOST-FACTS §5). */
  readonly dev: string | null;
  /** UDP port, 4789 is IANA's. */
  readonly port: number;
  /** Where the bridge and the port live. */
  readonly netns: string | null;
  /** Where the tunnel's UDP socket and underlay device live, if not `netns` (an rdomain switch over the host's NIC). */
  readonly underlayNetns?: string | null;
  readonly mtu?: number;
}

/**
 * Creates (or keeps, when id, remote, local and port match) a VXLAN link and makes it an up port of its bridge. With
 * `underlayNetns`, it is made there and moved into `netns`: its socket stays on the underlay side.
 */
export async function vxlanEnsure(spec: VxlanSpec): Promise<{ created: boolean }> {
  const what = `vxlan ${spec.name}`;
  checkLinkName(spec.name, 'vxlan');
  checkLinkName(spec.bridge, 'bridge');
  if (spec.dev !== null) checkLinkName(spec.dev, 'link');
  if (spec.netns !== null) checkNetnsName(spec.netns);
  const underlay = spec.underlayNetns === undefined ? spec.netns : spec.underlayNetns;
  if (underlay !== null) checkNetnsName(underlay);
  if (!Number.isInteger(spec.id) || spec.id < 0 || spec.id > 0xffffff) throw new VmdError('ERR_INVALID', `${what}: invalid vni ${spec.id}`);
  if (!Number.isInteger(spec.port) || spec.port < 1 || spec.port > 65535) throw new VmdError('ERR_INVALID', `${what}: invalid port ${spec.port}`);
  for (const a of [spec.remote, ...(spec.local === null ? [] : [spec.local])]) {
    if (!/^[0-9A-Fa-f.:]+$/.test(a)) throw new VmdError('ERR_INVALID', `${what}: invalid address ${JSON.stringify(a)}`);
  }
  checkMtu(spec.mtu, what);

  const existing = await showLink(spec.name, spec.netns, what);
  if (existing !== undefined) {
    // Only vmd's own port (marked by its alias) is kept or replaced; anything else of that name is the user's.
    if (!isOwnedLink(existing) || existing.linkinfo?.info_kind !== 'vxlan') {
      throw new VmdError('ERR_INTERNAL', `${where(what, spec.netns)}: exists and is not vmd's vxlan (${existing.linkinfo?.info_kind ?? 'unknown kind'})`, {
        hint: 'delete it, or give the switch another vxlan port name',
      });
    }
    const d = existing.linkinfo.info_data ?? {};
    const same = d.id === spec.id && d.port === spec.port && (d.remote ?? d.group) === spec.remote
      && (spec.local === null || d.local === spec.local) && (spec.mtu === undefined || existing.mtu === spec.mtu);
    if (same) {
      await ip(spec.netns, what, portCommands(spec));
      return { created: false };
    }
    await ip(spec.netns, what, [['link', 'delete', 'dev', spec.name]]);
  }
  const add = ['link', 'add', 'name', spec.name, ...(spec.mtu === undefined ? [] : ['mtu', String(spec.mtu)]), 'type', 'vxlan',
    'id', String(spec.id), 'remote', spec.remote, ...(spec.local === null ? [] : ['local', spec.local]),
    'dstport', String(spec.port), ...(spec.dev === null ? [] : ['dev', spec.dev])];
  await ip(underlay, what, [add, ...(underlay === spec.netns ? [] : [['link', 'set', 'dev', spec.name, 'netns', spec.netns ?? '1']])]);
  await ip(spec.netns, what, portCommands(spec));
  return { created: true };
}

/** Mark, bridge port, up: the alias marks the port as vmd's so bridgeRemove() and netnsRemove() know it. */
function portCommands(spec: VxlanSpec): string[][] {
  return [
    ['link', 'set', 'dev', spec.name, 'alias', `${OWNED_BRIDGE_ALIAS_PREFIX}vxlan-${spec.bridge}`],
    ['link', 'set', 'dev', spec.name, 'master', spec.bridge],
    ['link', 'set', 'dev', spec.name, 'up'],
  ];
}

/** Deletes a link vmd made (a VXLAN port, a stray tap); a missing link is fine. `removed` says whether it was there. */
export async function linkRemove(name: string, netns: string | null): Promise<{ removed: boolean }> {
  checkLinkName(name);
  const r = await ipRaw([...nsArgs(netns), 'link', 'delete', 'dev', name]);
  if (r.ok) return { removed: true };
  if (/does not exist|Cannot find device/.test(r.stderr)) return { removed: false };
  throw new VmdError('ERR_INTERNAL', `${where(`link ${name}`, netns)}: ${ipMessage(r.stderr)}`);
}

// ---- taps (managed links) ----

/** How tapCreate() makes a VM's tap. */
export interface TapOptions {
  readonly vnetHdr: boolean;
  /** The rdomain namespace to move it into; null leaves it in vmd's own (the root) namespace. */
  readonly netns: string | null;
  /** Who may attach to it besides root (default root only: QEMU gets the fd, it never opens the tap by name). */
  readonly owner?: number;
}

/**
 * A VM NIC's tap on an fd for QEMU (`-netdev tap,fd=N`): made non-persistent in vmd's namespace, so it disappears
 * when the last fd closes (QEMU exits or dies, also after a vmd crash), then moved into `netns` if given (the fd
 * stays valid). A stale persistent tap of that name is taken over and made non-persistent. The caller closes its fd
 * (closeFd) once QEMU holds its copy. On failure nothing is left behind.
 */
// PRIV: tunOpen needs CAP_NET_ADMIN and /dev/net/tun; moving needs CAP_NET_ADMIN in both namespaces.
export function tapCreate(name: string, opts: TapOptions): TunHandle {
  checkLinkName(name);
  if (opts.netns !== null) checkNetnsName(opts.netns);
  let handle: TunHandle;
  try {
    handle = tunOpen(name, { vnetHdr: opts.vnetHdr, persist: false, owner: opts.owner ?? 0 });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'EBUSY' ? 'in use by another process' : (e.message.replace(/^[A-Z]+: /, '') || String(e.code));
    throw new VmdError('ERR_INTERNAL', `link ${name}: ${why.charAt(0).toLowerCase()}${why.slice(1)}`, { cause: err });
  }
  if (opts.netns === null) return handle;
  // Synchronous, like tunOpen: one short ip(8) run (about 5 ms), so callers get the fd at once.
  let r;
  try {
    r = execaSync('ip', ['link', 'set', 'dev', handle.name, 'netns', opts.netns], {
      reject: false, stdin: 'ignore', timeout: 30_000, env: { LC_ALL: 'C' }, extendEnv: true,
    });
  } catch (err) {
    closeFd(handle.fd);
    throw new VmdError('ERR_INTERNAL', `link ${handle.name}: ${(err as Error).message}`, { cause: err });
  }
  if (r.exitCode !== 0) {
    closeFd(handle.fd);
    const why = r.exitCode === undefined ? (r.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT' ? 'ip: command not found' : r.shortMessage : ipMessage(String(r.stderr));
    throw new VmdError('ERR_INTERNAL', `${where(`link ${handle.name}`, opts.netns)}: ${why}`);
  }
  return handle;
}

/** How linkConfigure() sets up a VM's tap once it exists (vm_priv_ifconfig's steps). */
export interface LinkConfig {
  readonly name: string;
  readonly netns: string | null;
  /** OpenBSD's description, `vm1-if0-web`. */
  readonly alias: string;
  /** The switch bridge to attach to, in the same namespace; null detaches. */
  readonly master: string | null;
  readonly up: boolean;
  /** Host side address(es) of a local link, CIDR (`100.64.1.2/31`, an inet6 /96); the link's global addresses become exactly these. */
  readonly address: string | readonly string[] | null;
  readonly mtu?: number;
}

/** Alias, mtu, bridge port, host addresses and up/down of a link, in one ip(8) process when the words allow. */
export async function linkConfigure(config: LinkConfig): Promise<void> {
  const what = `link ${config.name}`;
  checkLinkName(config.name);
  if (config.netns !== null) checkNetnsName(config.netns);
  if (config.master !== null) checkLinkName(config.master, 'bridge');
  checkMtu(config.mtu, what);
  if (config.alias.length === 0 || config.alias.length > 255 || /[\0\n]/.test(config.alias)) {
    throw new VmdError('ERR_INVALID', `${what}: invalid alias ${JSON.stringify(config.alias.slice(0, 64))}`);
  }
  const addresses = addressList(config.address);
  for (const a of addresses) checkCidr(a, what);
  await ip(config.netns, what, [
    ['link', 'set', 'dev', config.name, 'alias', config.alias],
    ...(config.mtu === undefined ? [] : [['link', 'set', 'dev', config.name, 'mtu', String(config.mtu)]]),
    ['link', 'set', 'dev', config.name, ...(config.master === null ? ['nomaster'] : ['master', config.master])],
    ...exactAddresses(config.name, addresses),
    ['link', 'set', 'dev', config.name, config.up ? 'up' : 'down'],
  ]);
}

// ---- statistics ----

/** One link of `vmctl links` as the kernel sees it; counters are the host side's (the guest's TX is our RX). */
export interface LinkStat extends LinkCounters {
  readonly mac: string;
  readonly alias: string | null;
  readonly master: string | null;
  /** `up`, `down`, `unknown` (a tap QEMU holds), `lowerlayerdown`, … lowercased from the kernel's word. */
  readonly operstate: string;
  /** linkinfo's kind: `tun`, `bridge`, `vxlan`, `veth`; null for plain devices. */
  readonly kind: string | null;
  readonly mtu: number;
}

/** Every link of a namespace with its alias, master, state and counters (`ip -j -s -d link show`), by name. */
export async function linkStats(netns: string | null): Promise<Map<string, LinkStat>> {
  if (netns !== null) checkNetnsName(netns);
  const links = await showLinks(netns, where('links', netns));
  const out = new Map<string, LinkStat>();
  const n = (v: number | undefined): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  for (const l of links) {
    const s = l.stats64 ?? l.stats ?? {};
    out.set(l.ifname, {
      mac: l.address ?? '',
      alias: l.ifalias ?? null,
      master: l.master ?? null,
      operstate: (l.operstate ?? 'unknown').toLowerCase(),
      kind: l.linkinfo?.info_kind ?? null,
      mtu: n(l.mtu),
      rxPackets: n(s.rx?.packets),
      rxBytes: n(s.rx?.bytes),
      rxDropped: n(s.rx?.dropped),
      txPackets: n(s.tx?.packets),
      txBytes: n(s.tx?.bytes),
      txDropped: n(s.tx?.dropped),
    });
  }
  return out;
}
