// The parent's side of passt NICs: the clash checks of their forwards, starting one passt per NIC before QEMU,
// and the sweep that leaves no passt behind that no guest owns (after a failed start or a vmd crash).

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { PortForward } from '../../share/config.js';
import { VmdError } from '../../share/errors.js';
import { logInfo } from '../log.js';
import type { NicPlan } from '../network.js';
import { hostPortsNow, socketHolder } from '../net/host-ports.js';
import { passtFiles, passtGuestAddress, passtPidOf, passtStart, passtStopAll } from '../net/passt-run.js';
import { PASST_ROOTLESS } from '../net/passt.js';
import { stableMac } from '../net/addr.js';
import type { LinkInfo } from '../../share/protocol.js';
import type { QemuNic } from '../qemu-spec.js';
import type { Parent } from './context.js';
import type { Entry } from './registry.js';

/** The QEMU side of a passt NIC: its socket in the run directory. */
export function passtQemuNic(runDir: string, index: number, mac: string): QemuNic {
  return { kind: 'stream', socket: passtFiles(runDir, index).socket, mac };
}

const fwd = (f: Pick<PortForward, 'proto' | 'hostPort'>): string => `forward ${f.proto} ${f.hostPort}`;

/**
 * Refuses a forward whose host port another running guest forwards, or (passt) a host socket holds, naming both:
 * passt alone would bind what it can and say nothing of the rest, or fail without saying who holds the port.
 */
export function passtForwardsCheck(p: Parent, e: Entry, nics: readonly NicPlan[]): void {
  const name = e.record.name;
  // Another guest's forward clashes whatever the kinds (a passt or slirp listener, a local link's DNAT); a host
  // listener is checked for passt forwards only, as those are the ones that must bind the host port themselves.
  const mine = e.record.config.interfaces.flatMap((n) => n.forwards.map((f) => ({ f, i: n.index })));
  if (mine.length === 0) return;
  const seen = new Map<string, number>();
  for (const { f, i } of mine) {
    const key = `${f.proto}/${f.hostPort}`;
    const j = seen.get(key);
    if (j !== undefined) throw new VmdError('ERR_INVALID', `vm "${name}": interface ${i}: ${fwd(f)}: also forwarded by interface ${j}`);
    seen.set(key, i);
  }
  for (const o of p.vms.entries.values()) {
    if (o === e || o.runtime === null) continue;
    for (const nic of o.record.config.interfaces) {
      const theirs = nic.forwards.find((g) => seen.has(`${g.proto}/${g.hostPort}`));
      if (theirs === undefined) continue;
      throw new VmdError('ERR_INVALID', `vm "${name}": ${fwd(theirs)}: host port already forwarded to vm "${o.record.name}" (interface ${nic.index})`, {
        hint: 'give each guest its own host port',
      });
    }
  }
  const passtPorts = new Set(nics.flatMap((n) => (n.kind === 'passt' ? n.forwards.map((f) => `${f.proto}/${f.hostPort}`) : [])));
  for (const h of hostPortsNow()) {
    if (!passtPorts.has(`${h.proto}/${h.port}`)) continue;
    const holder = socketHolder(h.inode);
    throw new VmdError('ERR_INVALID', `vm "${name}": ${fwd({ proto: h.proto, hostPort: h.port })}: host port in use by ${holder ?? 'a process of the host'}`, {
      hint: 'choose another host port, or stop the listener',
    });
  }
}

/** Starts the passt of every passt NIC of a starting guest, as QEMU's user; the caller's undo sweeps them on failure. */
export async function passtsStart(p: Parent, e: Entry, nics: readonly NicPlan[], runDir: string): Promise<void> {
  for (const [i, n] of nics.entries()) {
    if (n.kind !== 'passt') continue;
    const files = passtFiles(runDir, i);
    const pid = await passtStart({ ...files, config: n.passt, forwards: n.forwards }, {
      vm: e.record.name, index: i, identity: p.env.root ? p.env.qemuIdentity : null, cwd: runDir,
    });
    p.db.event(e.record.id, 'passt', `interface ${i} pid ${pid}`);
  }
}

/** At daemon start, after re-adoption: kills any passt in a run directory of a guest that is not running. */
export function passtSweep(p: Parent): void {
  let dirs: string[];
  try { dirs = readdirSync(p.env.runRoot); } catch { return; }
  const live = new Set([...p.vms.entries.values()].filter((e) => e.runtime !== null).map((e) => e.runtime!.runDir));
  for (const d of dirs) {
    const dir = join(p.env.runRoot, d);
    if (live.has(dir)) continue;
    const n = passtStopAll(dir);
    if (n > 0) logInfo(`run directory ${dir}: killed ${n} passt process${n === 1 ? '' : 'es'} no guest owns`);
  }
}

/** `vmctl links` rows of running guests' passt NICs: found by their pid files, so re-adopted guests show too. */
export async function passtLinksInfo(p: Parent, filter: (vmId: number, vm: string) => boolean): Promise<LinkInfo[]> {
  const out: LinkInfo[] = [];
  for (const e of [...p.vms.entries.values()].sort((a, b) => a.record.id - b.record.id)) {
    if (e.runtime === null || !filter(e.record.id, e.record.name)) continue;
    for (const nic of e.record.config.interfaces) {
      const files = passtFiles(e.runtime.runDir, nic.index);
      const pid = passtPidOf(files.pidFile, files.socket);
      if (pid === null) continue;
      out.push({
        vmId: e.record.id, vm: e.record.name, index: nic.index, link: `passt/${pid}`,
        lladdr: nic.lladdr ?? stableMac(e.record.id, e.record.config.name, nic.index), switch: null, local: false,
        address: await passtGuestAddress(nic.passt ?? PASST_ROOTLESS),
        rxPackets: 0, rxBytes: 0, rxDropped: 0, txPackets: 0, txBytes: 0, txDropped: 0, spoofDropped: 0, blocked: 0,
        kind: 'passt', forwards: nic.forwards.map((f) => `${f.proto} ${f.hostPort}>${f.guestPort}`),
      });
    }
  }
  return out;
}
