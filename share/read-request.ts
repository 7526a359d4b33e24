// Reader of the requests a client sends on the control socket, one per type: version, shape, bounded strings,
// unknown keys refused. Control runs it on every client frame; the parent runs it again on what control forwards.

import { MAX_DOWNTIME_MS, readDiskSizes, readMigrateKey } from './migrate.js';
import { readStreamConfig, StreamError } from './stream.js';
import {
  MAX_CAPTURE_INTERFACE, MAX_NAME, MAX_PATH, MAX_SNAPLEN, MAX_STRING, PROTOCOL_VERSION, ProtocolError,
  type Base, type ControlRequest, type RequestType, type StartNet, type StartOptions,
} from './protocol.js';
import { DISK_BUSES, DISPLAY_KINDS, MACHINES } from './config.js';
import { OS_START_KEYS, readOsStartOptions } from './read-os-options.js';
import { array, bool, int, isObj, oneOf, onlyKeys, optInt, optStr, path, str, type Obj } from './read.js';

/** A `vmctl start` disk: `[bus:][raw:|qcow2:]/absolute/path`. */
export const DISK_SPEC_RE = new RegExp(`^(?:(${DISK_BUSES.join('|')}):)?(?:(raw|qcow2):)?(/.*)$`, 's');

/** `vmctl start` options: paths absolute, lists bounded, every key known. */
export function readStartOptions(v: unknown): StartOptions {
  const what = 'vm.start.request options';
  if (!isObj(v)) throw new ProtocolError(`${what}: must be an object`);
  onlyKeys(v, ['memory', 'interfaces', 'nets', 'disks', 'boot', 'initrd', 'cmdline', 'cdrom', 'bootDevice', 'machine', 'instanceOf', 'forwards', 'display', ...OS_START_KEYS], what);
  const out: { -readonly [K in keyof StartOptions]: StartOptions[K] } = {};
  const memory = optInt(v, 'memory', 1, 2 ** 53 - 1, what);
  if (memory !== undefined) out.memory = memory;
  const interfaces = optInt(v, 'interfaces', 0, 2 ** 31 - 1, what);
  if (interfaces !== undefined) out.interfaces = interfaces;
  const nets = array(v, 'nets', 64, what);
  if (nets !== undefined) {
    out.nets = nets.map((n): StartNet => {
      if (!isObj(n)) throw new ProtocolError(`${what}: nets entries must be objects`);
      const kind = oneOf(n, 'kind', ['local', 'switch', 'passt'] as const, `${what} nets`);
      if (kind === 'local') {
        onlyKeys(n, ['kind'], `${what} nets`);
        return { kind };
      }
      if (kind === 'passt') {
        onlyKeys(n, ['kind', 'style'], `${what} nets`);
        return { kind, style: oneOf(n, 'style', ['real', 'nat'] as const, `${what} nets`) };
      }
      onlyKeys(n, ['kind', 'switch'], `${what} nets`);
      return { kind, switch: str(n, 'switch', MAX_NAME, `${what} nets`) };
    });
  }
  const disks = array(v, 'disks', 64, what);
  if (disks !== undefined) {
    out.disks = disks.map((d) => {
      // vmctl sends the bus and format in front of the path when the user gave them (`-d nvme:qcow2:disk.img`).
      const m = typeof d === 'string' ? DISK_SPEC_RE.exec(d) : null;
      if (typeof d !== 'string' || m === null || m[3]!.length > MAX_PATH || d.includes('\0')) {
        throw new ProtocolError(`${what}: disks entries must be absolute paths, optionally after a bus (${DISK_BUSES.join(', ')}) and raw: or qcow2:`);
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
  if (v.machine !== undefined) out.machine = oneOf(v, 'machine', MACHINES, what);
  if (v.display !== undefined) out.display = oneOf(v, 'display', DISPLAY_KINDS, what);
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
  readOsStartOptions(v, out, what);
  return out;
}

type Reader = (o: Obj, base: Base) => ControlRequest;

const MAX_SNAPSHOT_NAME = 127;
const SNAPSHOT_NAME_RE = /^[A-Za-z0-9_.:][A-Za-z0-9_.:-]*$/;

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
  'vm.inspect.request': { keys: ['target'], read: (o, b) => ({ ...b, type: 'vm.inspect.request', target: target(o, 'vm.inspect.request') }) },
  'vm.log.request': { keys: ['target'], read: (o, b) => ({ ...b, type: 'vm.log.request', target: target(o, 'vm.log.request') }) },
  'vm.grow.request': {
    keys: ['disk', 'size'],
    read: (o, b) => ({
      ...b, type: 'vm.grow.request',
      disk: path(o, 'disk', 'vm.grow.request') ?? str(o, 'disk', MAX_PATH, 'vm.grow.request'),
      size: int(o, 'size', 1, 2 ** 53 - 1, 'vm.grow.request'),
    }),
  },
  'vm.display.request': { keys: ['target'], read: (o, b) => ({ ...b, type: 'vm.display.request', target: target(o, 'vm.display.request') }) },
  'vm.send.request': { keys: ['target'], read: (o, b) => ({ ...b, type: 'vm.send.request', target: target(o, 'vm.send.request') }) },
  'vm.receive.request': {
    keys: ['target', 'config', 'live', 'copyStorage', 'tlsKey'],
    read: (o, b) => {
      const t = target(o, 'vm.receive.request');
      const live = o.live === undefined ? {} : { live: bool(o, 'live', 'vm.receive.request') };
      // A live receive listens on the network: never without the key that authenticates the source.
      const tlsKey = readMigrateKey(o, 'tlsKey', 'vm.receive.request');
      if ((live.live === true) !== (tlsKey !== undefined)) throw new ProtocolError('vm.receive.request: field "tlsKey" goes with "live" and only with it');
      const key = tlsKey === undefined ? {} : { tlsKey };
      const sizes = readDiskSizes(o, 'copyStorage', 'vm.receive.request');
      const copy = sizes === undefined ? {} : { copyStorage: sizes };
      try {
        return { ...b, type: 'vm.receive.request', target: t, config: readStreamConfig(o.config), ...live, ...copy, ...key };
      } catch (err) {
        if (err instanceof StreamError) throw new ProtocolError(`vm.receive.request config: ${err.message.replace(/^stream: configuration: /, '')}`);
        throw err;
      }
    },
  },
  'vm.migrate.request': {
    keys: ['target', 'downtimeMs', 'copyStorage', 'tlsKey'],
    read: (o, b) => {
      const ms = optInt(o, 'downtimeMs', 1, MAX_DOWNTIME_MS, 'vm.migrate.request');
      const copy = o.copyStorage === undefined ? {} : { copyStorage: bool(o, 'copyStorage', 'vm.migrate.request') };
      const tlsKey = readMigrateKey(o, 'tlsKey', 'vm.migrate.request');
      if (tlsKey === undefined) throw new ProtocolError('vm.migrate.request: field "tlsKey" is missing');
      return { ...b, type: 'vm.migrate.request', target: target(o, 'vm.migrate.request'), ...(ms === undefined ? {} : { downtimeMs: ms }), ...copy, tlsKey };
    },
  },
  'vm.links.request': {
    keys: ['target'],
    read: (o, b) => {
      const t = optStr(o, 'target', MAX_NAME, 'vm.links.request');
      return { ...b, type: 'vm.links.request', ...(t === undefined ? {} : { target: t }) };
    },
  },
  'vm.snapshot.request': {
    keys: ['target', 'op', 'name'],
    read: (o, b) => {
      const w = 'vm.snapshot.request';
      const op = oneOf(o, 'op', ['create', 'list', 'revert', 'delete'] as const, w);
      const name = optStr(o, 'name', MAX_SNAPSHOT_NAME, w);
      // A name travels to qemu-img as one argument: one that looks like an option or holds a comma is refused.
      if (name !== undefined && !SNAPSHOT_NAME_RE.test(name)) throw new ProtocolError(`${w}: field "name" must be letters, digits, '.', '_', ':' and '-', not starting with '-'`);
      if ((op === 'revert' || op === 'delete') && name === undefined) throw new ProtocolError(`${w}: field "name" is required to ${op}`);
      return { ...b, type: w, target: target(o, w), op, ...(name === undefined ? {} : { name }) };
    },
  },
  'vm.events.request': {
    keys: ['target'],
    read: (o, b) => {
      const t = optStr(o, 'target', MAX_NAME, 'vm.events.request');
      return { ...b, type: 'vm.events.request', ...(t === undefined ? {} : { target: t }) };
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
