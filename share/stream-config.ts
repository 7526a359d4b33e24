// The guest's configuration as a `vmctl send` stream carries it, and its strict reader.
// A stream is a file anyone can hand vmd: every field is checked, unknown keys refused, and the error names the field.

import { DISK_BUSES, MACHINES, type DiskBus, type InterfaceAllow, type Machine } from './config.js';
import { CONTROL_CHARS, groupNameError, ifNameError, switchNameError, vmNameError } from './names.js';
import { StreamError } from './stream-error.js';

/** A NIC as it travels: the MAC the guest had, so the received guest keeps it on its new link. */
export interface StreamNic {
  readonly local: boolean;
  readonly switch: string | null;
  readonly lladdr: string;
  readonly locked: boolean;
  readonly group: string | null;
  readonly rdomain: number | null;
  readonly forwards: readonly { readonly proto: 'tcp' | 'udp'; readonly hostPort: number; readonly guestPort: number }[];
  readonly rules: readonly StreamRule[];
  /** `allow dhcp` / `allow router`; absent when none, so streams without it stay readable by older receivers. */
  readonly allow?: readonly InterfaceAllow[];
  /** A passt interface's outward device and qemu-style address; absent on other NICs (older streams stay readable). */
  readonly passt?: { readonly dev: string | null; readonly address: string | null };
}

export interface StreamRule {
  readonly action: 'pass' | 'block';
  readonly direction: 'in' | 'out' | null;
  readonly quick: boolean;
  readonly protos: readonly ('tcp' | 'udp' | 'icmp' | 'icmp6')[];
  readonly from: { readonly addresses: readonly string[]; readonly ports: readonly { readonly from: number; readonly to: number }[] };
  readonly to: { readonly addresses: readonly string[]; readonly ports: readonly { readonly from: number; readonly to: number }[] };
  readonly text: string;
}

/**
 * What a received guest needs to run exactly the devices it was saved with (QEMU requires the same machine on
 * both ends): memory, cpus, boot files, disks, cdrom and NICs in order. Paths must be valid on the receiving host.
 */
export interface StreamConfig {
  /** The name the guest had; the receiver gives it a new one. */
  readonly name: string;
  /**
   * The VM id the guest had: its local-interface addresses and fixed leases derive from it, so the receiver keeps
   * it when it is free there. Absent in streams of older senders.
   */
  readonly id?: number;
  readonly memory: number;
  readonly cpus: number;
  readonly boot: string | null;
  readonly initrd: string | null;
  readonly cmdline: string | null;
  readonly cdrom: string | null;
  readonly disks: readonly { readonly path: string; readonly format: 'raw' | 'qcow2'; readonly bus?: DiskBus }[];
  /** Absent in streams from before machine types: q35. */
  readonly machine?: Machine;
  readonly interfaces: readonly StreamNic[];
  readonly owner: { readonly uid: number; readonly gid: number | null } | null;
  /**
   * `firmware uefi [secure-boot]`: the receiver needs the same pflash devices to load the state. Absent = bios, so
   * older streams stay readable. The variable store itself does not travel: the received guest gets a fresh one.
   */
  readonly firmware?: 'uefi';
  readonly secureBoot?: true;
  /** `display vnc`: the receiver needs the same VGA card to load the state (its video RAM travels). Absent = none. */
  readonly display?: 'vnc';
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function bad(why: string): never {
  throw new StreamError('config', `configuration: ${why}`);
}

function keys(o: Obj, allowed: readonly string[], what: string): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) bad(`${what}: unknown field "${k.slice(0, 64)}"`);
}

function intIn(v: unknown, min: number, max: number, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) bad(`${what} must be an integer from ${min} to ${max}`);
  return v;
}

// Control characters would break QEMU's option parsing and logs.
const CONTROL_RE = CONTROL_CHARS;

function pathOrNull(v: unknown, what: string): string | null {
  if (v === null) return null;
  if (typeof v !== 'string' || !v.startsWith('/') || v.length > 1023 || CONTROL_RE.test(v)) bad(`${what} must be an absolute path`);
  return v;
}

/** A string that matches `re`, or for which the share/names.ts rule `re` has no objection. */
function nameOf(v: unknown, what: string, re: RegExp | ((name: string) => string | null)): string {
  if (typeof v !== 'string' || (typeof re === 'function' ? re(v) !== null : !re.test(v))) bad(`${what} is invalid`);
  return v;
}

function list(v: unknown, max: number, what: string): unknown[] {
  if (!Array.isArray(v) || v.length > max) bad(`${what} must be a list of at most ${max}`);
  return v;
}

const MAC_RE = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;
const IPV4_RE = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/**
 * An address's family, 0 when it is none, as node:net's isIP without loading node:net: vmctl reads these replies
 * (migrate, and every listing's response reader imports this file), and net is a tenth of its start-up.
 */
