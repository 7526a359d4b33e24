// Messages between vmd's own processes (parent <-> vmm, parent <-> control), declared once.
// They travel over Node's IPC channel; a role that receives a malformed one treats its sibling as broken.

import type { VmdErrorData } from './errors.js';
import type { ControlRequest, ControlResponse, VmInfo, VmState } from './protocol.js';

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
  | { readonly type: 'vmm.config'; readonly verbose: number; readonly stopTimeoutMs: number }
  | { readonly type: 'vm.adopt'; readonly req: number; readonly guest: GuestHandle }
  | { readonly type: 'vm.stop'; readonly req: number; readonly vmId: number; readonly force: boolean }
  | { readonly type: 'vm.pause'; readonly req: number; readonly vmId: number }
  | { readonly type: 'vm.unpause'; readonly req: number; readonly vmId: number }
  /** Carries the client socket as the IPC handle; vmm answers the client itself from here on. */
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
  | { readonly type: 'vm.receive'; readonly req: number; readonly vmId: number; readonly response: ControlResponse; readonly remainder: string }
  /** The last frame of a receive connection vmm holds; vmm writes it and closes the connection. */
  | { readonly type: 'vm.stream.reply'; readonly vmId: number; readonly response: ControlResponse };

// ---- vmm -> parent ----
export type VmmToParent =
  | { readonly type: 'vmm.ready' }
  | { readonly type: 'vm.result'; readonly req: number; readonly error: VmdErrorData | null; readonly state?: VmState }
  /** The guest's QEMU is gone; reason from QMP's SHUTDOWN event when there was one. */
  | { readonly type: 'vm.exited'; readonly vmId: number; readonly pid: number; readonly reason: string }
  | { readonly type: 'vm.state'; readonly vmId: number; readonly state: VmState };

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
  | { readonly type: 'control.connection' }
  | { readonly type: 'control.response'; readonly peer: number; readonly response: ControlResponse; readonly close: boolean }
  /** The status listing control answers from (vmd/status.ts): every VM in id order, curmem null; sent on each change. */
  | { readonly type: 'control.status'; readonly vms: readonly VmInfo[]; readonly warnings: readonly string[] }
  | { readonly type: 'log.verbose'; readonly level: number };

const PARENT_TO_VMM = new Set(['vmm.config', 'vm.adopt', 'vm.stop', 'vm.pause', 'vm.unpause', 'vm.console.attach', 'vm.forget', 'log.verbose', 'vm.send', 'vm.receive', 'vm.stream.reply']);
const VMM_TO_PARENT = new Set(['vmm.ready', 'vm.result', 'vm.exited', 'vm.state']);
const CONTROL_TO_PARENT = new Set(['control.ready', 'control.request', 'control.console', 'control.capture', 'control.closed', 'control.stream']);
const PARENT_TO_CONTROL = new Set(['control.config', 'control.connection', 'control.response', 'control.status', 'log.verbose']);

function typed(set: Set<string>, msg: unknown): boolean {
  return typeof msg === 'object' && msg !== null && typeof (msg as { type?: unknown }).type === 'string' && set.has((msg as { type: string }).type);
}

/** Channel readers: a sibling sending an unknown message type is a bug in vmd, so callers treat false as fatal. */
export const isParentToVmm = (m: unknown): m is ParentToVmm => typed(PARENT_TO_VMM, m);
export const isVmmToParent = (m: unknown): m is VmmToParent => typed(VMM_TO_PARENT, m);
export const isControlToParent = (m: unknown): m is ControlToParent => typed(CONTROL_TO_PARENT, m);
export const isParentToControl = (m: unknown): m is ParentToControl => typed(PARENT_TO_CONTROL, m);
