// The frames of a live migration's source connection after vmd's first reply, and their readers: vmctl tells
// the source where the target's QEMU listens and, once the target runs the guest, to let go (or to keep it).

import { readCarriedCounts, type CarriedCount } from './migrate-counters.js';
import { ProtocolError } from './protocol.js';
import { array, int, isObj, oneOf, onlyKeys, optInt, str, type Obj } from './read.js';

/** QEMU's default downtime limit is 300 ms; the target for this machine too. */
export const DEFAULT_DOWNTIME_MS = 300;
/** Bounds of `vmctl migrate -D`: QEMU refuses more than 2000 s; a minute already means a guest that stalls. */
export const MAX_DOWNTIME_MS = 60_000;

/** A host name, an IPv4 address, or an IPv6 address in brackets: what QEMU's `tcp:HOST:PORT` parses, nothing more. */
const HOST_RE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])$/;

/** vmctl → source vmd: migrate to the target QEMU at host:port (`go`), or stop trying (`abort`). */
export interface MigrateGo {
  readonly type: 'vm.migrate.go'; readonly host: string; readonly port: number;
  /** --copy-storage: the target QEMU's NBD server, exporting disk N as `diskN`; mirrored to before the RAM moves. */
  readonly nbdPort?: number;
}
/**
 * vmctl → source vmd after `completed`: the target runs the guest, quit it here (`commit`) or resume it (`abort`).
 * vmctl → target vmd: run it (`commit`), with the source's firewall counters to add to its own.
 */
export interface MigrateDecision { readonly type: 'vm.migrate.commit' | 'vm.migrate.abort'; readonly counters?: readonly CarriedCount[] }
export type MigrateClientFrame = MigrateGo | MigrateDecision;

/** Source vmd → vmctl while the migration runs: QEMU's query-migrate, trimmed. */
export interface MigrateProgress {
  readonly type: 'vm.migrate.progress';
  /** `active`, then `completed` once the source guest is paused and the target holds all of its state. */
  readonly status: 'active' | 'completed';
  readonly transferred: number;
  readonly remaining: number;
  readonly total: number;
  /** QEMU's measured downtime, once completed. */
  readonly downtimeMs: number | null;
  /** Total time since `go`, once completed. */
  readonly totalMs: number | null;
}

/** Source vmd → vmctl right after `completed`: the guest's firewall counters, read once it stopped there. */
export interface MigrateCounters { readonly type: 'vm.migrate.counters'; readonly counters: readonly CarriedCount[] }

/** The largest disk --copy-storage creates (1 PiB): a bound on what a peer may ask a target to allocate. */
export const MAX_COPY_DISK_BYTES = 2 ** 50;
/** As many disks as a VM may have (share/config.ts allows far fewer). */
const MAX_COPY_DISKS = 64;

/** Reads a list of disk sizes (--copy-storage's), or undefined when absent. */
export function readDiskSizes(o: Obj, key: string, what: string): number[] | undefined {
  const list = array(o, key, MAX_COPY_DISKS, what);
  if (list === undefined) return undefined;
  for (const n of list) {
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0 || n > MAX_COPY_DISK_BYTES) {
      throw new ProtocolError(`${what}: field "${key}" must be a list of sizes from 0 to ${MAX_COPY_DISK_BYTES}`);
    }
  }
  return list as number[];
}

/** A migration's TLS pre-shared key: 32 random bytes from vmctl, as QEMU's keys.psk file holds them (hex). */
export const MIGRATE_KEY_HEX = 64;
/** The PSK identity: the source's QEMU sends it, the target's looks the key up under it in keys.psk. */
export const MIGRATE_TLS_USER = 'vmd';

/**
 * Reads a migration key, or undefined when absent. Its value is a secret: an error names the field, never the
 * value, so a malformed key cannot reach a log or a reply.
 */
export function readMigrateKey(o: Obj, key: string, what: string): string | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length !== MIGRATE_KEY_HEX || !/^[0-9a-f]+$/.test(v)) {
    throw new ProtocolError(`${what}: field "${key}" must be ${MIGRATE_KEY_HEX} lowercase hexadecimal digits`);
  }
  return v;
}

/** Whether a host is one QEMU's tcp: URI can carry (and no more: no commas, spaces or options). */
export function validMigrateHost(host: string): boolean {
  return HOST_RE.test(host);
}

/** The URI QEMU migrates to. */
export function migrateUri(host: string, port: number): string {
  return `tcp:${host}:${port}`;
}

/** Reads what vmctl sends on a migration connection; anything else is a protocol error. */
export function readMigrateClientFrame(v: unknown): MigrateClientFrame {
  const what = 'migration';
  if (!isObj(v)) throw new ProtocolError(`${what}: not a message`);
  const type = oneOf(v, 'type', ['vm.migrate.go', 'vm.migrate.commit', 'vm.migrate.abort'] as const, what);
  if (type !== 'vm.migrate.go') {
    onlyKeys(v, type === 'vm.migrate.commit' ? ['type', 'counters'] : ['type'], what);
    return v.counters === undefined ? { type } : { type, counters: readCarriedCounts(v.counters, what) };
  }
  onlyKeys(v, ['type', 'host', 'port', 'nbdPort'], what);
  const host = str(v, 'host', 255, what);
  if (!validMigrateHost(host)) throw new ProtocolError(`${what}: field "host" is not a host name or address`);
  const nbdPort = optInt(v, 'nbdPort', 1, 65535, what);
  return { type, host, port: int(v, 'port', 1, 65535, what), ...(nbdPort === undefined ? {} : { nbdPort }) };
}

/** Reads a progress frame on vmctl's side. */
export function readMigrateProgress(v: Obj): MigrateProgress {
  const what = 'reply';
  onlyKeys(v, ['type', 'status', 'transferred', 'remaining', 'total', 'downtimeMs', 'totalMs'], what);
  const optMs = (k: string): number | null => (v[k] === null ? null : int(v, k, 0, 2 ** 31 - 1, what));
  return {
    type: 'vm.migrate.progress',
    status: oneOf(v, 'status', ['active', 'completed'] as const, what),
    transferred: int(v, 'transferred', 0, 2 ** 53 - 1, what),
    remaining: int(v, 'remaining', 0, 2 ** 53 - 1, what),
    total: int(v, 'total', 0, 2 ** 53 - 1, what),
    downtimeMs: optMs('downtimeMs'),
    totalMs: optMs('totalMs'),
  };
}

/** Reads the source's counters frame on vmctl's side. */
export function readMigrateCounters(v: Obj): MigrateCounters {
  onlyKeys(v, ['type', 'counters'], 'reply');
  return { type: 'vm.migrate.counters', counters: readCarriedCounts(v.counters, 'reply') };
}
