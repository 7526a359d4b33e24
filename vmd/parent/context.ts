// The parent's parts and the facts they share, as one explicit object each module is handed.
// Each part owns its own state (the registry its VMs, the roles their channels, the queue its waiting ids).

import type { Config } from '../../share/config.js';
import type { Captures } from '../capture.js';
import type { StateDb } from '../db.js';
import type { Network } from '../network.js';
import type { VmRegistry } from './registry.js';
import type { Roles } from './roles.js';
import type { StaggerQueue } from './stagger.js';

export interface ParentOptions {
  readonly file: string;
  readonly macros: Readonly<Record<string, string>>;
  readonly verbose: number;
  /** Called once the socket accepts connections (the daemonising launcher waits for it). */
  readonly onReady?: () => void;
}

export interface Identity {
  readonly uid: number;
  readonly gid: number;
}

/** What the parent learns at its start and never changes. */
export interface ParentEnv {
  readonly options: ParentOptions;
  /** Running as root: switches, taps, the QEMU sandbox and identity changes are available. */
  readonly root: boolean;
  /** Who configured VMs belong to and are started as when vm.conf says nothing: root, or a rootless daemon's user. */
  readonly selfUid: number;
  /** The unprivileged user of vmm, control and QEMU (`_vmd`); null without root. */
  readonly ident: Identity | null;
  /** Who QEMU runs as: `_vmd` under root, the daemon's own user otherwise. */
  readonly qemuIdentity: Identity;
  readonly stateDir: string;
  readonly runRoot: string;
  readonly sockPath: string;
}

/** The parent: its facts, its current configuration and its parts. */
export interface Parent {
  readonly env: ParentEnv;
  /** Replaced as a whole by a reload. */
  config: Config;
  readonly db: StateDb;
  readonly network: Network;
  readonly captures: Captures;
  readonly vms: VmRegistry;
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
