// The part of the reply reader (read-response.ts) a listing needs: a reply's head, VM rows, a status reply and an
// error. Apart so that `vmctl status`, whose run is mostly vmctl's start-up, loads none of the other replies' readers.

import { isErrorCode } from './errors.js';
import { MAX_NAME, MAX_PATH, ProtocolError, VM_STATES, type ControlResponse, type VmInfo } from './protocol.js';
import { array, int, isObj, oneOf, str, type Obj } from './read.js';

/** A reply's type and id, checked: every reply has both. */
export function replyHead(msg: unknown): { obj: Obj & { type: string }; id: number } {
  if (!isObj(msg) || typeof msg.type !== 'string') throw new ProtocolError('reply: not a message');
  return { obj: msg as Obj & { type: string }, id: int(msg, 'id', 0, 2 ** 31 - 1, 'reply') };
}

/** A reply's list of strings (warnings), empty when absent. */
export function replyStrings(msg: Obj, k: string): string[] {
  const a = array(msg, k, 10_000, 'reply') ?? [];
  // Strings only: String() of a JSON object such as {"toString": 1} throws a TypeError, not a ProtocolError.
  return a.map((s) => {
    if (typeof s !== 'string') throw new ProtocolError(`reply: field "${k}" must be a list of strings`);
    return s;
  });
}

const VM_INFO = 'vm info';
const nullableInt = (v: Obj, k: string): number | null => (v[k] === null ? null : int(v, k, 0, 2 ** 53 - 1, VM_INFO));
const nullableStr = (v: Obj, k: string): string | null => (v[k] === null ? null : str(v, k, MAX_PATH, VM_INFO));

export function readVmInfo(v: unknown): VmInfo {
  if (!isObj(v)) throw new ProtocolError('vm info: must be an object');
  const w = VM_INFO;
  return {
    id: int(v, 'id', 1, 2 ** 31 - 1, w),
    name: str(v, 'name', MAX_NAME, w),
    pid: nullableInt(v, 'pid'),
    vcpus: int(v, 'vcpus', 1, 1024, w),
    maxmem: int(v, 'maxmem', 0, 2 ** 53 - 1, w),
    curmem: nullableInt(v, 'curmem'),
    tty: nullableStr(v, 'tty'),
    owner: str(v, 'owner', 64, w),
    uid: int(v, 'uid', 0, 2 ** 32 - 1, w),
    gid: nullableInt(v, 'gid'),
    state: oneOf(v, 'state', VM_STATES, w),
    started: nullableStr(v, 'started'),
    origin: oneOf(v, 'origin', ['config', 'adhoc', 'load', 'instance'] as const, w),
    ...(v.failure === undefined ? {} : { failure: str(v, 'failure', 4096, w) }),
  };
}

/** `vm.status.response`: every VM row checked. */
export function readStatusReply(msg: Obj, id: number): ControlResponse {
  const vms = array(msg, 'vms', 1_000_000, 'reply') ?? [];
  return { type: 'vm.status.response', id, vms: vms.map(readVmInfo), warnings: replyStrings(msg, 'warnings') };
}

/** `error`: a known code and a message, and a hint when there is one. */
export function readErrorReply(msg: Obj, id: number): ControlResponse {
  const e = msg.error;
  if (!isObj(e) || !isErrorCode(e.code) || typeof e.message !== 'string') throw new ProtocolError('reply: bad error');
  const hint = typeof e.hint === 'string' ? e.hint : undefined;
  return { type: 'error', id, error: hint === undefined ? { code: e.code, message: e.message } : { code: e.code, message: e.message, hint } };
}

/**
 * The reader of a status request's reply, as readResponse reads it: a status reply or an error. Any other type
 * is refused here, where readResponse would read it and the command refuse it: either way vmctl says the reply
 * was unexpected.
 */
export function readListingResponse(msg: unknown): ControlResponse {
  const { obj, id } = replyHead(msg);
  if (obj.type === 'vm.status.response') return readStatusReply(obj, id);
  if (obj.type === 'error') return readErrorReply(obj, id);
  throw new ProtocolError(`reply: unexpected type "${obj.type.slice(0, 64)}" for a listing`);
}
