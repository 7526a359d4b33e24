// VXLAN ports that stretch a switch over other hosts: one kernel VXLAN link per switch, its peers either a
// multicast group or a list of unicast remotes kept as the bridge FDB's all-zeros entries (head-end replication).

import { execa } from 'execa';
import { VmdError } from '../../share/errors.js';
import type { VxlanConfig } from '../../share/config.js';
import { checkLinkName, checkMtu, checkNetnsName, ip, ipMessage, isOwnedLink, nsArgs, OWNED_BRIDGE_ALIAS_PREFIX, showLink, where } from './ip.js';

/** A VXLAN port on a switch: the tunnel to the other hosts' switches of the same id (VNI 0 to 2^24-1, UDP port). */
export interface VxlanSpec extends VxlanConfig {
  readonly name: string;
  /** The bridge it is a port of, in `netns`. */
  readonly bridge: string;
  /** Where the bridge and the port live. */
  readonly netns: string | null;
  /** Where the tunnel's UDP socket and underlay device live, if not `netns` (an rdomain switch over the host's NIC). */
  readonly underlayNetns?: string | null;
  readonly mtu?: number;
}

/** The port's name for a switch's `vxlan ID`: `vxID`, which switchesPrune() matches again. */
export function vxlanPortName(id: number): string {
  return `vx${id}`.slice(0, 15);
}

/** VXLAN's encapsulation: outer Ethernet 14, IP 20 (IPv4) or 40 (IPv6), UDP 8, VXLAN 8 (RFC 7348 §5). */
export function vxlanOverhead(v: Pick<VxlanConfig, 'remotes' | 'group' | 'local'>): number {
  const any = v.group ?? v.remotes[0] ?? v.local ?? '';
  return any.includes(':') ? 70 : 50;
}

/**
 * The MTU of a spanned switch (its bridge, its VXLAN port, and what DHCP tells the guests): the underlay device's
 * MTU, or Ethernet's 1500 when none is named, less the encapsulation. A full frame above it is silently lost
 * (HOST-FACTS §5), so every guest must be told.
 */
export async function vxlanMtu(v: VxlanConfig, underlayNetns: string | null): Promise<number> {
  let base = 1500;
  if (v.dev !== null) {
    checkLinkName(v.dev, 'vxlan device');
    const link = await showLink(v.dev, underlayNetns, `vxlan device ${v.dev}`);
    if (link === undefined) {
      throw new VmdError('ERR_INVALID', `${where(`vxlan device ${v.dev}`, underlayNetns)}: no such interface`, { hint: 'name the host\'s underlay interface in vxlan … dev' });
    }
    base = link.mtu ?? 1500;
  }
  return Math.max(base - vxlanOverhead(v), 576);
}

function checkSpec(spec: VxlanSpec, what: string): void {
  checkLinkName(spec.name, 'vxlan');
  checkLinkName(spec.bridge, 'bridge');
  if (spec.dev !== null) checkLinkName(spec.dev, 'link');
  if (spec.netns !== null) checkNetnsName(spec.netns);
  if (spec.underlayNetns !== undefined && spec.underlayNetns !== null) checkNetnsName(spec.underlayNetns);
  if (!Number.isInteger(spec.id) || spec.id < 0 || spec.id > 0xffffff) throw new VmdError('ERR_INVALID', `${what}: invalid vni ${spec.id}`);
  if (!Number.isInteger(spec.port) || spec.port < 1 || spec.port > 65535) throw new VmdError('ERR_INVALID', `${what}: invalid port ${spec.port}`);
  if ((spec.group === null) === (spec.remotes.length === 0)) throw new VmdError('ERR_INVALID', `${what}: needs either remotes or a group`);
  if (spec.group !== null && spec.dev === null) throw new VmdError('ERR_INVALID', `${what}: group ${spec.group} needs dev`);
  for (const a of [...spec.remotes, spec.group, spec.local]) {
    if (a !== null && !/^[0-9A-Fa-f.:]+$/.test(a)) throw new VmdError('ERR_INVALID', `${what}: invalid address ${JSON.stringify(a)}`);
  }
  checkMtu(spec.mtu, what);
}

/**
 * Creates (or keeps, when id, group, local, port and MTU match) a VXLAN link, makes it an up port of its bridge and
 * sets its remotes. With `underlayNetns`, it is made there and moved into `netns`: its socket stays on the underlay side.
 */
