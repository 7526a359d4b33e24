// The control-socket protocol between vmctl (or any client) and vmd: every message type, declared once.
// Requests are decoded here with one reader per type (shape, lengths, unknown keys rejected) before anything trusts them.

import type { VmdErrorData } from './errors.js';
import { isErrorCode } from './errors.js';
import { MAX_NICS } from './config.js';
import { readStreamConfig, StreamError, type StreamConfig } from './stream.js';

/** Bumped on any incompatible change; a client with another version gets ERR_VERSION. */
export const PROTOCOL_VERSION = 1;

export const MAX_NAME = 63;
export const MAX_PATH = 1023;
export const MAX_STRING = 4096;

export type VmState = 'running' | 'stopped' | 'paused' | 'waiting' | 'stopping' | 'starting';

/** One row of `vmctl status`; the same object `--json` prints. */
export interface VmInfo {
  readonly id: number;
  readonly name: string;
  readonly pid: number | null;
  readonly vcpus: number;
  /** Bytes. */
  readonly maxmem: number;
  /** Resident memory of the QEMU process in bytes, null when not running. */
  readonly curmem: number | null;
  /** Console the guest is attached to (a path), null when not running. */
  readonly tty: string | null;
  /** `user[:group]` as OpenBSD prints it. */
  readonly owner: string;
  readonly uid: number;
  readonly gid: number | null;
  readonly state: VmState;
  /** ISO time the guest last started, null when not running. */
  readonly started: string | null;
  /** Where the VM was defined: the config file, `vmctl start`, `vmctl load`, or as an instance. */
  readonly origin: 'config' | 'adhoc' | 'load' | 'instance';
}

/** One row of `vmctl links`: a running guest's NIC as a host link, with the host side's counters. */
export interface LinkInfo extends LinkCounters {
  readonly vmId: number;
  readonly vm: string;
  /** The NIC's index in the VM (`if0` is 0). */
  readonly index: number;
  /** The host link (tap) name. */
  readonly link: string;
  /** The guest's MAC. */
  readonly lladdr: string;
  /** The switch the link is a port of, null for local and unattached NICs. */
  readonly switch: string | null;
  readonly local: boolean;
  /** The guest's DHCP lease or local address, CIDR; null when none is known. */
  readonly address: string | null;
  /** Packets the hypervisor dropped because their source MAC or IP was not the guest's (locked lladdr, local). */
  readonly spoofDropped: number;
  /** Packets the interface's filter rules blocked (and VLAN-tagged frames on a filtered link). */
  readonly blocked: number;
}

/** A packet and byte count of nftables. */
export interface Count {
  readonly packets: number;
  readonly bytes: number;
}

/** One filter rule of `vmctl firewall`: as written in vm.conf (after macros), with what it decided. */
export interface FirewallRuleInfo {
  /** 1-based position in its interface block. */
  readonly n: number;
  readonly text: string;
  readonly action: 'pass' | 'block';
  /** `file:line` it was written at. */
  readonly source: string;
  /** Packets and bytes this rule decided; null when the VM is not running (no compiled rules). */
  readonly count: Count | null;
}

/** One interface of `vmctl firewall`: its rules and the hypervisor's spoofing drops. */
export interface FirewallInfo {
  readonly vmId: number;
  readonly vm: string;
  readonly index: number;
  /** The host link, null when the VM is not running. */
  readonly link: string | null;
  readonly switch: string | null;
  readonly local: boolean;
  /** `locked lladdr` in effect (always on local interfaces). */
  readonly lockedLladdr: boolean;
  /** The only source IPv4 the guest may use, null when not locked. */
  readonly lockedIp: string | null;
  readonly rules: readonly FirewallRuleInfo[];
  readonly macSpoof: Count | null;
  readonly ipSpoof: Count | null;
  readonly vlan: Count | null;
}

