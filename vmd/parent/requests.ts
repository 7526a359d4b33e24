// The parent's handling of the requests control forwards (vmctl's commands), one function per request type.
// Control has checked the request's shape and the peer's uid; what a user may do to a VM is decided here.

import { VmdError, toVmdError } from '../../share/errors.js';
import type { ControlRequest, ControlResponse } from '../../share/protocol.js';
import { logSetVerbose } from '../log.js';
import { groupsOf, vmPermitted } from './access.js';
import { configLoadFile, configReload, configReset } from './config.js';
import type { Parent } from './context.js';
import { vmStart } from './launch.js';
import { untilStarted } from './lifecycle.js';
import { passtLinksInfo } from './passt.js';
import type { Entry } from './registry.js';
import { vmFromOptions } from './vm-config.js';

type Req<T extends ControlRequest['type']> = Extract<ControlRequest, { type: T }>;

/** Who asked: the peer connection control answers on, and the uid and gid the kernel reported for it. */
export interface Asker {
  readonly peer: number;
  readonly uid: number;
  readonly gid: number;
}

/** A reply to a client; the status listing goes first, so a client never sees a listing older than a reply. */
export function respond(p: Parent, peer: number, response: ControlResponse): void {
  p.vms.flush();
  p.roles.control?.send({ type: 'control.response', peer, response, close: false });
}

export function respondError(p: Parent, peer: number, id: number, err: unknown): void {
  respond(p, peer, { type: 'error', id, error: toVmdError(err).toJSON() });
}

/** The VM named by target, if the asker may act on it. */
export function vmPermittedGet(p: Parent, target: string, who: Asker, what?: string): Entry {
  const e = p.vms.require(target);
  if (!vmPermitted(e, who.uid, who.gid)) throw new VmdError('ERR_PERMISSION', `vm "${e.record.name}": ${what === undefined ? '' : `${what}: `}permission denied`);
  return e;
}

/** `vmctl start NAME [options]`: an existing VM by name, or a new one (root, or an instance `allow instance` permits). */
export async function vmStartRequest(p: Parent, who: Asker, req: Req<'vm.start.request'>): Promise<void> {
  const o = req.options;
  const creating = Object.keys(o).some((k) => k !== 'boot' && k !== 'bootDevice') || o.instanceOf !== undefined;
  const existing = p.vms.lookup(req.target);
  if (existing !== undefined) {
    // OpenBSD: options other than -b on an existing VM are EALREADY.
    if (creating) throw new VmdError('ERR_VM_EXISTS', `vm "${existing.record.name}": already exists`, { hint: 'options apply only when creating a vm; start it by name alone' });
    if (!vmPermitted(existing, who.uid, who.gid)) throw new VmdError('ERR_PERMISSION', `vm "${existing.record.name}": permission denied`);
    await vmStart(p, existing, who.uid, o.bootDevice === undefined ? {} : { bootOnce: o.bootDevice });
    respond(p, who.peer, { type: 'vm.start.response', id: req.id, vm: p.vms.info(existing), warnings: [] });
    return;
  }
  if (/^\d+$/.test(req.target)) throw new VmdError('ERR_VM_NOT_FOUND', `vm ${req.target}: not found`);
  // OpenBSD: a non-root user may only start existing VMs or create instances that `allow instance` permits.
  if (who.uid !== 0 && o.instanceOf === undefined) {
    throw new VmdError('ERR_PERMISSION', `vm "${req.target}": only root may create new vms`, { hint: 'ask for an instance of a vm that allows it: vmctl start -t PARENT NAME' });
  }
  const { vm, warnings, origin } = vmFromOptions(
    req.target, o, who.uid, (n) => p.vms.byName(n)?.record.config, (g) => g === who.gid || groupsOf(who.uid, who.gid).includes(g),
  );
  const known = p.db.vmIdOf(vm.name);
  const e = p.vms.add({ id: p.db.vmClaimId(vm.name), name: vm.name, origin, config: vm, ownerUid: who.uid, ownerGid: null });
  try {
    // -B applies to this boot only, as for an existing VM: the guest's reboot then boots its disk (launch.ts).
    await vmStart(p, e, who.uid, o.bootDevice === undefined ? {} : { bootOnce: o.bootDevice });
  } catch (err) {
    // A VM made by this request and not started is forgotten again (OpenBSD removes it), and so is its new id.
    p.vms.remove(e.record.id);
    if (known === undefined) p.db.vmUnclaimId(vm.name, e.record.id);
    throw err;
  }
  respond(p, who.peer, { type: 'vm.start.response', id: req.id, vm: p.vms.info(e), warnings });
}

