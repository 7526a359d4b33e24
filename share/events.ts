// Lifecycle events as `vmctl events` streams them: the event object both sides share, its reader and its one-line form.
// An event says what happened to a VM (or to the configuration) and when, in the words `vmctl events` prints.

import { MAX_NAME, MAX_STRING, ProtocolError, VM_EVENT_KINDS, type VmEvent } from './protocol.js';
import { int, isObj, oneOf, onlyKeys, optStr, str } from './read.js';

/** The longest reason carried: a start failure quotes QEMU's last log lines, which are bounded the same way. */
export const MAX_EVENT_REASON = MAX_STRING;

const ISO_RE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z$/;

/** Reads an event off the socket (vmctl's side): every field checked, unknown ones refused. */
export function readVmEvent(v: unknown): VmEvent {
  const w = 'vm.event event';
  if (!isObj(v)) throw new ProtocolError(`${w}: must be an object`);
  onlyKeys(v, ['time', 'event', 'vmId', 'vm', 'reason', 'link'], w);
  const time = str(v, 'time', 64, w);
  if (!ISO_RE.test(time)) throw new ProtocolError(`${w}: field "time" must be an ISO time`);
  const event = oneOf(v, 'event', VM_EVENT_KINDS, w);
  const vmId = v.vmId === null ? null : int(v, 'vmId', 1, 2 ** 31 - 1, w);
  const vm = v.vm === null ? null : str(v, 'vm', MAX_NAME, w);
  const reason = optStr(v, 'reason', MAX_EVENT_REASON, w);
  const link = optStr(v, 'link', 15, w);
  return { time, event, vmId, vm, ...(reason === undefined ? {} : { reason }), ...(link === undefined ? {} : { link }) };
}

/** The line `vmctl events` prints: `TIME EVENT vm ID NAME[ link L][: REASON]`, one event per line. */
export function formatVmEvent(e: VmEvent): string {
  const who = e.vmId === null ? '' : ` vm ${e.vmId} ${e.vm ?? '-'}`;
  const link = e.link === undefined ? '' : ` link ${e.link}`;
  // A reason may quote several lines of QEMU's log: one event stays one line.
  const reason = e.reason === undefined ? '' : `: ${e.reason.replace(/\s*\n\s*/g, ' / ')}`;
  return `${e.time} ${e.event}${who}${link}${reason}`;
}

/** Whether an event is for a `vmctl events [id]` target: an id or a name; no target takes every event. */
export function eventMatches(e: VmEvent, target: string | undefined): boolean {
  if (target === undefined) return true;
  return e.vmId !== null && (String(e.vmId) === target || e.vm === target);
}