/** A host link's counters as the kernel keeps them (the host side: the guest's TX is the link's RX). */
export interface LinkCounters {
  readonly rxPackets: number;
  readonly rxBytes: number;
  readonly rxDropped: number;
  readonly txPackets: number;
  readonly txBytes: number;
  readonly txDropped: number;
}

/** A NIC asked for on the command line, in order: `-L` (local) or `-n SWITCH`. */
export type StartNet = { readonly kind: 'local' } | { readonly kind: 'switch'; readonly switch: string };

export interface StartForward {
  readonly proto: 'tcp' | 'udp';
  readonly hostPort: number;
  readonly guestPort: number;
}

/** `vmctl start` options; paths are absolute (vmctl resolves them against its cwd). */
export interface StartOptions {
  readonly memory?: number;
  readonly interfaces?: number;
  readonly nets?: readonly StartNet[];
  readonly disks?: readonly string[];
  readonly boot?: string;
  readonly initrd?: string;
  readonly cmdline?: string;
  readonly cdrom?: string;
  readonly bootDevice?: 'cdrom' | 'disk' | 'net';
  readonly instanceOf?: string;
  readonly forwards?: readonly StartForward[];
}

interface Base {
  readonly v: number;
  /** Request id chosen by the client; echoed in the response. */
  readonly id: number;
}

export interface StatusRequest extends Base { readonly type: 'vm.status.request'; readonly target?: string; readonly running?: boolean }
export interface StartRequest extends Base { readonly type: 'vm.start.request'; readonly target: string; readonly options: StartOptions }
export interface StopRequest extends Base { readonly type: 'vm.stop.request'; readonly target: string; readonly force: boolean; readonly wait: boolean }
export interface WaitRequest extends Base { readonly type: 'vm.wait.request'; readonly target: string }
export interface PauseRequest extends Base { readonly type: 'vm.pause.request'; readonly target: string }
export interface UnpauseRequest extends Base { readonly type: 'vm.unpause.request'; readonly target: string }
export interface ConsoleRequest extends Base { readonly type: 'vm.console.request'; readonly target: string }
export interface LoadRequest extends Base { readonly type: 'config.load.request'; readonly path: string }
export interface ReloadRequest extends Base { readonly type: 'config.reload.request' }
export interface ResetRequest extends Base { readonly type: 'config.reset.request'; readonly mode: 'all' | 'vms' | 'switches' }
export interface VerboseRequest extends Base { readonly type: 'log.verbose.request'; readonly level: number }
export interface LinksRequest extends Base { readonly type: 'vm.links.request'; readonly target?: string }
export interface FirewallRequest extends Base { readonly type: 'vm.firewall.request'; readonly target: string; readonly index?: number }
/** `vmctl capture`: tcpdump on the host link of NIC `interface`; after the reply the connection carries pcap bytes. */
export interface CaptureRequest extends Base {
  readonly type: 'vm.capture.request';
  readonly target: string;
  readonly interface: number;
  /** Stop after this many packets (tcpdump -c). */
  readonly count?: number;
  /** Bytes kept of each packet (tcpdump -s). */
  readonly snaplen?: number;
  /** A tcpdump filter expression, passed to tcpdump as one argument after `--`. */
  readonly filter?: string;
}
/** The connection then carries the send stream (share/stream.ts) from vmd to the client. */
export interface SendRequest extends Base { readonly type: 'vm.send.request'; readonly target: string }
/** `config` is the stream's header, read by the client; after the `ready` reply the client sends the stream's body. */
export interface ReceiveRequest extends Base { readonly type: 'vm.receive.request'; readonly target: string; readonly config: StreamConfig }

/** Everything a client may send. */
export type ControlRequest =
  | StatusRequest | StartRequest | StopRequest | WaitRequest | PauseRequest | UnpauseRequest
  | ConsoleRequest | LoadRequest | ReloadRequest | ResetRequest | VerboseRequest | LinksRequest | FirewallRequest | CaptureRequest
  | SendRequest | ReceiveRequest;

export type RequestType = ControlRequest['type'];

