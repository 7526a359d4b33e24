// Messages between vmd's own processes (parent <-> vmm, parent <-> control), declared once, with their readers.
// Root reads what the unprivileged roles send field by field; a malformed message is fatal for the role that sent it.

import type { MetricsListen } from './config.js';
import { isErrorCode, type VmdErrorData } from './errors.js';
import { DEFAULT_MAX_FRAME_BYTES } from './frame.js';
import { readCarriedCounts, type CarriedCount } from './migrate-counters.js';
import {
  MAX_STRING, ProtocolError, UNPRIVILEGED_REQUESTS, VM_STATES,
  type ControlRequest, type ControlResponse, type FirewallInfo, type LinkInfo, type RequestType, type VmEvent, type VmInfo, type VmState,
} from './protocol.js';
import { readRequest } from './read-request.js';
import { int, isObj, oneOf, onlyKeys, optStr, type Obj } from './read.js';

/** What vmm needs to drive one running guest. */
export interface GuestHandle {
  readonly vmId: number;
  readonly name: string;
  readonly pid: number;
  readonly qmpSocket: string;
  readonly consoleSocket: string;
  /** True when re-adopting a guest after a vmd restart (no fresh boot output to expect). */
  readonly adopted: boolean;
}

// ---- parent -> vmm ----
export type ParentToVmm =
  /** Sent again after a reload: `metrics` is where vmm serves the metrics endpoint (vmd/vmm/metrics.ts), or null. */
  | { readonly type: 'vmm.config'; readonly verbose: number; readonly stopTimeoutMs: number; readonly metrics: MetricsListen | null }
  /** The parent's part of a metrics scrape, answering vmm.metrics.request `req`. */
  | { readonly type: 'vmm.metrics.data'; readonly req: number; readonly vms: readonly VmInfo[]; readonly links: readonly LinkInfo[]; readonly firewall: readonly FirewallInfo[] }
  | { readonly type: 'vm.adopt'; readonly req: number; readonly guest: GuestHandle }
  | { readonly type: 'vm.stop'; readonly req: number; readonly vmId: number; readonly force: boolean }
  | { readonly type: 'vm.pause'; readonly req: number; readonly vmId: number }
  | { readonly type: 'vm.unpause'; readonly req: number; readonly vmId: number }
  /** A snapshot of a running guest over QMP (vmd/vmm/snapshot.ts): RAM and every disk, or revert to or delete one. */
  | { readonly type: 'vm.snapshot'; readonly req: number; readonly vmId: number; readonly op: 'create' | 'revert' | 'delete'; readonly name: string }
  /** Carries the client socket as the IPC handle; vmm answers the client itself from here on. */
  /** `vmctl grow` of a running guest's disk `disk` (its index) to `size` bytes (vmd/vmm/grow.ts); never shrinks. */
  | { readonly type: 'vm.grow'; readonly req: number; readonly vmId: number; readonly disk: number; readonly size: number }
  | { readonly type: 'vm.console.attach'; readonly vmId: number; readonly name: string; readonly reqId: number; readonly remainder: string }
  | { readonly type: 'vm.forget'; readonly vmId: number }
  | { readonly type: 'log.verbose'; readonly level: number }
  /**
   * `vmctl send`, with the client socket as the IPC handle: vmm writes `response`, then `header` (base64), pauses the
   * guest, streams its migration, stops it; the vm.result comes once the guest is gone (or, on failure, resumed).
   */
  | { readonly type: 'vm.send'; readonly req: number; readonly vmId: number; readonly response: ControlResponse; readonly header: string }
  /**
   * `vmctl receive`, with the client socket as the handle: vmm asks the guest's QEMU (started with -incoming defer)
   * for the migration, writes `response` (ready), relays the stream's body and resumes the guest. The vm.result
   * says how it went; the client's final reply follows as vm.stream.reply once the parent has cleaned up or not.
   */
  | { readonly type: 'vm.receive'; readonly req: number; readonly vmId: number; readonly response: ControlResponse; readonly remainder: string; readonly live?: boolean; readonly copyStorage?: boolean;
      /** A live receive: the directory whose keys.psk (the parent's, QEMU's user's) authenticates the source. */
      readonly tlsDir?: string }
  /**
   * `vmctl migrate`'s source, with the client socket as the handle: vmm writes `response` (ready, with the config),
   * migrates the running guest where the client says and quits it on the client's commit (vmd/vmm/migrate.ts).
   */
  | { readonly type: 'vm.migrate'; readonly req: number; readonly vmId: number; readonly response: ControlResponse; readonly remainder: string; readonly downtimeMs: number; readonly copyStorage?: boolean;
      /** The directory whose keys.psk (written by the parent for QEMU's user) encrypts the streams to the target. */
      readonly tlsDir: string }
  /** The last frame of a receive connection vmm holds; vmm writes it and closes the connection. */
  | { readonly type: 'vm.stream.reply'; readonly vmId: number; readonly response: ControlResponse }
  /** A migrated guest's firewall counters, answering vm.counters.request (empty when they could not be read). */
  | { readonly type: 'vm.counters.data'; readonly vmId: number; readonly counters: readonly CarriedCount[] };

