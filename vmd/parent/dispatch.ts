// The parent's dispatchers: what control and vmm send it, each message type one call (OpenBSD's vmd_dispatch_*).
// Control's messages carry a client's request and the kernel's uid for it; vmm's report what its guests do.

import type { Socket } from 'node:net';
import { usersPrefetch } from '../../share/users.js';
import { logWarn } from '../log.js';
import { VmdError } from '../../share/errors.js';
import type { ControlToParent, VmmToParent } from '../../share/ipc.js';
import type { ControlRequest } from '../../share/protocol.js';
import type { Parent } from './context.js';
import { vmLaunching } from './launch.js';
import { vmDisplayRequest } from './display.js';
import { vmGrowRequest } from './grow.js';
import { vmInspectRequest, vmQemuLogRequest } from './inspect.js';
import { guestExited, guestsAdoptAgain } from './lifecycle.js';
import { metricsAnswer, vmmConfigSend } from './metrics.js';
import {
  configRequest, logVerboseRequest, respond, respondError, vmFirewallRequest, vmLinksRequest, vmPauseRequest,
  vmStartRequest, vmStopRequest, vmWaitRequest, type Asker,
} from './requests.js';
import { captureRequest, consoleRequest } from './sockets.js';
import { vmSnapshotRequest } from './snapshot.js';
import { streamRequest } from './transfer.js';
import { countsAnswer, countsCarry } from './migrate-counters.js';

/**
 * Messages from control. A client's request waits until its uid's user and groups are resolved asynchronously
 * (share/users.ts), so the permission checks it meets read them from the cache: a slow LDAP or SSSD server delays
 * that request, never the parent's event loop. Requests of one uid keep their order (they wait on one lookup).
 */
export function parentDispatchControl(p: Parent, msg: ControlToParent, handle: Socket | undefined): void {
  const waiting = resolving.get(p) ?? new Set<Promise<void>>();
  resolving.set(p, waiting);
  if ('uid' in msg) {
    const done: Promise<void> = usersPrefetch(msg.uid)
      .then(() => parentDispatchAsker(p, msg, handle), (err: unknown) => logWarn(`uid ${msg.uid}: ${String(err)}`))
      .finally(() => waiting.delete(done));
    waiting.add(done);
    return;
  }
  // A closed connection's requests still being resolved come first, so none of them is left waiting for nobody.
  if (msg.type === 'control.closed' && waiting.size > 0) {
    void Promise.allSettled([...waiting]).then(() => parentDispatchPlain(p, msg));
    return;
  }
  parentDispatchPlain(p, msg);
}

/** Requests still waiting for their uid's lookup, per parent. */
const resolving = new WeakMap<Parent, Set<Promise<void>>>();

/** Control's own messages: no client uid to resolve. */
function parentDispatchPlain(p: Parent, msg: Exclude<ControlToParent, { uid: number }>): void {
  switch (msg.type) {
    case 'control.ready':
      // A new control process has no listing yet: it forwards status requests here until this arrives.
      p.vms.republish();
      p.env.options.onReady?.();
      return;
    case 'control.closed':
      for (const e of p.vms.entries.values()) e.waiters = e.waiters.filter((w) => w.peer !== msg.peer);
      return;
  }
}

/** A message that carries a client's request and uid, once the uid is resolved. */
function parentDispatchAsker(p: Parent, msg: Extract<ControlToParent, { uid: number }>, handle: Socket | undefined): void {
  switch (msg.type) {
    case 'control.console':
      if (handle !== undefined) consoleRequest(p, msg, handle);
      return;
    case 'control.capture':
      if (handle !== undefined) captureRequest(p, msg, handle);
      return;
    case 'control.stream':
      if (handle !== undefined) streamRequest(p, msg, handle);
      return;
    case 'control.request':
      parentDispatchRequest(p, msg, msg.request).catch((err: unknown) => respondError(p, msg.peer, msg.request.id, err));
      return;
  }
}

/** One client request forwarded by control. */
async function parentDispatchRequest(p: Parent, who: Asker, req: ControlRequest): Promise<void> {
  switch (req.type) {
    case 'vm.status.request':
      return respond(p, who.peer, { type: 'vm.status.response', id: req.id, vms: p.vms.list(req.target, req.running), warnings: p.vms.warnings });
    case 'vm.start.request':
      return vmStartRequest(p, who, req);
    case 'vm.stop.request':
      return vmStopRequest(p, who, req);
    case 'vm.wait.request':
      return vmWaitRequest(p, who, req);
    case 'vm.pause.request':
    case 'vm.unpause.request':
      return vmPauseRequest(p, who, req);
    case 'config.load.request':
    case 'config.reload.request':
    case 'config.reset.request':
      return configRequest(p, who, req);
    case 'log.verbose.request':
      return logVerboseRequest(p, who, req);
    case 'vm.links.request':
      return vmLinksRequest(p, who, req);
    case 'vm.firewall.request':
      return vmFirewallRequest(p, who, req);
    case 'vm.log.request':
      return vmQemuLogRequest(p, who, req);
    case 'vm.inspect.request':
      return vmInspectRequest(p, who, req);
    case 'vm.snapshot.request':
      return vmSnapshotRequest(p, who, req);
    case 'vm.display.request':
      return vmDisplayRequest(p, who, req);
    case 'vm.grow.request':
      return vmGrowRequest(p, who, req);
    case 'vm.events.request':
      throw new VmdError('ERR_PROTOCOL', `${req.type}: answered by control`);
    case 'vm.console.request':
    case 'vm.capture.request':
    case 'vm.send.request':
    case 'vm.receive.request':
    case 'vm.migrate.request':
      throw new VmdError('ERR_PROTOCOL', `${req.type}: arrives with its socket`);
  }
}

/** Messages from vmm; `generation` counts vmm processes, so a restarted vmm is handed the running guests again. */
export function parentDispatchVmm(p: Parent, msg: VmmToParent, generation: number): void {
  switch (msg.type) {
    case 'vmm.ready':
      vmmConfigSend(p);
      p.roles.vmmStarted();
      // At daemon start the reconciliation does this, after it has told live guests from dead ones.
      if (generation > 1) guestsAdoptAgain(p);
      return;
    case 'vm.result':
      p.roles.vmmAnswered(msg.req, msg);
      return;
    case 'vm.exited':
      guestExited(p, msg.vmId, msg.pid, msg.reason);
      return;
    case 'vm.state': {
      const e = p.vms.entries.get(msg.vmId);
      // A guest being launched gets its state from the launch, once its display socket is sealed (launch.ts):
      // vmm's news of it before then would show `running` while the start is not done.
      if (e !== undefined && e.runtime !== null && !vmLaunching(e) && (msg.state === 'running' || msg.state === 'paused')) p.vms.trySetState(e, msg.state);
      return;
    }
    case 'vmm.metrics.request':
      void metricsAnswer(p, msg.req);
      return;
    case 'vm.counters.request':
      void countsAnswer(p, msg.vmId);
      return;
    case 'vm.counters.carry':
      countsCarry(p, msg.vmId, msg.counters);
      return;
  }
}