export interface StatusResponse { readonly type: 'vm.status.response'; readonly id: number; readonly vms: readonly VmInfo[]; readonly warnings: readonly string[] }
export interface StartResponse { readonly type: 'vm.start.response'; readonly id: number; readonly vm: VmInfo; readonly warnings: readonly string[] }
export interface StopResponse { readonly type: 'vm.stop.response'; readonly id: number; readonly vmId: number; readonly name: string; readonly result: 'requested' | 'terminated' }
export interface WaitResponse { readonly type: 'vm.wait.response'; readonly id: number; readonly vmId: number; readonly name: string }
export interface PauseResponse { readonly type: 'vm.pause.response' | 'vm.unpause.response'; readonly id: number; readonly vmId: number; readonly name: string }
export interface ConsoleResponse { readonly type: 'vm.console.response'; readonly id: number; readonly vmId: number; readonly name: string }
export interface LinksResponse { readonly type: 'vm.links.response'; readonly id: number; readonly links: readonly LinkInfo[] }
export interface FirewallResponse { readonly type: 'vm.firewall.response'; readonly id: number; readonly interfaces: readonly FirewallInfo[] }
/** The capture runs: pcap bytes follow on the same connection until it ends. */
export interface CaptureResponse {
  readonly type: 'vm.capture.response'; readonly id: number; readonly vmId: number; readonly name: string;
  readonly interface: number; readonly link: string;
}
export interface SendResponse { readonly type: 'vm.send.response'; readonly id: number; readonly vmId: number; readonly name: string }
/** `ready`: send the body now; `done`: the guest runs. */
export interface ReceiveResponse { readonly type: 'vm.receive.response'; readonly id: number; readonly phase: 'ready' | 'done'; readonly vm: VmInfo }
export interface OkResponse { readonly type: 'ok.response'; readonly id: number }
export interface ErrorResponse { readonly type: 'error'; readonly id: number; readonly error: VmdErrorData }

/** Everything vmd answers. */
export type ControlResponse =
  | StatusResponse | StartResponse | StopResponse | WaitResponse | PauseResponse | ConsoleResponse
  | LinksResponse | FirewallResponse | CaptureResponse | SendResponse | ReceiveResponse | OkResponse | ErrorResponse;

/**
 * Non-root users may only do what OpenBSD's control.c lets them (status, start, stop, wait, pause, unpause, console),
 * list links, and see the firewall of and capture on their own VMs' links (the parent checks ownership, as for console).
 */
export const UNPRIVILEGED_REQUESTS: ReadonlySet<RequestType> = new Set<RequestType>([
  'vm.status.request', 'vm.start.request', 'vm.stop.request', 'vm.wait.request',
  'vm.pause.request', 'vm.unpause.request', 'vm.console.request', 'vm.links.request', 'vm.firewall.request', 'vm.capture.request',
]);

/** tcpdump's largest snapshot length (MAXIMUM_SNAPLEN): -s beyond it is refused. */
export const MAX_SNAPLEN = 262144;

/** The highest NIC index a capture may name: NICs are numbered from 0. */
export const MAX_CAPTURE_INTERFACE = MAX_NICS - 1;

/** Why a message was refused; becomes an ERR_PROTOCOL/ERR_VERSION error reply. */
export class ProtocolError extends Error {
  readonly code: 'ERR_PROTOCOL' | 'ERR_VERSION';
  constructor(message: string, code: 'ERR_PROTOCOL' | 'ERR_VERSION' = 'ERR_PROTOCOL') {
    super(message);
    this.name = 'ProtocolError';
    this.code = code;
  }
}

// ---- field readers: each returns the value or throws ProtocolError naming the field ----

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function onlyKeys(o: Obj, allowed: readonly string[], what: string): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) throw new ProtocolError(`${what}: unknown field "${k.slice(0, 64)}"`);
  }
}

