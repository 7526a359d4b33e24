// Reader of vmd's replies on the client side (vmctl): a daemon is trusted more than a client, so unknown fields of
// listings are ignored (a newer vmd may add columns), but every field used is checked for type and bounds.

import { readDiskSizes } from './migrate.js';
import { readVmEvent } from './events.js';
import {
  MAX_NAME, MAX_PATH, ProtocolError,
  type ControlResponse, type Count, type FirewallInfo, type FirewallRuleInfo, type LinkInfo,
} from './protocol.js';
import { array, bool, int, isObj, oneOf, optInt, str } from './read.js';
import { readErrorReply, readStatusReply, readVmInfo, replyHead, replyStrings } from './read-status.js';
import { readStreamConfig } from './stream-config.js';
import { StreamError } from './stream-error.js';

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
    ...(v.kind === undefined ? {} : { kind: oneOf(v, 'kind', ['passt'] as const, w) }),
    ...(v.forwards === undefined ? {} : { forwards: readForwards(v, w) }),
  };
}

/** Added after protocol v1's first firewall listings: an older vmd leaves it out. */
function readGuarded(v: unknown, w: string): Array<'dhcp' | 'router'> {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.length > 2 || v.some((x) => x !== 'dhcp' && x !== 'router')) throw new ProtocolError(`${w}: guarded must list dhcp and/or router`);
  return v as Array<'dhcp' | 'router'>;
}

/** `forwards` of a link: at most 64 strings like `tcp 8080>80`. */
function readForwards(v: Parameters<typeof array>[0], w: string): string[] {
  return (array(v, 'forwards', 64, w) ?? []).map((f) => {
    if (typeof f !== 'string' || !/^(tcp|udp) \d{1,5}>\d{1,5}$/.test(f)) throw new ProtocolError(`${w}: field "forwards" must hold "PROTO PORT>PORT" strings`);
    return f;
  });
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
    guarded: readGuarded(v.guarded, w),
    guard: v.guard === undefined ? null : readCount(v.guard, w),
  };
}

/** Decode a daemon reply on the client side; a daemon is trusted more than a client, but vmctl still checks shape. */
export function readResponse(message: unknown): ControlResponse {
  const { obj: msg, id } = replyHead(message);
  const strings = (k: string): string[] => replyStrings(msg, k);
  switch (msg.type) {
    case 'vm.status.response':
      return readStatusReply(msg, id);
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
    case 'vm.display.response':
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
    case 'vm.receive.response': {
      const port = optInt(msg, 'port', 1, 65535, 'reply');
      const nbdPort = optInt(msg, 'nbdPort', 1, 65535, 'reply');
      return {
        type: msg.type, id, phase: oneOf(msg, 'phase', ['ready', 'done'] as const, 'reply'), vm: readVmInfo(msg.vm),
        ...(port === undefined ? {} : { port }), ...(nbdPort === undefined ? {} : { nbdPort }),
      };
    }
    case 'vm.migrate.response': {
      let config = {};
      try {
        if (msg.config !== undefined) config = { config: readStreamConfig(msg.config) };
      } catch (err) {
        throw err instanceof StreamError ? new ProtocolError(`reply: field "config": ${err.message}`) : err;
      }
      const sizes = readDiskSizes(msg, 'diskSizes', 'reply');
      const diskSizes = sizes === undefined ? {} : { diskSizes: sizes };
      return {
        type: msg.type, id, vmId: int(msg, 'vmId', 0, 2 ** 31 - 1, 'reply'), name: str(msg, 'name', MAX_NAME, 'reply'),
        phase: oneOf(msg, 'phase', ['ready', 'done'] as const, 'reply'), ...config, ...diskSizes,
      };
    }
    case 'vm.log.response': {
      const lines = array(msg, 'lines', 100_000, 'reply') ?? [];
      if (!lines.every((l) => typeof l === 'string')) throw new ProtocolError('reply: field "lines" must be a list of strings');
      return { type: msg.type, id, vmId: int(msg, 'vmId', 0, 2 ** 31 - 1, 'reply'), name: str(msg, 'name', MAX_NAME, 'reply'), lines: lines as string[] };
    }
    case 'vm.inspect.response': {
      if (!isObj(msg.config)) throw new ProtocolError('reply: field "config" must be an object');
      return {
        type: msg.type, id, vmId: int(msg, 'vmId', 0, 2 ** 31 - 1, 'reply'), name: str(msg, 'name', MAX_NAME, 'reply'),
        text: str(msg, 'text', 1_000_000, 'reply'), config: msg.config,
      };
    }
    case 'ok.response':
    case 'vm.events.response':
      return { type: msg.type, id };
    case 'vm.grow.response':
      return {
        type: msg.type, id, vmId: int(msg, 'vmId', 0, 2 ** 31 - 1, 'reply'), name: str(msg, 'name', MAX_NAME, 'reply'),
        disk: str(msg, 'disk', MAX_PATH, 'reply'), size: int(msg, 'size', 1, 2 ** 53 - 1, 'reply'),
      };
    case 'vm.snapshot.response': {
      const list = array(msg, 'snapshots', 100_000, 'reply') ?? [];
      return {
        type: msg.type, id, vmId: int(msg, 'vmId', 0, 2 ** 31 - 1, 'reply'), vm: str(msg, 'vm', MAX_NAME, 'reply'),
        op: oneOf(msg, 'op', ['create', 'list', 'revert', 'delete'] as const, 'reply'),
        name: typeof msg.name === 'string' ? msg.name : '',
        snapshots: list.map((s) => {
          if (!isObj(s)) throw new ProtocolError('reply: snapshots entries must be objects');
          return { disk: str(s, 'disk', MAX_PATH, 'reply'), name: str(s, 'name', 1024, 'reply'), vmStateBytes: int(s, 'vmStateBytes', 0, 2 ** 53 - 1, 'reply'), date: str(s, 'date', 64, 'reply') };
        }),
      };
    }
    case 'vm.event':
      return { type: msg.type, id, event: readVmEvent(msg.event) };
    case 'error':
      return readErrorReply(msg, id);
    default:
      throw new ProtocolError(`reply: unknown type "${msg.type.slice(0, 64)}"`);
  }
}
