// Ends a migration's wait between polls on QEMU's own news: with the `events` capability QEMU sends MIGRATION as the
// status changes, on the source and the target alike, so the end is seen at once, not at the next poll (the guest
// is paused from the last pass until the target resumes it, and half a poll interval was a fifth of that pause).

import type { QmpClient } from '../qmp.js';

/** Asks QEMU for MIGRATION events (local to each side; the peers need not agree). */
export async function migrationEventsOn(qmp: QmpClient): Promise<void> {
  await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'events', state: true }] });
}

/** A poll loop's pause that a MIGRATION event cuts short, including one that came while the loop was busy. */
export class MigrationWake {
  #events = 0;
  #taken = 0;
  #wake: (() => void) | null = null;
  readonly #on = (event: string): void => {
    if (event !== 'MIGRATION') return;
    this.#events++;
    this.#wake?.();
  };

  constructor(private readonly qmp: QmpClient) {
    qmp.on('event', this.#on);
  }

  /** Waits `ms`, or until QEMU reports a change of the migration's status since the last wait began. */
  sleep(ms: number): Promise<void> {
    if (this.#events !== this.#taken) {
      this.#taken = this.#events;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#wake = null;
        this.#taken = this.#events;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = done;
    });
  }

  close(): void {
    this.qmp.off('event', this.#on);
    this.#wake?.();
  }
}