function str(o: Obj, key: string, max: number, what: string): string {
  const v = o[key];
  if (typeof v !== 'string') throw new ProtocolError(`${what}: field "${key}" must be a string`);
  if (v.length === 0 || v.length > max) throw new ProtocolError(`${what}: field "${key}" must be 1 to ${max} characters`);
  if (v.includes('\0')) throw new ProtocolError(`${what}: field "${key}" contains a NUL byte`);
  return v;
}

function optStr(o: Obj, key: string, max: number, what: string): string | undefined {
  return o[key] === undefined ? undefined : str(o, key, max, what);
}

function int(o: Obj, key: string, min: number, max: number, what: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    throw new ProtocolError(`${what}: field "${key}" must be an integer from ${min} to ${max}`);
  }
  return v;
}

function optInt(o: Obj, key: string, min: number, max: number, what: string): number | undefined {
  return o[key] === undefined ? undefined : int(o, key, min, max, what);
}

function bool(o: Obj, key: string, what: string): boolean {
  const v = o[key];
  if (typeof v !== 'boolean') throw new ProtocolError(`${what}: field "${key}" must be true or false`);
  return v;
}

function oneOf<T extends string>(o: Obj, key: string, values: readonly T[], what: string): T {
  const v = o[key];
  if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) {
    throw new ProtocolError(`${what}: field "${key}" must be one of ${values.join(', ')}`);
  }
  return v as T;
}

function array(o: Obj, key: string, max: number, what: string): unknown[] | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length > max) throw new ProtocolError(`${what}: field "${key}" must be a list of at most ${max}`);
  return v;
}

/** Absolute path, bounded: paths in requests were resolved by the client. */
function path(o: Obj, key: string, what: string): string | undefined {
  const p = optStr(o, key, MAX_PATH, what);
  if (p !== undefined && !p.startsWith('/')) throw new ProtocolError(`${what}: field "${key}" must be an absolute path`);
  return p;
}

function readStartOptions(v: unknown): StartOptions {
  const what = 'vm.start.request options';
  if (!isObj(v)) throw new ProtocolError(`${what}: must be an object`);
  onlyKeys(v, ['memory', 'interfaces', 'nets', 'disks', 'boot', 'initrd', 'cmdline', 'cdrom', 'bootDevice', 'instanceOf', 'forwards'], what);
  const out: { -readonly [K in keyof StartOptions]: StartOptions[K] } = {};
  const memory = optInt(v, 'memory', 1, 2 ** 53 - 1, what);
  if (memory !== undefined) out.memory = memory;
  const interfaces = optInt(v, 'interfaces', 0, 2 ** 31 - 1, what);
  if (interfaces !== undefined) out.interfaces = interfaces;
  const nets = array(v, 'nets', 64, what);
  if (nets !== undefined) {
    out.nets = nets.map((n): StartNet => {
      if (!isObj(n)) throw new ProtocolError(`${what}: nets entries must be objects`);
      const kind = oneOf(n, 'kind', ['local', 'switch'] as const, `${what} nets`);
      if (kind === 'local') {
        onlyKeys(n, ['kind'], `${what} nets`);
        return { kind };
      }
      onlyKeys(n, ['kind', 'switch'], `${what} nets`);
      return { kind, switch: str(n, 'switch', MAX_NAME, `${what} nets`) };
    });
  }
  const disks = array(v, 'disks', 64, what);
  if (disks !== undefined) {
    out.disks = disks.map((d) => {
      // vmctl sends `raw:` or `qcow2:` in front of the path when the user gave a format (`-d qcow2:disk.img`).
      if (typeof d !== 'string' || !/^(?:(?:raw|qcow2):)?\//.test(d) || d.length > MAX_PATH + 8 || d.includes('\0')) {
        throw new ProtocolError(`${what}: disks entries must be absolute paths, optionally after raw: or qcow2:`);
      }
      return d;
    });
  }
  for (const key of ['boot', 'initrd', 'cdrom'] as const) {
    const p = path(v, key, what);
    if (p !== undefined) out[key] = p;
  }
  const cmdline = v.cmdline === undefined ? undefined : (() => {
    if (typeof v.cmdline !== 'string' || v.cmdline.length > MAX_STRING || v.cmdline.includes('\0')) {
      throw new ProtocolError(`${what}: field "cmdline" must be a string of at most ${MAX_STRING} characters`);
    }
    return v.cmdline;
  })();
  if (cmdline !== undefined) out.cmdline = cmdline;
  if (v.bootDevice !== undefined) out.bootDevice = oneOf(v, 'bootDevice', ['cdrom', 'disk', 'net'] as const, what);
  const instanceOf = optStr(v, 'instanceOf', MAX_NAME, what);
  if (instanceOf !== undefined) out.instanceOf = instanceOf;
  const forwards = array(v, 'forwards', 64, what);
  if (forwards !== undefined) {
    out.forwards = forwards.map((f) => {
      const w = `${what} forwards`;
      if (!isObj(f)) throw new ProtocolError(`${w}: entries must be objects`);
      onlyKeys(f, ['proto', 'hostPort', 'guestPort'], w);
      return {
        proto: oneOf(f, 'proto', ['tcp', 'udp'] as const, w),
        hostPort: int(f, 'hostPort', 1, 65535, w),
        guestPort: int(f, 'guestPort', 1, 65535, w),
      };
    });
  }
  return out;
}