function ipFamily(a: string): 0 | 4 | 6 {
  if (IPV4_RE.test(a)) return 4;
  if (!a.includes(':') || !/^[0-9A-Fa-f:.]+$/.test(a)) return 0;
  try {
    new URL(`http://[${a}]/`);
    return 6;
  } catch {
    return 0;
  }
}

function cidr(v: unknown, what: string): string {
  if (typeof v !== 'string' || v.length > 64) bad(`${what} must be an address/prefix`);
  const m = /^([^/]+)\/(\d{1,3})$/.exec(v);
  const family = m === null ? 0 : ipFamily(m[1]!);
  if (m === null || family === 0 || Number(m[2]) > (family === 4 ? 32 : 128)) bad(`${what} must be an address/prefix`);
  return v;
}

function endpoint(v: unknown, what: string): StreamRule['from'] {
  if (!isObj(v)) bad(`${what} must be an object`);
  keys(v, ['addresses', 'ports'], what);
  return {
    addresses: list(v.addresses, 64, `${what} addresses`).map((a) => cidr(a, `${what} address`)),
    ports: list(v.ports, 64, `${what} ports`).map((p) => {
      if (!isObj(p)) bad(`${what} ports must be objects`);
      keys(p, ['from', 'to'], `${what} port`);
      const from = intIn(p.from, 0, 65535, `${what} port`);
      const to = intIn(p.to, from, 65535, `${what} port range end`);
      return { from, to };
    }),
  };
}

function rule(v: unknown, what: string): StreamRule {
  if (!isObj(v)) bad(`${what} must be an object`);
  keys(v, ['action', 'direction', 'quick', 'protos', 'from', 'to', 'text'], what);
  if (v.action !== 'pass' && v.action !== 'block') bad(`${what} action must be pass or block`);
  if (v.direction !== null && v.direction !== 'in' && v.direction !== 'out') bad(`${what} direction must be in, out or null`);
  if (typeof v.quick !== 'boolean') bad(`${what} quick must be true or false`);
  if (typeof v.text !== 'string' || v.text.length > 4096 || CONTROL_RE.test(v.text)) bad(`${what} text must be one line`);
  const protos = list(v.protos, 4, `${what} protos`).map((p) => {
    if (p !== 'tcp' && p !== 'udp' && p !== 'icmp' && p !== 'icmp6') bad(`${what} protos must be tcp, udp, icmp or icmp6`);
    return p;
  });
  return { action: v.action, direction: v.direction, quick: v.quick, protos, from: endpoint(v.from, `${what} from`), to: endpoint(v.to, `${what} to`), text: v.text };
}

function nic(v: unknown, i: number): StreamNic {
  const what = `interface ${i}`;
  if (!isObj(v)) bad(`${what} must be an object`);
  keys(v, ['local', 'switch', 'lladdr', 'locked', 'group', 'rdomain', 'forwards', 'rules', 'allow', 'passt'], what);
  if (typeof v.local !== 'boolean' || typeof v.locked !== 'boolean') bad(`${what}: local and locked must be true or false`);
  const lladdr = nameOf(v.lladdr, `${what} lladdr`, MAC_RE);
  if (parseInt(lladdr.slice(0, 2), 16) & 1) bad(`${what} lladdr is a multicast address`);
  return {
    local: v.local,
    switch: v.switch === null ? null : nameOf(v.switch, `${what} switch`, switchNameError),
    lladdr,
    locked: v.locked,
    group: v.group === null ? null : nameOf(v.group, `${what} group`, groupNameError),
    rdomain: v.rdomain === null ? null : intIn(v.rdomain, 0, 255, `${what} rdomain`),
    forwards: list(v.forwards, 64, `${what} forwards`).map((f) => {
      if (!isObj(f)) bad(`${what} forwards must be objects`);
      keys(f, ['proto', 'hostPort', 'guestPort'], `${what} forward`);
      if (f.proto !== 'tcp' && f.proto !== 'udp') bad(`${what} forward proto must be tcp or udp`);
      return { proto: f.proto, hostPort: intIn(f.hostPort, 1, 65535, `${what} forward port`), guestPort: intIn(f.guestPort, 1, 65535, `${what} forward port`) };
    }),
    rules: list(v.rules, 256, `${what} rules`).map((r, j) => rule(r, `${what} rule ${j}`)),
    ...(v.allow === undefined ? {} : { allow: allowList(v.allow, what) }),
    ...(v.passt === undefined ? {} : { passt: passtOf(v.passt, what) }),
  };
}

