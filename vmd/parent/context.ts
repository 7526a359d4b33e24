// The parent's parts and the facts they share, as one explicit object each module is handed.
// Each part owns its own state (the registry its VMs, the roles their channels, the queue its waiting ids).

import type { Config } from '../../share/config.js';
import type { Captures } from '../capture.js';
import type { StateDb } from '../db.js';
import type { Network } from '../network.js';
import type { ParentEvents } from './events.js';
import type { VmRegistry } from './registry.js';
import type { Roles } from './roles.js';
import type { ParentEnv } from './env.js';
import type { StaggerQueue } from './stagger.js';

export type { Identity, ParentEnv, ParentOptions } from './env.js';

/** The parent: its facts, its current configuration and its parts. */
export interface Parent {
  readonly env: ParentEnv;
  /** Replaced as a whole by a reload. */
  config: Config;
  readonly db: StateDb;
  readonly network: Network;
  readonly captures: Captures;
  readonly vms: VmRegistry;
  /** `vmctl events`: what happens, reported to control. */
  readonly events: ParentEvents;
  readonly roles: Roles;
  readonly stagger: StaggerQueue;
  /** VMs whose state is being sent or received: one transfer per VM at a time. */
  readonly transfers: Set<number>;
  /** The accelerator for a VM: vm.conf's choice, or the (once probed) answer of `accel auto`. */
  readonly accelFor: (vm: Config['vms'][number]) => Promise<'kvm' | 'tcg'>;
  /** A guest's QEMU is gone (vmm's report or the parent's own reaping): see lifecycle.ts guestExited. */
  readonly onGuestExit: (vmId: number, pid: number, reason: string) => void;
  shuttingDown: boolean;
}