type Reader = (o: Obj, base: Base) => ControlRequest;

const target = (o: Obj, what: string): string => str(o, 'target', MAX_NAME, what);

/** One reader per request type. */
const readers: Record<RequestType, { readonly keys: readonly string[]; readonly read: Reader }> = {
  'vm.status.request': {
    keys: ['target', 'running'],
    read: (o, b) => {
      const t = optStr(o, 'target', MAX_NAME, 'vm.status.request');
      const running = o.running === undefined ? undefined : bool(o, 'running', 'vm.status.request');
      return { ...b, type: 'vm.status.request', ...(t === undefined ? {} : { target: t }), ...(running === undefined ? {} : { running }) };
    },
  },
  'vm.start.request': {
    keys: ['target', 'options'],
    read: (o, b) => ({ ...b, type: 'vm.start.request', target: target(o, 'vm.start.request'), options: readStartOptions(o.options === undefined ? {} : o.options) }),
  },
  'vm.stop.request': {
    keys: ['target', 'force', 'wait'],
    read: (o, b) => ({
      ...b, type: 'vm.stop.request', target: target(o, 'vm.stop.request'),
      force: bool(o, 'force', 'vm.stop.request'), wait: bool(o, 'wait', 'vm.stop.request'),
    }),
  },
  'vm.wait.request': { keys: ['target'], read: (o, b) => ({ ...b, type: 'vm.wait.request', target: target(o, 'vm.wait.request') }) },
  'vm.pause.request': { keys: ['target'], read: (o, b) => ({ ...b, type: 'vm.pause.request', target: target(o, 'vm.pause.request') }) },
  'vm.unpause.request': { keys: ['target'], read: (o, b) => ({ ...b, type: 'vm.unpause.request', target: target(o, 'vm.unpause.request') }) },
  'vm.console.request': { keys: ['target'], read: (o, b) => ({ ...b, type: 'vm.console.request', target: target(o, 'vm.console.request') }) },
  'config.load.request': {
    keys: ['path'],
    read: (o, b) => ({ ...b, type: 'config.load.request', path: path(o, 'path', 'config.load.request') ?? str(o, 'path', MAX_PATH, 'config.load.request') }),
  },
  'config.reload.request': { keys: [], read: (_o, b) => ({ ...b, type: 'config.reload.request' }) },
  'config.reset.request': {
    keys: ['mode'],
    read: (o, b) => ({ ...b, type: 'config.reset.request', mode: oneOf(o, 'mode', ['all', 'vms', 'switches'] as const, 'config.reset.request') }),
  },
  'log.verbose.request': {
    keys: ['level'],
    read: (o, b) => ({ ...b, type: 'log.verbose.request', level: int(o, 'level', 0, 3, 'log.verbose.request') }),
  },
  'vm.send.request': { keys: ['target'], read: (o, b) => ({ ...b, type: 'vm.send.request', target: target(o, 'vm.send.request') }) },
  'vm.receive.request': {
    keys: ['target', 'config'],
    read: (o, b) => {
      const t = target(o, 'vm.receive.request');
      try {
        return { ...b, type: 'vm.receive.request', target: t, config: readStreamConfig(o.config) };
      } catch (err) {
        if (err instanceof StreamError) throw new ProtocolError(`vm.receive.request config: ${err.message.replace(/^stream: configuration: /, '')}`);
        throw err;
      }
    },
  },
  'vm.links.request': {
    keys: ['target'],
    read: (o, b) => {
      const t = optStr(o, 'target', MAX_NAME, 'vm.links.request');
      return { ...b, type: 'vm.links.request', ...(t === undefined ? {} : { target: t }) };
    },
  },
  'vm.firewall.request': {
    keys: ['target', 'index'],
    read: (o, b) => {
      const index = optInt(o, 'index', 0, 1023, 'vm.firewall.request');
      return { ...b, type: 'vm.firewall.request', target: target(o, 'vm.firewall.request'), ...(index === undefined ? {} : { index }) };
    },
  },
  'vm.capture.request': {
    keys: ['target', 'interface', 'count', 'snaplen', 'filter'],
    read: (o, b) => {
      const w = 'vm.capture.request';
      const count = optInt(o, 'count', 1, 2 ** 31 - 1, w);
      const snaplen = optInt(o, 'snaplen', 1, MAX_SNAPLEN, w);
      const filter = optStr(o, 'filter', MAX_STRING, w);
      return {
        ...b, type: w, target: target(o, w), interface: int(o, 'interface', 0, MAX_CAPTURE_INTERFACE, w),
        ...(count === undefined ? {} : { count }), ...(snaplen === undefined ? {} : { snaplen }), ...(filter === undefined ? {} : { filter }),
      };
    },
  },
};

