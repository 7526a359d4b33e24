// The parent's lifecycle events: each fact about a VM worth a line in `vmctl events`, sent to control as it happens.
// The parent only reports; control fans events out to its subscribers (vmd/control/events.ts), so root holds no client.

import type { VmEvent, VmState } from '../../share/protocol.js';
import type { ParentToControl } from '../../share/ipc.js';
import { MAX_EVENT_REASON } from '../../share/events.js';
import { logWarn } from '../log.js';
import { linkName } from '../net/addr.js';
import type { NicPlan } from '../network.js';
import type { Entry } from './registry.js';

/** A state move the registry reports, as the event it is (only pauses and resumes: other moves have their own). */
const MOVE_EVENTS: ReadonlyArray<{ from: readonly VmState[]; to: VmState; event: VmEvent['event'] }> = [
  { from: ['running', 'stopping'], to: 'paused', event: 'paused' },
  { from: ['paused'], to: 'running', event: 'unpaused' },
];

/** Builds events and hands them to control; remembers which links it announced, so each comes down once. */
export class ParentEvents {
  readonly #links = new Map<number, string[]>();

  constructor(private readonly send: (msg: ParentToControl) => void) {}

  /** An event of VM `e` (or of the daemon, `e` null). */
  vm(e: Entry | null, event: VmEvent['event'], detail: { reason?: string; link?: string } = {}): void {
    const reason = detail.reason === undefined ? {} : { reason: detail.reason.slice(0, MAX_EVENT_REASON) };
    try {
      this.send({
        type: 'control.event',
        event: { time: new Date().toISOString(), event, vmId: e?.record.id ?? null, vm: e?.record.name ?? null, ...detail, ...reason },
      });
    } catch (err) {
      // Reported from the middle of starts and stops: an event that cannot go out must not undo what happened.
      logWarn(`events: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /** A state move of the registry: pauses and resumes, whoever caused them (vmctl, QMP, the guest). */
  moved(e: Entry, from: VmState, to: VmState): void {
    const m = MOVE_EVENTS.find((x) => x.to === to && x.from.includes(from));
    if (m !== undefined) this.vm(e, m.event);
  }

  /** A starting guest's host links exist (its taps; user-mode NICs have none). */
  linksUp(e: Entry, nics: readonly NicPlan[]): void {
    const names: string[] = [];
    e.record.config.interfaces.forEach((nic, i) => {
      // vmUp made these links under the same names, so linkName cannot refuse them here.
      if (nics[i]?.kind === 'tap') names.push(linkName(e.record.id, nic.index));
    });
    if (names.length === 0) return;
    this.#links.set(e.record.id, names);
    for (const link of names) this.vm(e, 'link-up', { link });
  }

  /** A guest's run was cleaned up: the links announced for it are gone. */
  linksDown(e: Entry): void {
    for (const link of this.#links.get(e.record.id) ?? []) this.vm(e, 'link-down', { link });
    this.#links.delete(e.record.id);
  }
}
