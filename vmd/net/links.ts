// The host links of guests and rdomains: network namespaces, VM taps (made on an fd for QEMU), their
// configuration (rtnetlink for a start's tap) and statistics; through ip(8) with argument arrays, all idempotent.

import { unlinkSync } from 'node:fs';
import { closeFd, linkSet, tunOpen, type TunHandle } from '../native.js';
import { VmdError } from '../../share/errors.js';
import type { LinkCounters } from '../../share/protocol.js';
import {
  addressList, checkCidr, checkLinkName, checkMac, checkMtu, checkNetnsName, exactAddresses, ip, ipMessage, ipRaw, isOwnedLink, showLinks, where,
} from './ip.js';

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

// ---- taps (managed links) ----

/** Where ip(8) keeps a named namespace, as linkSet opens it. */
function netnsPath(name: string): string {
  return `/run/netns/${name}`;
}

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
  // Over rtnetlink, synchronous like tunOpen, so callers get the fd at once (ip(8) here cost a process per start).
  try {
    linkSet(null, { name: handle.name, moveTo: netnsPath(opts.netns) });
  } catch (err) {
    closeFd(handle.fd);
    throw new VmdError('ERR_INTERNAL', `${where(`link ${handle.name}`, opts.netns)}: ${ipMessage((err as Error).message)}`, { cause: err });
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
  /** The host side's lladdr; a tap gets a random one otherwise. */
  readonly mac?: string;
}

/** Alias, mtu, bridge port, host addresses and up/down of a link: one netlink round, or one ip(8) process when the words allow. */
export async function linkConfigure(config: LinkConfig): Promise<void> {
  const what = `link ${config.name}`;
  checkLinkName(config.name);
  if (config.netns !== null) checkNetnsName(config.netns);
  if (config.master !== null) checkLinkName(config.master, 'bridge');
  checkMtu(config.mtu, what);
  if (config.mac !== undefined) checkMac(config.mac, what);
  if (config.alias.length === 0 || config.alias.length > 255 || /[\0\n]/.test(config.alias)) {
    throw new VmdError('ERR_INVALID', `${what}: invalid alias ${JSON.stringify(config.alias.slice(0, 64))}`);
  }
  const addresses = addressList(config.address);
  for (const a of addresses) checkCidr(a, what);
  // A bridged tap (the common start) takes one netlink round; host addresses and lladdrs of local links go through ip(8).
  if (addresses.length === 0 && config.mac === undefined) {
    try {
      linkSet(config.netns === null ? null : netnsPath(config.netns), {
        name: config.name, alias: config.alias, ...(config.mtu === undefined ? {} : { mtu: config.mtu }), master: config.master ?? '', up: config.up,
      });
    } catch (err) {
      throw new VmdError('ERR_INTERNAL', `${where(what, config.netns)}: ${ipMessage((err as Error).message)}`, { cause: err });
    }
    return;
  }
  await ip(config.netns, what, [
    ['link', 'set', 'dev', config.name, 'alias', config.alias],
    ...(config.mtu === undefined ? [] : [['link', 'set', 'dev', config.name, 'mtu', String(config.mtu)]]),
    ...(config.mac === undefined ? [] : [['link', 'set', 'dev', config.name, 'address', config.mac]]),
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