/** Decode an untrusted client message; throws ProtocolError (with the request id if one could be read). */
export function readRequest(msg: unknown): ControlRequest {
  if (!isObj(msg)) throw new ProtocolError('message: must be a JSON object');
  const type = msg.type;
  if (typeof type !== 'string' || !Object.hasOwn(readers, type)) {
    // Not String(type): an object such as {"toString": 1} would make that throw a TypeError.
    throw new ProtocolError(typeof type === 'string' ? `message: unknown type "${type.slice(0, 64)}"` : 'message: field "type" must be a string');
  }
  const reader = readers[type as RequestType];
  const v = int(msg, 'v', 0, 1_000_000, type);
  if (v !== PROTOCOL_VERSION) {
    throw new ProtocolError(`protocol version ${v} not supported: vmd speaks version ${PROTOCOL_VERSION}`, 'ERR_VERSION');
  }
  const id = int(msg, 'id', 0, 2 ** 31 - 1, type);
  onlyKeys(msg, ['v', 'id', 'type', ...reader.keys], type);
  return reader.read(msg, { v, id });
}

/** The request id of a message that failed to decode, so the error reply can carry it. */
export function requestIdOf(msg: unknown): number {
  // Only ids a valid request could carry: anything else would make a reply the client's readResponse refuses.
  const id = isObj(msg) ? msg.id : undefined;
  return typeof id === 'number' && Number.isSafeInteger(id) && id >= 0 && id <= 2 ** 31 - 1 ? id : 0;
}

const VM_STATES: readonly VmState[] = ['running', 'stopped', 'paused', 'waiting', 'stopping', 'starting'];