// ---- vmm -> parent ----
export type VmmToParent =
  | { readonly type: 'vmm.ready' }
  | { readonly type: 'vm.result'; readonly req: number; readonly error: VmdErrorData | null; readonly state?: VmState }
  /** The guest's QEMU is gone; reason from QMP's SHUTDOWN event when there was one. */
  | { readonly type: 'vm.exited'; readonly vmId: number; readonly pid: number; readonly reason: string }
  | { readonly type: 'vm.state'; readonly vmId: number; readonly state: VmState }
  /** A metrics scrape needs the parent's part (VMs, links, firewall counters): answered with vmm.metrics.data. */
  | { readonly type: 'vmm.metrics.request'; readonly req: number }
  /** A migration's source guest stopped for the last pass: the counters that move with it, answered with vm.counters.data. */
  | { readonly type: 'vm.counters.request'; readonly vmId: number }
  /** A migration's target runs the guest: the source's counters, to be added to its own (vmd/net/carry.ts). */
  | { readonly type: 'vm.counters.carry'; readonly vmId: number; readonly counters: readonly CarriedCount[] };

// ---- control -> parent ----
export type ControlToParent =
  | { readonly type: 'control.ready' }
  | { readonly type: 'control.request'; readonly peer: number; readonly uid: number; readonly gid: number; readonly request: ControlRequest }
  /** A console request; the client socket travels as the IPC handle. */
  | { readonly type: 'control.console'; readonly peer: number; readonly uid: number; readonly gid: number; readonly request: ControlRequest; readonly remainder: string }
  /** A capture request; the client socket travels as the IPC handle and carries the pcap stream after the reply. */
  | { readonly type: 'control.capture'; readonly peer: number; readonly uid: number; readonly gid: number; readonly request: ControlRequest }
  | { readonly type: 'control.closed'; readonly peer: number }
  /** A send or receive request; the client socket travels as the IPC handle, bytes read past the request in remainder. */
  | { readonly type: 'control.stream'; readonly peer: number; readonly uid: number; readonly gid: number; readonly request: ControlRequest; readonly remainder: string };

// ---- parent -> control ----
export type ParentToControl =
  /** socketOwnerUid: `socket owner` of vm.conf, served like root while others flood the socket (vmd/control/limits.ts). */
  | { readonly type: 'control.config'; readonly verbose: number; readonly socketOwnerUid?: number }
  /** A client connection the parent's copy of the listening socket accepted; it travels as the IPC handle. */
  /** peer: the parent's id for the connection; uid and gid: the kernel's for its client (SO_PEERCRED at accept). */
  | { readonly type: 'control.connection'; readonly peer: number; readonly uid: number; readonly gid: number }
  | { readonly type: 'control.response'; readonly peer: number; readonly response: ControlResponse; readonly close: boolean }
  /** The status listing control answers from (vmd/status.ts): every VM in id order, curmem null; sent on each change. */
  | { readonly type: 'control.status'; readonly vms: readonly VmInfo[]; readonly warnings: readonly string[] }
  /** A lifecycle event for control to hand its `vmctl events` subscribers (vmd/control/events.ts). */
  | { readonly type: 'control.event'; readonly event: VmEvent }
  /** `vmctl display`: the guest's VNC socket, connected by the parent, travels as the IPC handle; control relays it. */
  | { readonly type: 'control.display'; readonly peer: number; readonly response: ControlResponse }
  | { readonly type: 'log.verbose'; readonly level: number };

// ---- parent -> roles: the parent is trusted, so a role checks only the type ----

const PARENT_TO_VMM = new Set(['vmm.config', 'vmm.metrics.data', 'vm.snapshot', 'vm.grow', 'vm.adopt', 'vm.stop', 'vm.pause', 'vm.unpause', 'vm.console.attach', 'vm.forget', 'log.verbose', 'vm.send', 'vm.receive', 'vm.migrate', 'vm.stream.reply', 'vm.counters.data']);
const PARENT_TO_CONTROL = new Set(['control.config', 'control.connection', 'control.response', 'control.status', 'control.event', 'control.display', 'log.verbose']);

