// The staggered start of enabled VMs (vm.conf `staggered start`): a few at a time, a delay between batches.
// OpenBSD's vmd starts `parallel` VMs (default: the online cores), then waits `delay` seconds (default 30).

import { cpus } from 'node:os';
import { DEFAULT_STAGGER_DELAY, type Config } from '../../share/config.js';
import type { Entry, VmRegistry } from './registry.js';

export interface StaggerDeps {
  readonly vms: VmRegistry;
  /** vm.conf's `staggered start` of the moment (a reload may change it). */
  readonly settings: () => Config['global']['staggered'];
  /** Starts one VM; failures are the starter's to report. */
  readonly start: (e: Entry) => void;
  readonly stopped: () => boolean;
}

/** Enabled VMs waiting for their turn, in vm.conf order; shown as `waiting` in `vmctl status`. */
export class StaggerQueue {
  readonly #waiting: number[] = [];
  #timer: NodeJS.Timeout | null = null;

  constructor(private readonly deps: StaggerDeps) {}

  /** Ids still waiting, first to start first. */
  get waiting(): readonly number[] { return this.#waiting; }

  /** Queues the enabled VMs of cfg that are not running or queued, and starts a batch unless one is pending. */
  queueEnabled(cfg: Config): void {
    for (const vm of cfg.vms) {
      const e = this.deps.vms.byName(vm.name);
      if (e === undefined || !vm.enabled || e.runtime !== null || this.#waiting.includes(e.record.id)) continue;
      this.deps.vms.setState(e, 'waiting');
      this.#waiting.push(e.record.id);
    }
    if (this.#timer === null) this.startBatch();
  }

  /** Starts up to `parallel` waiting VMs; the rest wait `delay` seconds for the next batch. */
  startBatch(): void {
    this.#timer = null;
    const staggered = this.deps.settings();
    const parallel = staggered?.parallel ?? cpus().length;
    const delay = staggered?.delay ?? DEFAULT_STAGGER_DELAY;
    for (let n = 0; n < parallel && this.#waiting.length > 0;) {
      const e = this.deps.vms.entries.get(this.#waiting.shift()!);
      // A VM removed or started by hand meanwhile does not use up the batch.
      if (e === undefined || e.state !== 'waiting') continue;
      this.deps.vms.setState(e, 'stopped');
      this.deps.start(e);
      n++;
    }
    if (this.#waiting.length > 0 && !this.deps.stopped()) this.#timer = setTimeout(() => this.startBatch(), delay * 1000);
  }

  /** Forgets every waiting VM (reload, reset); their entries are removed by the caller. */
  clear(): void {
    this.#waiting.length = 0;
  }

  stop(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }
}