function readVmInfo(v: unknown): VmInfo {
  if (!isObj(v)) throw new ProtocolError('vm info: must be an object');
  const w = 'vm info';
  const nullableInt = (k: string): number | null => (v[k] === null ? null : int(v, k, 0, 2 ** 53 - 1, w));
  const nullableStr = (k: string): string | null => (v[k] === null ? null : str(v, k, MAX_PATH, w));
  return {
    id: int(v, 'id', 1, 2 ** 31 - 1, w),
    name: str(v, 'name', MAX_NAME, w),
    pid: nullableInt('pid'),
    vcpus: int(v, 'vcpus', 1, 1024, w),
    maxmem: int(v, 'maxmem', 0, 2 ** 53 - 1, w),
    curmem: nullableInt('curmem'),
    tty: nullableStr('tty'),
    owner: str(v, 'owner', 64, w),
    uid: int(v, 'uid', 0, 2 ** 32 - 1, w),
    gid: nullableInt('gid'),
    state: oneOf(v, 'state', VM_STATES, w),
    started: nullableStr('started'),
    origin: oneOf(v, 'origin', ['config', 'adhoc', 'load', 'instance'] as const, w),
  };
}

/** Interface names are at most 15 characters (IFNAMSIZ - 1). */
const MAX_IFNAME = 15;

function readLinkInfo(v: unknown): LinkInfo {
  const w = 'link info';
  if (!isObj(v)) throw new ProtocolError(`${w}: must be an object`);
  // Like vm info, unknown fields are ignored: a newer vmd may add columns an older vmctl does not show.
  const lladdr = str(v, 'lladdr', 17, w);
  if (!/^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/i.test(lladdr)) throw new ProtocolError(`${w}: field "lladdr" must be a MAC address`);
  const address = v.address === null ? null : str(v, 'address', 64, w);
  if (address !== null && !/^[0-9A-Fa-f.:]+\/\d{1,3}$/.test(address)) throw new ProtocolError(`${w}: field "address" must be address/prefix`);
  const counter = (k: string): number => int(v, k, 0, 2 ** 53 - 1, w);
  return {
    vmId: int(v, 'vmId', 1, 2 ** 31 - 1, w),
    vm: str(v, 'vm', MAX_NAME, w),
    index: int(v, 'index', 0, 1023, w),
    link: str(v, 'link', MAX_IFNAME, w),
    lladdr,
    switch: v.switch === null ? null : str(v, 'switch', MAX_NAME, w),
    local: bool(v, 'local', w),
    address,
    rxPackets: counter('rxPackets'),
    rxBytes: counter('rxBytes'),
    rxDropped: counter('rxDropped'),
    txPackets: counter('txPackets'),
    txBytes: counter('txBytes'),
    txDropped: counter('txDropped'),
    // Added after protocol v1's first links: an older vmd leaves them out.
    spoofDropped: v.spoofDropped === undefined ? 0 : counter('spoofDropped'),
    blocked: v.blocked === undefined ? 0 : counter('blocked'),
  };
}

function readCount(v: unknown, w: string): Count | null {
  if (v === null) return null;
  if (!isObj(v)) throw new ProtocolError(`${w}: counter must be an object or null`);
  return { packets: int(v, 'packets', 0, 2 ** 53 - 1, w), bytes: int(v, 'bytes', 0, 2 ** 53 - 1, w) };
}

function readFirewallInfo(v: unknown): FirewallInfo {
  const w = 'firewall info';
  if (!isObj(v)) throw new ProtocolError(`${w}: must be an object`);
  const rules = (array(v, 'rules', 100_000, w) ?? []).map((r): FirewallRuleInfo => {
    if (!isObj(r)) throw new ProtocolError(`${w}: rule must be an object`);
    return {
      n: int(r, 'n', 1, 1_000_000, w), text: str(r, 'text', 4096, w), action: oneOf(r, 'action', ['pass', 'block'] as const, w),
      source: str(r, 'source', MAX_PATH + 16, w), count: readCount(r.count, w),
    };
  });
  const lockedIp = v.lockedIp === null ? null : str(v, 'lockedIp', 64, w);
  return {
    vmId: int(v, 'vmId', 1, 2 ** 31 - 1, w),
    vm: str(v, 'vm', MAX_NAME, w),
    index: int(v, 'index', 0, 1023, w),
    link: v.link === null ? null : str(v, 'link', MAX_IFNAME, w),
    switch: v.switch === null ? null : str(v, 'switch', MAX_NAME, w),
    local: bool(v, 'local', w),
    lockedLladdr: bool(v, 'lockedLladdr', w),
    lockedIp,
    rules,
    macSpoof: readCount(v.macSpoof, w),
    ipSpoof: readCount(v.ipSpoof, w),
    vlan: readCount(v.vlan, w),
  };
}

