// Switch links vmd makes or adopts: bridges (with the host's addresses on them) and VXLAN ports, found again
// after a crash by their ownership alias; all idempotent, all through ip(8).

import { VmdError } from '../../share/errors.js';
import {
  checkCidr, checkLinkName, checkMac, checkMtu, checkNetnsName, exactAddresses, addressList, ip, ipMessage, ipRaw, isOwnedAlias, isOwnedLink,
  nsArgs, OWNED_BRIDGE_ALIAS_PREFIX, showLink, showLinks, where,
} from './ip.js';

// ---- bridges (switches) ----


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

/** Deletes a link vmd made (a VXLAN port, a stray tap); a missing link is fine. `removed` says whether it was there. */
export async function linkRemove(name: string, netns: string | null): Promise<{ removed: boolean }> {
  checkLinkName(name);
  const r = await ipRaw([...nsArgs(netns), 'link', 'delete', 'dev', name]);
  if (r.ok) return { removed: true };
  if (/does not exist|Cannot find device/.test(r.stderr)) return { removed: false };
  throw new VmdError('ERR_INTERNAL', `${where(`link ${name}`, netns)}: ${ipMessage(r.stderr)}`);
}