/** `vmctl stop [-fw] NAME`: ACPI power-down through vmm (or a kill with -f); -w answers once the guest is gone. */
export async function vmStopRequest(p: Parent, who: Asker, req: Req<'vm.stop.request'>): Promise<void> {
  const e = vmPermittedGet(p, req.target, who);
  // `vmctl start x; vmctl stop x`: a start still in progress finishes first, then the stop applies.
  await untilStarted(e, 30_000);
  if (e.runtime === null || e.state === 'starting') throw new VmdError('ERR_VM_NOT_RUNNING', `vm "${e.record.name}": not running`);
  if (e.state === 'stopping' && !req.force) throw new VmdError('ERR_VM_STOPPING', `vm "${e.record.name}": already stopping`);
  e.stopRequested = true;
  await p.roles.vmmCall((r) => ({ type: 'vm.stop', req: r, vmId: e.record.id, force: req.force }), { forVm: e.record.id });
  if (e.runtime !== null) p.vms.setState(e, 'stopping');
  if (req.wait && e.runtime !== null) e.waiters.push({ peer: who.peer, reqId: req.id, kind: 'stop' });
  else respond(p, who.peer, { type: 'vm.stop.response', id: req.id, vmId: e.record.id, name: e.record.name, result: req.wait ? 'terminated' : 'requested' });
}

/** `vmctl wait NAME`: answered when the guest stops (lifecycle.ts guestStopped). */
export function vmWaitRequest(p: Parent, who: Asker, req: Req<'vm.wait.request'>): void {
  const e = vmPermittedGet(p, req.target, who);
  if (e.runtime === null) throw new VmdError('ERR_VM_NOT_RUNNING', `vm "${e.record.name}": not running`);
  e.waiters.push({ peer: who.peer, reqId: req.id, kind: 'wait' });
}

/** `vmctl pause|unpause NAME`. */
export async function vmPauseRequest(p: Parent, who: Asker, req: Req<'vm.pause.request' | 'vm.unpause.request'>): Promise<void> {
  const e = vmPermittedGet(p, req.target, who);
  if (e.runtime === null || e.state === 'starting') throw new VmdError('ERR_VM_NOT_RUNNING', `vm "${e.record.name}": not running`);
  const pause = req.type === 'vm.pause.request';
  if (pause && e.state === 'paused') throw new VmdError('ERR_VM_PAUSED', `vm "${e.record.name}": already paused`);
  if (!pause && e.state !== 'paused') throw new VmdError('ERR_VM_NOT_PAUSED', `vm "${e.record.name}": not paused`);
  const res = await p.roles.vmmCall((r) => ({ type: pause ? 'vm.pause' : 'vm.unpause', req: r, vmId: e.record.id }), { forVm: e.record.id });
  p.vms.setState(e, (res.state ?? (pause ? 'paused' : 'running')) === 'paused' ? 'paused' : 'running');
  respond(p, who.peer, { type: pause ? 'vm.pause.response' : 'vm.unpause.response', id: req.id, vmId: e.record.id, name: e.record.name });
}

/** `vmctl load|reload|reset`. */
export async function configRequest(p: Parent, who: Asker, req: Req<'config.load.request' | 'config.reload.request' | 'config.reset.request'>): Promise<void> {
  if (req.type === 'config.load.request') configLoadFile(p, req.path);
  else if (req.type === 'config.reload.request') await configReload(p);
  else await configReset(p, req.mode);
  respond(p, who.peer, { type: 'ok.response', id: req.id });
}

/** `vmctl log verbose|brief`: every role's logging at once. */
export function logVerboseRequest(p: Parent, who: Asker, req: Req<'log.verbose.request'>): void {
  logSetVerbose(req.level);
  p.roles.vmm?.send({ type: 'log.verbose', level: req.level });
  p.roles.control?.send({ type: 'log.verbose', level: req.level });
  respond(p, who.peer, { type: 'ok.response', id: req.id });
}

/** `vmctl links [NAME]`. */
export async function vmLinksRequest(p: Parent, who: Asker, req: Req<'vm.links.request'>): Promise<void> {
  const filter = (id: number, name: string): boolean => req.target === undefined || String(id) === req.target || name === req.target;
  const links = [...await p.network.linksInfo(filter), ...await passtLinksInfo(p, filter)];
  respond(p, who.peer, { type: 'vm.links.response', id: req.id, links });
}

/** `vmctl firewall NAME [IF]`: the compiled rules of a VM's links with their counters. */
export async function vmFirewallRequest(p: Parent, who: Asker, req: Req<'vm.firewall.request'>): Promise<void> {
  const e = vmPermittedGet(p, req.target, who);
  const nics = e.record.config.interfaces;
  if (req.index !== undefined && !nics.some((n) => n.index === req.index)) {
    throw new VmdError('ERR_INVALID', `vm "${e.record.name}": interface ${req.index}: no such interface`, {
      hint: nics.length === 0 ? 'the vm has no interfaces' : `interfaces are numbered 0 to ${nics.length - 1}`,
    });
  }
  const interfaces = await p.network.firewallInfo(e.record.id, e.record.config, req.index);
  respond(p, who.peer, { type: 'vm.firewall.response', id: req.id, interfaces });
}