export async function vxlanEnsure(spec: VxlanSpec): Promise<{ created: boolean }> {
  const what = `vxlan ${spec.name}`;
  checkSpec(spec, what);
  const underlay = spec.underlayNetns === undefined ? spec.netns : spec.underlayNetns;
  let created = true;
  const existing = await showLink(spec.name, spec.netns, what);
  if (existing !== undefined) {
    // Only vmd's own port (marked by its alias) is kept or replaced; anything else of that name is the user's.
    if (!isOwnedLink(existing) || existing.linkinfo?.info_kind !== 'vxlan') {
      throw new VmdError('ERR_INTERNAL', `${where(what, spec.netns)}: exists and is not vmd's vxlan (${existing.linkinfo?.info_kind ?? 'unknown kind'})`, {
        hint: 'delete it, or give the switch another vxlan port name',
      });
    }
    const d = existing.linkinfo.info_data ?? {};
    // A port with a single `remote` attribute (an older vmd's) is replaced: remotes now live in the FDB.
    const same = d.id === spec.id && d.port === spec.port && (d.group ?? null) === spec.group && d.remote === undefined
      && (spec.local === null || d.local === spec.local) && (spec.mtu === undefined || existing.mtu === spec.mtu);
    if (same) created = false;
    else await ip(spec.netns, what, [['link', 'delete', 'dev', spec.name]]);
  }
  if (created) {
    const add = ['link', 'add', 'name', spec.name, ...(spec.mtu === undefined ? [] : ['mtu', String(spec.mtu)]), 'type', 'vxlan',
      'id', String(spec.id), ...(spec.group === null ? [] : ['group', spec.group]), ...(spec.local === null ? [] : ['local', spec.local]),
      'dstport', String(spec.port), ...(spec.dev === null ? [] : ['dev', spec.dev])];
    await ip(underlay, what, [add, ...(underlay === spec.netns ? [] : [['link', 'set', 'dev', spec.name, 'netns', spec.netns ?? '1']])]);
  }
  await ip(spec.netns, what, [
    ['link', 'set', 'dev', spec.name, 'alias', `${OWNED_BRIDGE_ALIAS_PREFIX}vxlan-${spec.bridge}`],
    ['link', 'set', 'dev', spec.name, 'master', spec.bridge],
    ['link', 'set', 'dev', spec.name, 'up'],
  ]);
  // The group's own all-zeros entry is the kernel's (the default destination): only a remote list is synced.
  if (spec.group === null) await vxlanRemotesSync(spec.name, spec.netns, spec.remotes);
  return { created };
}

const ALL_ZEROS = '00:00:00:00:00:00';

/**
 * Makes the port's all-zeros FDB entries exactly `remotes` (`bridge fdb append`, one per peer, as the kernel's
 * head-end replication wants them): peers that left the config are deleted, new ones added, the rest untouched,
 * so a reload never interrupts traffic to peers that stay. Learned entries (one per remote MAC) are left alone.
 */
// PRIV: changes the forwarding database of vmd's own VXLAN port.
export async function vxlanRemotesSync(name: string, netns: string | null, remotes: readonly string[]): Promise<{ added: string[]; removed: string[] }> {
  const what = `vxlan ${name}`;
  const have = await vxlanRemotes(name, netns);
  const removed = have.filter((r) => !remotes.includes(r));
  const added = remotes.filter((r) => !have.includes(r));
  for (const r of removed) await bridgeFdb(netns, what, ['del', ALL_ZEROS, 'dev', name, 'dst', r]);
  for (const r of added) await bridgeFdb(netns, what, ['append', ALL_ZEROS, 'dev', name, 'dst', r]);
  return { added, removed };
}

/** The port's current head-end replication list: the destinations of its all-zeros FDB entries. */
export async function vxlanRemotes(name: string, netns: string | null): Promise<string[]> {
  checkLinkName(name, 'vxlan');
  const out = await bridgeFdb(netns, `vxlan ${name}`, ['show', 'dev', name], true);
  let rows: unknown;
  try {
    rows = JSON.parse(out.trim() === '' ? '[]' : out);
  } catch (err) {
    throw new VmdError('ERR_INTERNAL', `${where(`vxlan ${name}`, netns)}: cannot read bridge's JSON output`, { cause: err });
  }
  if (!Array.isArray(rows)) return [];
  return rows
    .filter((r): r is { mac: string; dst: string } => typeof r === 'object' && r !== null && r.mac === ALL_ZEROS && typeof r.dst === 'string')
    .map((r) => r.dst);
}

/** One bridge(8) fdb command; throws VmdError(`what: why`). */
async function bridgeFdb(netns: string | null, what: string, args: readonly string[], json = false): Promise<string> {
  const r = await execa('bridge', [...nsArgs(netns), ...(json ? ['-j'] : []), 'fdb', ...args], {
    reject: false, timeout: 30_000, env: { LC_ALL: 'C' }, stdin: 'ignore',
  });
  if (r.exitCode !== 0) {
    const why = r.exitCode === undefined ? `bridge: ${r.shortMessage}` : ipMessage(String(r.stderr));
    throw new VmdError('ERR_INTERNAL', `${where(what, netns)}: fdb ${args[0]}: ${why}`, { ...(r.cause === undefined ? {} : { cause: r.cause }) });
  }
  return String(r.stdout);
}