function typed(set: Set<string>, msg: unknown): boolean {
  return typeof msg === 'object' && msg !== null && typeof (msg as { type?: unknown }).type === 'string' && set.has((msg as { type: string }).type);
}

/** A role's reader of the parent's messages: an unknown type is a bug in vmd, so the role exits on false. */
export const isParentToVmm = (m: unknown): m is ParentToVmm => typed(PARENT_TO_VMM, m);
export const isParentToControl = (m: unknown): m is ParentToControl => typed(PARENT_TO_CONTROL, m);

// ---- roles -> parent: every field read, as for a socket client ----

/** Ids vmd hands out and counts up from 1 (vmm request numbers, control's peers): any safe integer past 0. */
const MAX_COUNTER = Number.MAX_SAFE_INTEGER;
/** VM ids, as in a status row. */
const MAX_VM_ID = 2 ** 31 - 1;
/** uid_t and gid_t; 2^32 - 1 is (uid_t)-1, "no id", never a peer's. */
const MAX_UID = 2 ** 32 - 2;
/** Linux's PID_MAX_LIMIT. */
const MAX_PID = 2 ** 22;
/**
 * Bytes a client sent past its console or stream request, which control read in the same socket read (at most
 * 64 KiB); bounded by one request frame, far above that.
 */
const MAX_REMAINDER_BYTES = DEFAULT_MAX_FRAME_BYTES;
/** Error text from vmm may quote QEMU; bounded so a role cannot make root hold or log megabytes. */
const MAX_ERROR_MESSAGE = 64 * 1024;
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** QEMU's ShutdownCause names (guest-reset, host-qmp-quit, ...) and vmm's own (killed, sent, replaced, forgotten). */
const EXIT_REASON_RE = /^[a-z][a-z0-9-]{0,63}$/;
/** Requests whose client socket travels with them: each has its own message, never control.request. */
const HANDLE_REQUESTS: ReadonlySet<RequestType> = new Set(['vm.console.request', 'vm.capture.request', 'vm.send.request', 'vm.receive.request', 'vm.migrate.request']);

type MessageReaders<T> = Record<string, { readonly keys: readonly string[]; readonly read: (o: Obj, what: string) => T }>;

/** Picks the reader for the message's type and refuses any key it does not list. */
function readMessage<T>(readers: MessageReaders<T>, msg: unknown, channel: string): T {
  if (!isObj(msg)) throw new ProtocolError(`${channel}: message must be an object`);
  const type = msg.type;
  if (typeof type !== 'string' || !Object.hasOwn(readers, type)) {
    throw new ProtocolError(typeof type === 'string' ? `${channel}: unknown type "${type.slice(0, 64)}"` : `${channel}: field "type" must be a string`);
  }
  const reader = readers[type]!;
  onlyKeys(msg, ['type', ...reader.keys], type);
  return reader.read(msg, type);
}

function readError(o: Obj, what: string): VmdErrorData | null {
  const e = o.error;
  if (e === null) return null;
  const w = `${what} error`;
  if (!isObj(e)) throw new ProtocolError(`${what}: field "error" must be an object or null`);
  onlyKeys(e, ['code', 'message', 'hint'], w);
  if (!isErrorCode(e.code)) throw new ProtocolError(`${w}: field "code" must be an error code`);
  // Not the kit's str: an error may have an empty message (new Error()), which is not worth killing vmm over.
  if (typeof e.message !== 'string' || e.message.length > MAX_ERROR_MESSAGE) {
    throw new ProtocolError(`${w}: field "message" must be a string of at most ${MAX_ERROR_MESSAGE} characters`);
  }
  const hint = optStr(e, 'hint', MAX_STRING, w);
  return hint === undefined ? { code: e.code, message: e.message } : { code: e.code, message: e.message, hint };
}

const vmId = (o: Obj, what: string): number => int(o, 'vmId', 1, MAX_VM_ID, what);

