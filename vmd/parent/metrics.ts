// The parent's part of the metrics endpoint vmm serves: VMs, links and firewall counters for each scrape, and the
// settings vmm is sent (again after a reload, which may move or remove the endpoint).

import { toVmdError } from '../../share/errors.js';
import type { FirewallInfo } from '../../share/protocol.js';
import { logWarn } from '../log.js';
import type { Parent } from './context.js';

/** How long vmm waits for a guest's ACPI power-down before killing it (VMD_STOP_TIMEOUT seconds, default 30). */
function stopTimeoutMs(): number {
  const env = Number(process.env.VMD_STOP_TIMEOUT);
  return Number.isFinite(env) && env > 0 ? env * 1000 : 30_000;
}

/** Sends vmm its settings: at its start, and after each reload (`metrics` may have changed). */
export function vmmConfigSend(p: Parent): void {
  p.roles.vmm?.send({ type: 'vmm.config', verbose: p.env.options.verbose, stopTimeoutMs: stopTimeoutMs(), metrics: p.config.global.metrics });
}

/**
 * Answers vmm's vmm.metrics.request: the listing, every link's counters and the firewall counters of running VMs.
 * vmm caches the answer for a second, so a scraper costs at most one round of nft reads a second.
 */
export async function metricsAnswer(p: Parent, req: number): Promise<void> {
  try {
    const links = await p.network.linksInfo(() => true);
    const firewall: FirewallInfo[] = [];
    for (const e of p.vms.entries.values()) {
      if (e.runtime === null || e.record.config.interfaces.length === 0) continue;
      firewall.push(...await p.network.firewallInfo(e.record.id, e.record.config, undefined));
    }
    p.roles.vmm?.send({ type: 'vmm.metrics.data', req, vms: p.vms.list(), links, firewall });
  } catch (err) {
    // vmm's scrape times out and answers 503; the reason belongs in vmd's log.
    logWarn(`metrics: ${toVmdError(err).message}`);
  }
}