/** Decode a daemon reply on the client side; a daemon is trusted more than a client, but vmctl still checks shape. */
export function readResponse(msg: unknown): ControlResponse {
  if (!isObj(msg) || typeof msg.type !== 'string') throw new ProtocolError('reply: not a message');
  const id = int(msg, 'id', 0, 2 ** 31 - 1, 'reply');
  const strings = (k: string): string[] => {
    const a = array(msg, k, 10_000, 'reply') ?? [];
    // Strings only: String() of a JSON object such as {"toString": 1} throws a TypeError, not a ProtocolError.
    return a.map((s) => {
      if (typeof s !== 'string') throw new ProtocolError(`reply: field "${k}" must be a list of strings`);
      return s;
    });
  };
  switch (msg.type) {
    case 'vm.status.response': {
      const vms = array(msg, 'vms', 1_000_000, 'reply') ?? [];
      return { type: msg.type, id, vms: vms.map(readVmInfo), warnings: strings('warnings') };
    }
    case 'vm.start.response':
      return { type: msg.type, id, vm: readVmInfo(msg.vm), warnings: strings('warnings') };
    case 'vm.stop.response':
      return {
        type: msg.type, id, vmId: int(msg, 'vmId', 0, 2 ** 31 - 1, 'reply'), name: str(msg, 'name', MAX_NAME, 'reply'),
        result: oneOf(msg, 'result', ['requested', 'terminated'] as const, 'reply'),
      };
    case 'vm.send.response':
    case 'vm.wait.response':
    case 'vm.pause.response':
    case 'vm.unpause.response':
    case 'vm.console.response':
      return { type: msg.type, id, vmId: int(msg, 'vmId', 0, 2 ** 31 - 1, 'reply'), name: str(msg, 'name', MAX_NAME, 'reply') };
    case 'vm.links.response': {
      const links = array(msg, 'links', 1_000_000, 'reply') ?? [];
      return { type: msg.type, id, links: links.map(readLinkInfo) };
    }
    case 'vm.firewall.response': {
      const interfaces = array(msg, 'interfaces', 100_000, 'reply') ?? [];
      return { type: msg.type, id, interfaces: interfaces.map(readFirewallInfo) };
    }
    case 'vm.capture.response':
      return {
        type: msg.type, id, vmId: int(msg, 'vmId', 0, 2 ** 31 - 1, 'reply'), name: str(msg, 'name', MAX_NAME, 'reply'),
        interface: int(msg, 'interface', 0, 1023, 'reply'), link: str(msg, 'link', MAX_IFNAME, 'reply'),
      };
    case 'vm.receive.response':
      return { type: msg.type, id, phase: oneOf(msg, 'phase', ['ready', 'done'] as const, 'reply'), vm: readVmInfo(msg.vm) };
    case 'ok.response':
      return { type: msg.type, id };
    case 'error': {
      const e = msg.error;
      if (!isObj(e) || !isErrorCode(e.code) || typeof e.message !== 'string') throw new ProtocolError('reply: bad error');
      const hint = typeof e.hint === 'string' ? e.hint : undefined;
      return { type: 'error', id, error: hint === undefined ? { code: e.code, message: e.message } : { code: e.code, message: e.message, hint } };
    }
    default:
      throw new ProtocolError(`reply: unknown type "${msg.type.slice(0, 64)}"`);
  }
}