const VMM_READERS: MessageReaders<VmmToParent> = {
  'vmm.ready': { keys: [], read: () => ({ type: 'vmm.ready' }) },
  'vm.result': {
    keys: ['req', 'error', 'state'],
    read: (o, w) => {
      const req = int(o, 'req', 1, MAX_COUNTER, w);
      const error = readError(o, w);
      return o.state === undefined ? { type: 'vm.result', req, error } : { type: 'vm.result', req, error, state: oneOf(o, 'state', VM_STATES, w) };
    },
  },
  'vm.exited': {
    keys: ['vmId', 'pid', 'reason'],
    read: (o, w) => {
      const reason = o.reason;
      if (typeof reason !== 'string' || !EXIT_REASON_RE.test(reason)) {
        throw new ProtocolError(`${w}: field "reason" must be a word of at most 64 lowercase letters, digits and dashes`);
      }
      return { type: 'vm.exited', vmId: vmId(o, w), pid: int(o, 'pid', 1, MAX_PID, w), reason };
    },
  },
  'vm.state': { keys: ['vmId', 'state'], read: (o, w) => ({ type: 'vm.state', vmId: vmId(o, w), state: oneOf(o, 'state', VM_STATES, w) }) },
  'vmm.metrics.request': { keys: ['req'], read: (o, w) => ({ type: 'vmm.metrics.request', req: int(o, 'req', 1, MAX_COUNTER, w) }) },
  'vm.counters.request': { keys: ['vmId'], read: (o, w) => ({ type: 'vm.counters.request', vmId: vmId(o, w) }) },
  'vm.counters.carry': { keys: ['vmId', 'counters'], read: (o, w) => ({ type: 'vm.counters.carry', vmId: vmId(o, w), counters: readCarriedCounts(o.counters, w) }) },
};

/** Who a forwarded request is from, as control learnt it from the kernel. */
function readPeer(o: Obj, what: string): { peer: number; uid: number; gid: number } {
  return { peer: int(o, 'peer', 1, MAX_COUNTER, what), uid: int(o, 'uid', 0, MAX_UID, what), gid: int(o, 'gid', 0, MAX_UID, what) };
}

/**
 * A client request control forwards, read again with the socket's own reader; `types`: the request types this message
 * may carry (null: any that travels without a socket). A request control's gate should have refused is refused too.
 */
function readForwarded(o: Obj, what: string, uid: number, types: readonly RequestType[] | null): ControlRequest {
  let request: ControlRequest;
  try {
    request = readRequest(o.request);
  } catch (err) {
    if (err instanceof ProtocolError) throw new ProtocolError(`${what} request: ${err.message}`);
    throw err;
  }
  if (types === null ? HANDLE_REQUESTS.has(request.type) : !types.includes(request.type)) {
    throw new ProtocolError(`${what}: field "request" must not be a ${request.type}`);
  }
  if (uid !== 0 && !UNPRIVILEGED_REQUESTS.has(request.type)) {
    throw new ProtocolError(`${what}: field "request" is a ${request.type}, which uid ${uid} may not send`);
  }
  return request;
}

function readRemainder(o: Obj, what: string): string {
  const r = o.remainder;
  if (typeof r !== 'string' || r.length > Math.ceil(MAX_REMAINDER_BYTES / 3) * 4 || !BASE64_RE.test(r)) {
    throw new ProtocolError(`${what}: field "remainder" must be base64 of at most ${MAX_REMAINDER_BYTES} bytes`);
  }
  return r;
}

const FORWARD_KEYS = ['peer', 'uid', 'gid', 'request'] as const;

const CONTROL_READERS: MessageReaders<ControlToParent> = {
  'control.ready': { keys: [], read: () => ({ type: 'control.ready' }) },
  'control.closed': { keys: ['peer'], read: (o, w) => ({ type: 'control.closed', peer: int(o, 'peer', 1, MAX_COUNTER, w) }) },
  'control.request': {
    keys: FORWARD_KEYS,
    read: (o, w) => {
      const p = readPeer(o, w);
      return { type: 'control.request', ...p, request: readForwarded(o, w, p.uid, null) };
    },
  },
  'control.console': {
    keys: [...FORWARD_KEYS, 'remainder'],
    read: (o, w) => {
      const p = readPeer(o, w);
      return { type: 'control.console', ...p, request: readForwarded(o, w, p.uid, ['vm.console.request']), remainder: readRemainder(o, w) };
    },
  },
  'control.capture': {
    keys: FORWARD_KEYS,
    read: (o, w) => {
      const p = readPeer(o, w);
      return { type: 'control.capture', ...p, request: readForwarded(o, w, p.uid, ['vm.capture.request']) };
    },
  },
  'control.stream': {
    keys: [...FORWARD_KEYS, 'remainder'],
    read: (o, w) => {
      const p = readPeer(o, w);
      return { type: 'control.stream', ...p, request: readForwarded(o, w, p.uid, ['vm.send.request', 'vm.receive.request', 'vm.migrate.request']), remainder: readRemainder(o, w) };
    },
  },
};

/** Reads a message vmm sent the root parent; throws ProtocolError naming the field, and the parent kills vmm. */
export function readVmmToParent(msg: unknown): VmmToParent {
  return readMessage(VMM_READERS, msg, 'vmm message');
}

/** Reads a message control sent the root parent; throws ProtocolError naming the field, and the parent kills control. */
export function readControlToParent(msg: unknown): ControlToParent {
  return readMessage(CONTROL_READERS, msg, 'control message');
}
