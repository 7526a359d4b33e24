// The actions of an `interface { … }` inside a vm block: switch, group, lladdr, rdomain, forwards and the
// pf-style filter rules, in parse.y's order (options first, then the interface itself is counted).

import type { FilterRule, InterfaceAllow, PasstConfig, PortForward, PortRange, RuleEndpoint, RuleProto, SourceLocation } from '../share/config.js';
import { MAX_NICS } from '../share/config.js';
import { switchNameError } from '../share/names.js';
import { type ActionBase, NAME_MAX } from './action-base.js';
import type { IfaceOpt, Toks, VmOpt } from './ast.js';
import { passtOption, type PasstDraft } from './passt-actions.js';
import { groupOf } from './switch-actions.js';
import { CODE_NL } from './tokens.js';
import { etherAton, parseCidr, strtonum } from './values.js';

const IF_NAMESIZE = 16;
export const PROTOS: readonly string[] = ['tcp', 'udp', 'icmp', 'icmp6'];

/** An interface while its block is being read. */
export interface IfaceDraft {
  name: string | null;
  local: boolean;
  switch: string | null;
  group: string | null;
  lladdr: string | null;
  locked: boolean;
  rdomain: number | null;
  up: boolean;
  allow?: InterfaceAllow[];
  forwards: PortForward[];
  rules: FilterRule[];
  passt?: PasstConfig;
  location: SourceLocation;
}

/** `[local] interface [tapN] [{ … }]`; `count` is how many interfaces the vm had before this one. */
export function vmInterface(a: ActionBase, o: VmOpt & { kind: 'interface' }, count: number): IfaceDraft {
  const la = o.end;
  const nic: IfaceDraft = {
    name: null, local: o.local, switch: null, group: null, lladdr: null, locked: false, rdomain: null, up: true,
    forwards: [], rules: [], location: a.location(o.start),
  };
  const passt: PasstDraft | null = o.passt === true ? { dev: null, address: null } : null;
  for (const io of o.opts) if (passt === null || !passtOption(a, passt, io, la)) ifaceOption(a, nic, io);
  if (passt !== null) nic.passt = { dev: passt.dev, address: passt.address };
  if (count + 1 > MAX_NICS) a.fail(la, `too many interfaces: ${count + 1}`, la);
  if (o.name !== null) {
    const name = a.text(o.name);
    const m = /^tap([0-9]+)?$/.exec(name);
    if (m === null || (m[1] !== undefined && (name.length - 1 >= IF_NAMESIZE - 1 || Number(m[1]) > 0xffffffff))) {
      a.fail(la, `invalid interface: ${name}`, la);
    }
    if (name.length >= IF_NAMESIZE) a.fail(la, `interface name too long: ${name}`, la);
    nic.name = name;
  }
  return nic;
}

function ifaceOption(a: ActionBase, nic: IfaceDraft, o: IfaceOpt): void {
  const la = o.end;
  switch (o.kind) {
    case 'switch': {
      const v = a.concat(o.value);
      if (v.length >= NAME_MAX) a.fail(la, `switch name too long: ${v}`, la);
      if (switchNameError(v) !== null) a.fail(la, `invalid switch name: ${v}`, la);
      nic.switch = v;
      return;
    }
    case 'group': {
      nic.group = groupOf(a, o.value, la);
      return;
    }
    case 'lladdr': {
      if (o.locked) nic.locked = true;
      if (o.mac !== null) {
        const v = a.text(o.mac);
        const mac = etherAton(v);
        // parse.y's format string ends in a newline, so the message carries an extra one.
        if (mac === null) a.fail(o.mac, `invalid address: ${v}\n`, la);
        nic.lladdr = mac;
      }
      return;
    }
    case 'allow': {
      const what = a.text(o.value);
      if (what !== 'dhcp' && what !== 'router') a.fail(o.value, `invalid allow: ${what}: want dhcp or router`, la);
      nic.allow = [...new Set([...(nic.allow ?? []), what as InterfaceAllow])].sort();
      return;
    }
    case 'rdomain':
      nic.rdomain = a.rdomain(o.value, la);
      return;
    case 'up': nic.up = true; return;
    case 'down': nic.up = false; return;
    case 'forward': {
      const proto = a.text(o.proto);
      if (proto !== 'tcp' && proto !== 'udp') {
        a.fail(o.proto, PROTOS.includes(proto) ? `forward needs proto tcp or udp: ${proto}` : `unknown protocol ${proto}`, la);
      }
      const hostPort = a.port(o.port, la);
      const guestPort = o.to === null ? hostPort : a.port(o.to, la);
      nic.forwards.push({ proto, hostPort, guestPort, location: a.location(o.start) });
      return;
    }
    case 'rule':
      nic.rules.push(rule(a, o, la));
      return;
    case 'dev': case 'nat': case 'address':
      return; // a passt interface's own options (PasstOpt): passtOption took them
  }
}

function rule(a: ActionBase, o: IfaceOpt & { kind: 'rule' }, la: number): FilterRule {
  const protos: RuleProto[] = [];
  for (const t of o.protos ?? []) {
    const p = a.text(t);
    if (!PROTOS.includes(p)) a.fail(t, `unknown protocol ${p}`, la);
    if (!protos.includes(p as RuleProto)) protos.push(p as RuleProto);
  }
  const from = endpoint(a, o.from, o.fromPorts, la);
  const to = endpoint(a, o.to?.addrs ?? null, o.to?.ports ?? null, la);
  if ((from.ports.length > 0 || to.ports.length > 0) && (protos.length === 0 || protos.some((p) => p !== 'tcp' && p !== 'udp'))) {
    a.fail(o.start, 'port without proto tcp/udp', la);
  }
  return {
    action: o.action, direction: o.direction, quick: o.quick, protos, from, to,
    text: ruleText(a, o.start, o.end), location: a.location(o.start),
  };
}

function endpoint(a: ActionBase, addrs: Toks | null, ports: Toks | null, la: number): RuleEndpoint {
  const addresses: string[] = [];
  let any = false;
  for (const t of addrs ?? []) {
    const v = a.text(t);
    if (v === 'any') {
      any = true;
      continue;
    }
    const cidr = parseCidr(v);
    if (cidr === null) a.fail(t, `invalid address: ${v}`, la);
    if (!addresses.includes(cidr)) addresses.push(cidr);
  }
  const portRanges: PortRange[] = [];
  for (const t of ports ?? []) {
    const v = a.text(t);
    const m = /^([0-9]+):([0-9]+)$/.exec(v);
    const from = strtonum(m === null ? v : m[1]!, 1, 65535);
    const to = m === null ? from : strtonum(m[2]!, 1, 65535);
    if (typeof from !== 'number' || typeof to !== 'number' || from > to) a.fail(t, `invalid port: ${v}`, la);
    portRanges.push({ from, to });
  }
  return { addresses: any ? [] : addresses, ports: portRanges };
}

/** The rule as written after macro expansion: tokens joined by spaces, quoted strings re-quoted. */
function ruleText(a: ActionBase, start: number, end: number): string {
  const stream = a.stream;
  let s = '';
  for (let i = start; i < end; i++) {
    if (stream.codes[i] === CODE_NL) continue;
    const text = stream.texts[i]!;
    const word = stream.quoted[i] ? JSON.stringify(text) : text;
    s += s === '' || word === ',' ? word : ` ${word}`;
  }
  return s;
}
