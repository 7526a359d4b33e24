// The actions of a `switch "name" { … }` block: parse.y's switch rule and its options, building a SwitchConfig.
// A switch is drafted when its name is read (the mid-rule action) and registered at its closing brace.

import type { SwitchConfig, SourceLocation, VxlanConfig } from '../share/config.js';
import { groupNameError, IFNAME_TOO_LONG, ifNameError, switchNameError } from '../share/names.js';
import { type ActionBase, NAME_MAX } from './action-base.js';
import type { SwitchOpt, Toks } from './ast.js';
import { formatIPv4, parseIPv4Net, strtonum } from './values.js';

const VXLAN_DEFAULT_PORT = 4789;

/** A switch while its block is being read. */
export interface SwitchDraft {
  name: string;
  id: number;
  interface: string | null;
  enabled: boolean;
  up: boolean;
  group: string | null;
  locked: boolean;
  rdomain: number | null;
  address: string | null;
  dhcp: boolean;
  nat: boolean;
  vxlan: VxlanConfig | null;
  location: SourceLocation;
}

/** The mid-rule action after the name: `id` is the switch's place among the enabled ones before it. */
export function switchBegin(a: ActionBase, name: Toks, headEnd: number, id: number): SwitchDraft {
  const n = a.concat(name);
  if (n.length >= NAME_MAX) a.fail(headEnd, `switch name too long: ${n}`, headEnd);
  if (switchNameError(n) !== null) a.fail(headEnd, `invalid switch name: ${n}`, headEnd);
  return {
    name: n, id, interface: null, enabled: true, up: true, group: null, locked: false, rdomain: null,
    address: null, dhcp: false, nat: false, vxlan: null, location: a.location(name[0]! - 1),
  };
}

export function switchOption(a: ActionBase, sw: SwitchDraft, o: SwitchOpt): void {
  const la = o.end;
  switch (o.kind) {
    case 'enable': sw.enabled = true; return;
    case 'disable': sw.enabled = false; return;
    case 'up': sw.up = true; return;
    case 'down': sw.up = false; return;
    case 'locked': sw.locked = true; return;
    case 'dhcp': sw.dhcp = true; return;
    case 'nat': sw.nat = true; return;
    case 'group': {
      sw.group = groupOf(a, o.value, la);
      return;
    }
    case 'interface': {
      const name = a.concat(o.value);
      const why = ifNameError(name);
      if (why === IFNAME_TOO_LONG) a.fail(la, `switch interface too long: ${name}`, la);
      if (why !== null) a.fail(la, `invalid switch interface: ${name}`, la);
      sw.interface = name;
      return;
    }
    case 'rdomain':
      sw.rdomain = a.rdomain(o.value, la);
      return;
    case 'address':
      sw.address = switchAddress(a, sw, o.value, la);
      return;
    case 'vxlan':
      sw.vxlan = switchVxlan(a, sw, o, la);
      return;
  }
}

function switchAddress(a: ActionBase, sw: SwitchDraft, t: number, la: number): string {
  const v = a.text(t);
  const m = /^([0-9.]+)\/([0-9]+)$/.exec(v);
  const len = m === null ? null : strtonum(m[2]!, 1, 32);
  if (m === null || typeof len !== 'number' || !/^\d+\.\d+\.\d+\.\d+$/.test(m[1]!) || parseIPv4Net(m[1]!) === null) {
    a.fail(t, `invalid address: ${v}`, la);
  }
  if (sw.address !== null) a.fail(t, 'address specified more than once', la);
  return `${formatIPv4(parseIPv4Net(m[1]!)!)}/${len}`;
}

function switchVxlan(a: ActionBase, sw: SwitchDraft, o: SwitchOpt & { kind: 'vxlan' }, la: number): VxlanConfig {
  if (sw.vxlan !== null) a.fail(o.start, 'vxlan specified more than once', la);
  const idText = a.text(o.id);
  const id = strtonum(idText, 0, 16777215);
  if (typeof id !== 'number') a.fail(o.id, `invalid vxlan id: ${idText}`, la);
  const remotes = vxlanRemotes(a, o, la);
  const group = o.group === null ? null : a.hostAddress(o.group, la);
  if (group !== null && !isMulticast(group)) a.fail(o.group!, `invalid vxlan group: ${group}`, la);
  const local = o.local === null ? null : a.hostAddress(o.local, la);
  let dev: string | null = null;
  if (o.dev !== null) {
    dev = a.text(o.dev);
    if (ifNameError(dev) !== null) a.fail(o.dev, `invalid vxlan device: ${dev}`, la);
  }
  // The kernel sends to a multicast group only through a named underlay device.
  if (group !== null && dev === null) a.fail(o.group!, `vxlan group ${group} needs dev`, la);
  const port = o.port === null ? VXLAN_DEFAULT_PORT : a.port(o.port, la);
  return { id, remotes, group, local, dev, port };
}

/** The unicast peers: each a host address, none twice, none multicast (that is `group`'s job). */
function vxlanRemotes(a: ActionBase, o: SwitchOpt & { kind: 'vxlan' }, la: number): string[] {
  const out: string[] = [];
  for (const t of o.remotes) {
    const r = a.hostAddress(t, la);
    if (isMulticast(r)) a.fail(t, `invalid vxlan remote: ${r} is multicast, use group`, la);
    if (out.includes(r)) a.fail(t, `vxlan remote ${r} specified more than once`, la);
    out.push(r);
  }
  return out;
}

/** 224.0.0.0/4 or ff00::/8. */
function isMulticast(addr: string): boolean {
  if (addr.includes(':')) return /^ff/i.test(addr);
  const first = Number(addr.split('.')[0]);
  return first >= 224 && first <= 239;
}

/** The closing brace: a switch needs its interface; returns the registered switch. */
export function switchEnd(a: ActionBase, sw: SwitchDraft, close: number): SwitchConfig {
  if (sw.interface === null) a.fail(close, `switch "${sw.name}" is missing interface name`, close + 1);
  if (sw.enabled) a.debug(close, `switch "${sw.name}" registered`);
  else a.debug(close, `switch "${sw.name}" skipped (disabled)`);
  return { ...sw, interface: sw.interface };
}

/** `group NAME` of a switch or interface: the empty name means none (parse.y); others as share/names.ts says. */
export function groupOf(a: ActionBase, value: Toks, la: number): string | null {
  const g = a.concat(value);
  if (g !== '' && groupNameError(g) !== null) a.fail(la, `invalid group name: ${g}`, la);
  return g === '' ? null : g;
}