/** A passt NIC's settings: an interface name or null, an IPv4 CIDR or null. */
function passtOf(v: unknown, what: string): { dev: string | null; address: string | null } {
  if (!isObj(v)) bad(`${what} passt must be an object`);
  keys(v, ['dev', 'address'], `${what} passt`);
  const address = v.address === null ? null : nameOf(v.address, `${what} passt address`, /^\d{1,3}(?:\.\d{1,3}){3}\/\d{1,2}$/);
  if (address !== null && ipFamily(address.split('/')[0]!) !== 4) bad(`${what} passt address must be IPv4/LENGTH`);
  return { dev: v.dev === null ? null : nameOf(v.dev, `${what} passt dev`, ifNameError), address };
}

/** A NIC's allowances: each of `dhcp` and `router` at most once. */
function allowList(v: unknown, what: string): InterfaceAllow[] {
  const out = list(v, 2, `${what} allow`).map((a) => {
    if (a !== 'dhcp' && a !== 'router') bad(`${what} allow must be dhcp or router`);
    return a;
  });
  if (new Set(out).size !== out.length) bad(`${what} allow names one twice`);
  return out;
}

const MIB = 1024 * 1024;

/** Decodes an untrusted configuration from a stream; throws StreamError naming the field. */
export function readStreamConfig(v: unknown): StreamConfig {
  if (!isObj(v)) bad('must be an object');
  keys(v, ['name', 'id', 'memory', 'cpus', 'boot', 'initrd', 'cmdline', 'cdrom', 'disks', 'machine', 'interfaces', 'owner', 'firmware', 'secureBoot', 'display'], 'configuration');
  if (v.display !== undefined && v.display !== 'vnc') bad('display must be vnc or absent');
  if (v.machine !== undefined && !(MACHINES as readonly unknown[]).includes(v.machine)) bad(`machine must be one of ${MACHINES.join(', ')}`);
  if (v.firmware !== undefined && v.firmware !== 'uefi') bad('firmware must be uefi or absent');
  if (v.secureBoot !== undefined && (v.secureBoot !== true || v.firmware !== 'uefi')) bad('secureBoot must be true with firmware uefi, or absent');
  const memory = intIn(v.memory, MIB, 128 * 1024 * MIB, 'memory');
  if (memory % MIB !== 0) bad('memory must be a whole number of megabytes');
  let cmdline: string | null = null;
  if (v.cmdline !== null) {
    if (typeof v.cmdline !== 'string' || v.cmdline.length > 4096 || CONTROL_RE.test(v.cmdline)) bad('cmdline must be one line of at most 4096 characters');
    cmdline = v.cmdline;
  }
  let owner: StreamConfig['owner'] = null;
  if (v.owner !== null) {
    if (!isObj(v.owner)) bad('owner must be an object or null');
    keys(v.owner, ['uid', 'gid'], 'owner');
    owner = { uid: intIn(v.owner.uid, 0, 2 ** 32 - 2, 'owner uid'), gid: v.owner.gid === null ? null : intIn(v.owner.gid, 0, 2 ** 32 - 2, 'owner gid') };
  }
  return {
    name: nameOf(v.name, 'name', vmNameError),
    ...(v.id === undefined ? {} : { id: intIn(v.id, 1, 2 ** 31 - 1, 'id') }),
    memory,
    cpus: intIn(v.cpus, 1, 255, 'cpus'),
    boot: pathOrNull(v.boot, 'boot'),
    initrd: pathOrNull(v.initrd, 'initrd'),
    cmdline,
    cdrom: pathOrNull(v.cdrom, 'cdrom'),
    disks: list(v.disks, 4, 'disks').map((d, i) => {
      if (!isObj(d)) bad(`disk ${i} must be an object`);
      keys(d, ['path', 'format', 'bus'], `disk ${i}`);
      if (d.format !== 'raw' && d.format !== 'qcow2') bad(`disk ${i} format must be raw or qcow2`);
      if (d.bus !== undefined && !(DISK_BUSES as readonly unknown[]).includes(d.bus)) bad(`disk ${i} bus must be one of ${DISK_BUSES.join(', ')}`);
      const path = pathOrNull(d.path, `disk ${i} path`) ?? bad(`disk ${i} path must be an absolute path`);
      return d.bus === undefined ? { path, format: d.format } : { path, format: d.format, bus: d.bus as DiskBus };
    }),
    ...(v.machine === undefined ? {} : { machine: v.machine as Machine }),
    interfaces: list(v.interfaces, 4, 'interfaces').map(nic),
    owner,
    ...(v.firmware === 'uefi' ? { firmware: 'uefi' as const } : {}),
    ...(v.secureBoot === true ? { secureBoot: true as const } : {}),
    ...(v.display === 'vnc' ? { display: 'vnc' as const } : {}),
  };
}
