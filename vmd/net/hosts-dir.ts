// A switch's fixed DHCP leases as dnsmasq's --dhcp-hostsdir: one small file per guest NIC, named after its MAC,
// so adding, changing or dropping a lease touches one file however many guests the switch has.

import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { VmdError } from '../../share/errors.js';
import { MAC_RE, type DhcpReservation } from './dnsmasq-args.js';
import { hostsFileText, readHostsFile } from './leases.js';

/** What writing a lease meant to a dnsmasq already running: nothing, a new file it reads by inotify, or a changed one it must be told of. */
export type HostsChange = 'same' | 'added' | 'changed';

/**
 * The file of a MAC's lease: `fe-e1-bb-00-00-01`. dnsmasq skips names that start with `.` or end with `~` (and
 * `#…#`), so a lease never has one, and a temporary file always starts with `.`.
 */
export function hostsEntryName(mac: string): string {
  if (!MAC_RE.test(mac)) throw new VmdError('ERR_INVALID', `dhcp hosts: bad MAC ${mac}`);
  return mac.toLowerCase().replaceAll(':', '-');
}

/**
 * Write one fixed lease's file, whole or not at all (a temporary name dnsmasq ignores, then a rename). A changed
 * file needs a SIGHUP: dnsmasq adds what it reads by inotify, and keeps the old record until told to re-read.
 */
export function hostsEntryWrite(dir: string, host: DhcpReservation): HostsChange {
  const text = hostsFileText([host]);
  const name = hostsEntryName(host.mac);
  const file = join(dir, name);
  let old: string | null = null;
  try {
    old = readFileSync(file, 'utf8');
  } catch {
    // No lease for this MAC yet.
  }
  if (old === text) return 'same';
  const tmp = join(dir, `.${name}.tmp`);
  try {
    writeFileSync(tmp, text, { mode: 0o644 });
    // dnsmasq reads it as nobody: readable whatever vmd's umask, and whatever a leftover temporary file had.
    chmodSync(tmp, 0o644);
    renameSync(tmp, file);
  } catch (err) {
    throw new VmdError('ERR_INTERNAL', `dhcp hosts ${file}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  return old === null ? 'added' : 'changed';
}

/** Remove a MAC's lease file; false when there was none (dnsmasq then holds no record of it to forget). */
export function hostsEntryRemove(dir: string, mac: string): boolean {
  const file = join(dir, hostsEntryName(mac));
  try {
    unlinkSync(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new VmdError('ERR_INTERNAL', `dhcp hosts ${file}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

/** The address a MAC's lease file gives it, if any (a re-adopted guest keeps it): one file read. */
export function hostsEntryRead(dir: string, mac: string): string | undefined {
  return readHostsFile(join(dir, hostsEntryName(mac))).get(mac.toLowerCase());
}

/**
 * Make the directory (0755: dnsmasq reads it as nobody) and take over the single hosts file of earlier vmd
 * versions (`legacy`): its leases become files, so guests re-adopted after an upgrade keep their addresses.
 */
export function hostsDirPrepare(dir: string, legacy: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  chmodSync(dir, 0o755);
  if (!existsSync(legacy)) return;
  for (const [mac, address] of readHostsFile(legacy)) hostsEntryWrite(dir, { mac, address });
  unlinkSync(legacy);
}

/** Remove every lease file (and leftover temporary file) whose MAC `keep` lacks; returns how many leases went. */
export function hostsDirPrune(dir: string, keep: ReadonlySet<string>): number {
  const names = new Set([...keep].map(hostsEntryName));
  let removed = 0;
  for (const f of readdirSync(dir)) {
    if (names.has(f)) continue;
    try {
      unlinkSync(join(dir, f));
      if (!f.startsWith('.')) removed++;
    } catch {
      // Not a file (someone's directory): dnsmasq skips it too.
    }
  }
  return removed;
}
