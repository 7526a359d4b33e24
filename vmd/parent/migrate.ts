// `vmctl migrate`'s source side in the parent: checks and records; vmm drives QEMU's migration and the client's
// frames (vmd/vmm/migrate.ts). The target side is a live `receive` (transfer.ts), made before anything moves.

import type { Socket } from 'node:net';
import { VmdError, toVmdError } from '../../share/errors.js';
import { DEFAULT_DOWNTIME_MS } from '../../share/migrate.js';
import type { ControlRequest } from '../../share/protocol.js';
import { logInfo, logWarn } from '../log.js';
import type { Parent } from './context.js';
import { migrateKeyRemove, migrateKeyWrite } from './migrate-tls.js';
import { vmPermittedGet } from './requests.js';
import { streamConfigOf } from './vm-config.js';

/** A migration waits on the client between its steps, maybe for a slow target: bounded only against a silent vmm. */
const MIGRATE_TIMEOUT_MS = 24 * 3600_000;

/**
 * `vmctl migrate VM HOST` at the source: the guest keeps running until the target holds its state; it then quits
 * here (its links, rules and leases go as after any exit) or, on the client's abort or loss, resumes.
 */
export function migrateStart(p: Parent, who: { uid: number; gid: number }, req: Extract<ControlRequest, { type: 'vm.migrate.request' }>, remainder: string, socket: Socket): void {
  const e = vmPermittedGet(p, req.target, { peer: 0, ...who }, 'migrate');
  if (e.runtime === null || e.state !== 'running') {
    throw new VmdError('ERR_VM_NOT_RUNNING', `vm "${e.record.name}": not running`, { hint: 'only a running guest migrates; send a paused one' });
  }
  if (p.transfers.has(e.record.id)) throw new VmdError('ERR_INVALID', `vm "${e.record.name}": already being sent or migrated`);
  const id = e.record.id;
  const config = streamConfigOf(id, e.record.config);
  const tlsDir = migrateKeyWrite(p, id, req.tlsKey);
  p.transfers.add(id);
  p.roles.vmmCall((r) => ({
    type: 'vm.migrate', req: r, vmId: id, remainder, downtimeMs: req.downtimeMs ?? DEFAULT_DOWNTIME_MS, copyStorage: req.copyStorage === true, tlsDir,
    response: { type: 'vm.migrate.response', id: req.id, vmId: id, name: e.record.name, phase: 'ready', config },
  }), { timeoutMs: MIGRATE_TIMEOUT_MS, handle: socket, forVm: id }).then(
    () => {
      logInfo(`vm "${e.record.name}" (vm ${id}) migrated`);
      p.events.vm(e, 'sent', { reason: 'migrated' });
    },
    (err: unknown) => logWarn(`vm "${e.record.name}": migration failed, the guest stays: ${toVmdError(err).message}`),
  ).finally(() => {
    migrateKeyRemove(tlsDir);
    p.transfers.delete(id);
  });
}
