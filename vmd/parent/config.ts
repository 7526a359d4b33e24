// Configuration as the parent applies it: loading vm.conf, registering its VMs, `vmctl load`, reload and reset.
// OpenBSD's semantics: running VMs keep their configuration across a reload; stopped ones are read afresh.

import type { Config, VmConfig } from '../../share/config.js';
import { VmdError, toVmdError } from '../../share/errors.js';
import { parseConfigFile, type Diagnostic } from '../../grammar/parse.js';
import { usersForgetMisses } from '../../share/users.js';
import type { VmRecord } from '../db.js';
import { logInfo, logWarn } from '../log.js';
import type { Parent } from './context.js';
import { vmmConfigSend } from './metrics.js';
import { inherit } from './vm-config.js';

export function configLoad(file: string, macros: Readonly<Record<string, string>>) {
  // Owners made since the last read (useradd, then vmctl reload) are found even if a lookup just missed them.
  usersForgetMisses();
  return parseConfigFile(file, { macros });
}

export function formatDiag(d: Diagnostic): string {
  return d.file !== null && d.line !== null ? `${d.file}:${d.line}: ${d.message}` : d.message;
}

export function configError(diags: readonly Diagnostic[]): VmdError {
  const first = diags.find((d) => d.severity === 'error');
  return new VmdError('ERR_CONFIG', first === undefined ? 'configuration failed' : formatDiag(first));
}

/** A vm.conf VM with its instance parent applied (the parent from the same file, else a known VM). */
function effectiveConfig(p: Parent, cfg: Config, vm: VmConfig): VmConfig {
  if (vm.instanceOf === null) return vm;
  const parent = cfg.vms.find((v) => v.name === vm.instanceOf) ?? p.vms.byName(vm.instanceOf)?.record.config ?? null;
  return inherit(parent, vm);
}

/** Records cfg's VMs (OpenBSD's vm_register): running VMs keep their configuration; `load` skips names that exist. */
export function configRegister(p: Parent, cfg: Config, origin: 'config' | 'load'): void {
  for (const vm of cfg.vms) {
    const existing = p.vms.byName(vm.name);
    if (existing !== undefined && (origin === 'load' || existing.runtime !== null)) continue;
    const effective = effectiveConfig(p, cfg, vm);
    const id = p.db.vmClaimId(vm.name);
    const rec: VmRecord = {
      id, name: vm.name, origin: vm.instanceOf === null ? origin : 'instance', config: effective,
      ownerUid: effective.owner?.uid ?? p.env.selfUid, ownerGid: effective.owner?.gid ?? null,
    };
    p.db.vmPut(rec);
    const e = p.vms.entries.get(id);
    if (e !== undefined) e.record = rec;
    else p.vms.entries.set(id, p.vms.make(rec));
  }
}

/** Drops every VM that is not running or starting (reload and reset, as OpenBSD). */
export function configUnregisterStopped(p: Parent): void {
  for (const e of [...p.vms.entries.values()]) {
    if (e.runtime === null && e.state !== 'starting') p.vms.remove(e.record.id);
  }
}

/** `vmctl load FILE`: the file's VMs are added (names that exist are skipped) and its enabled ones queued. */
export function configLoadFile(p: Parent, path: string): void {
  const res = configLoad(path, p.env.options.macros);
  if (res.config === null) throw configError(res.diagnostics);
  configRegister(p, res.config, 'load');
  p.stagger.queueEnabled(res.config);
}

/**
 * A reload leaves running VMs as they are (OpenBSD), except their filter rules: those of the new vm.conf
 * replace the old ones at once, as SmartOS fwadm updates a running zone's firewall.
 */
async function reloadRules(p: Parent, cfg: Config): Promise<string[]> {
  const failed: string[] = [];
  for (const vm of cfg.vms) {
    const e = p.vms.byName(vm.name);
    if (e === undefined || e.runtime === null || e.record.origin === 'adhoc') continue;
    const effective = effectiveConfig(p, cfg, vm);
    const old = e.record.config;
    // Only NICs that still line up take new rules; a changed interface list waits for the next start.
    const interfaces = old.interfaces.map((nic) => {
      const next = effective.interfaces.find((n) => n.index === nic.index);
      return next === undefined ? { ...nic, rules: [] } : { ...nic, rules: next.rules };
    });
    const updated: VmConfig = { ...old, interfaces };
    try {
      if (await p.network.vmRules(e.record.id, updated)) {
        e.record = { ...e.record, config: updated };
        p.db.vmPut(e.record);
        logInfo(`vm "${vm.name}": filter rules replaced`);
      }
    } catch (err) {
      const message = `vm "${vm.name}": filter rules not replaced: ${toVmdError(err).message}`;
      logWarn(message);
      failed.push(message);
    }
  }
  return failed;
}

/** `vmctl reload` and SIGHUP: vm.conf read again; a file with errors changes nothing. */
export async function configReload(p: Parent): Promise<void> {
  const { file, macros } = p.env.options;
  const res = configLoad(file, macros);
  if (res.config === null) {
    for (const d of res.diagnostics) logWarn(formatDiag(d));
    throw configError(res.diagnostics);
  }
  // OpenBSD: every VM that is not running is dropped, then the file is read again.
  p.stagger.clear();
  configUnregisterStopped(p);
  p.config = res.config;
  vmmConfigSend(p);
  await p.network.configure(p.config);
  const failed = await reloadRules(p, p.config);
  configRegister(p, p.config, 'config');
  p.stagger.queueEnabled(p.config);
  logInfo(`configuration reloaded from ${file}`);
  p.events.vm(null, 'reloaded');
  if (failed.length > 0) throw new VmdError('ERR_INTERNAL', failed.join('; '), { hint: 'the previous rules stay in force; see vmd\'s log' });
}

/** `vmctl reset [all|vms|switches]`: VMs are killed and forgotten; switches vmd made are removed and made again. */
export async function configReset(p: Parent, mode: 'all' | 'vms' | 'switches'): Promise<void> {
  if (mode === 'all' || mode === 'vms') {
    for (const e of p.vms.entries.values()) {
      if (e.runtime === null) continue;
      e.stopRequested = true;
      await p.roles.vmmCall((r) => ({ type: 'vm.stop', req: r, vmId: e.record.id, force: true }), { forVm: e.record.id }).catch(() => undefined);
    }
    p.stagger.clear();
    // Give the killed guests a moment to be reaped, so their links and rules go with them.
    const deadline = Date.now() + 10_000;
    while ([...p.vms.entries.values()].some((e) => e.runtime !== null) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    configUnregisterStopped(p);
  }
  await p.network.reset(mode === 'all' || mode === 'switches');
}
