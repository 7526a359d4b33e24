// Benchmark of vmd beside libvirt in the same run (when libvirt is installed): the listing with 100 VMs, a start to
// the guest's ready line, a forced stop, and the daemons' memory; interleaved runs, CLIs in a clean environment.

import { rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { vmctlEntry } from '../../share/paths.js';
import { guestInitrd, guestKernel, VmdHarness } from '../lib/vmd-harness.js';
import type { BenchSection, Measurement } from './bench.js';
import { daemonConsoleWait, median, memOf, nowMs, READY, type Mem } from './daemon-lib.js';
import { fleetConfig } from './fleet.bench.js';
import { domainXml, fileWait, LibvirtPeer, libvirtMissing } from './libvirt.js';

const VMS = 100;
const LIST_RUNS = 20;
const BOOT_RUNS = 5;
const GUEST = 'peer';
const BOOT_TIMEOUT_MS = 90_000;
const MB = 1024 * 1024;

/** Issue target: `vmctl status` below `virsh list --all` in wall time, same machine and VM count. */
const TARGET_LIST_RATIO = 1;

/** Wall milliseconds of one command; throws with its words when it fails. */
async function timed(argv: readonly string[], env: Record<string, string>): Promise<number> {
  const t0 = nowMs();
  const r = await execa('/usr/bin/env', ['-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...argv], { reject: false, timeout: 60_000 });
  const ms = nowMs() - t0;
  if (r.exitCode !== 0) throw new Error(`${argv.join(' ')}: exit ${r.exitCode}: ${String(r.stderr).trim()}`);
  return ms;
}

/** RSS, PSS and private memory of some processes, summed (a process gone meanwhile counts nothing). */
function memoryOf(pids: readonly number[]): Mem {
  const sum = { rss: 0, pss: 0, priv: 0 };
  for (const pid of pids) {
    let m: Mem;
    try {
      m = memOf(pid);
    } catch {
      continue;
    }
    sum.rss += m.rss;
    sum.pss += m.pss;
    sum.priv += m.priv;
  }
  return sum;
}

/** One interleaved pair of boots: vmctl start -> ready -> vmctl stop -f -w, and virsh start -> ready -> virsh destroy. */
interface Boot { readonly cli: number; readonly ready: number; readonly stop: number }

async function vmdBoot(h: VmdHarness, env: Record<string, string>): Promise<Boot> {
  const t0 = nowMs();
  const cli = await timed([process.execPath, vmctlEntry, 'start', GUEST], env);
  const ready = (await daemonConsoleWait(h.socket, GUEST, READY, BOOT_TIMEOUT_MS)) - t0;
  const stop = await timed([process.execPath, vmctlEntry, 'stop', '-f', '-w', GUEST], env);
  return { cli, ready, stop };
}

async function libvirtBoot(peer: LibvirtPeer, consoleFile: string, env: Record<string, string>): Promise<Boot> {
  rmSync(consoleFile, { force: true });
  const t0 = nowMs();
  const cli = await timed(['virsh', '-c', peer.uri, 'start', GUEST], env);
  const ready = (await fileWait(consoleFile, READY, BOOT_TIMEOUT_MS)) - t0;
  const stop = await timed(['virsh', '-c', peer.uri, 'destroy', GUEST], env);
  return { cli, ready, stop };
}

/** Both daemons with 100 defined VMs and one bootable guest; the measurements interleaved. */
async function measure(h: VmdHarness, peer: LibvirtPeer): Promise<Measurement[]> {
  const consoleFile = join(peer.dir, `${GUEST}.console`);
  for (let i = 0; i < VMS; i++) await peer.define(domainXml(`vm${String(i).padStart(3, '0')}`, guestKernel, guestInitrd, join(peer.dir, `vm${i}.console`)), `vm${i}`);
  await peer.define(domainXml(GUEST, guestKernel, guestInitrd, consoleFile), GUEST);
  const path = process.env.PATH ?? '/usr/bin:/bin';
  const vmdEnv = { PATH: path, VMD_SOCKET: h.socket };
  const cleanEnv = { PATH: path };
  const list = { vmd: [] as number[], virsh: [] as number[] };
  for (let i = 0; i < LIST_RUNS; i++) {
    list.vmd.push(await timed([process.execPath, vmctlEntry, 'status'], vmdEnv));
    list.virsh.push(await timed(['virsh', '-c', peer.uri, 'list', '--all'], cleanEnv));
  }
  const boots = { vmd: [] as Boot[], libvirt: [] as Boot[] };
  for (let i = 0; i < BOOT_RUNS; i++) {
    boots.vmd.push(await vmdBoot(h, vmdEnv));
    boots.libvirt.push(await libvirtBoot(peer, consoleFile, cleanEnv));
  }
  const memVmd = memoryOf(h.daemonPids());
  const memLv = memoryOf(peer.daemonPids());
  const m = (xs: readonly Boot[], k: keyof Boot): number => median(xs.map((b) => b[k]));
  const pair = (what: string, vmd: number, lv: number, unit: string, target?: number): Measurement[] => [
    { name: `${what}, vmd`, value: vmd, unit },
    { name: `${what}, libvirt`, value: lv, unit },
    { name: `${what}, vmd / libvirt (absolute ${vmd - lv >= 0 ? '+' : ''}${(vmd - lv).toFixed(1)} ${unit})`, value: vmd / lv, unit: 'x', ...(target === undefined ? {} : { target }) },
  ];
  return [
    { name: 'machine load average (1 min) at the end, for reading the numbers', value: loadavg()[0]!, unit: '' },
    ...pair(`vmctl status / virsh list --all, ${VMS + 1} VMs, clean environment (median of ${LIST_RUNS})`, median(list.vmd), median(list.virsh), 'ms', TARGET_LIST_RATIO),
    ...pair(`vmctl start / virsh start, until the command returns (median of ${BOOT_RUNS})`, m(boots.vmd, 'cli'), m(boots.libvirt, 'cli'), 'ms'),
    ...pair(`start command -> "${READY}" on the serial console (median of ${BOOT_RUNS})`, m(boots.vmd, 'ready'), m(boots.libvirt, 'ready'), 'ms'),
    ...pair(`vmctl stop -f -w / virsh destroy (median of ${BOOT_RUNS})`, m(boots.vmd, 'stop'), m(boots.libvirt, 'stop'), 'ms'),
    ...pair('daemons\' RSS, idle after the runs (vmd: its three roles; libvirt: libvirtd + virtlogd)', memVmd.rss / MB, memLv.rss / MB, 'MB'),
    ...pair('daemons\' PSS, idle after the runs', memVmd.pss / MB, memLv.pss / MB, 'MB'),
    ...pair('daemons\' private memory, idle after the runs', memVmd.priv / MB, memLv.priv / MB, 'MB'),
  ];
}

export const peerBench: BenchSection = {
  name: 'peer',
  async run(): Promise<Measurement[]> {
    const missing = libvirtMissing();
    if (missing !== undefined) {
      process.stdout.write(`peer: ${missing}: no side-by-side figures (apt-get install --no-install-recommends libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients)\n`);
      return [];
    }
    const config = `${fleetConfig(VMS)}vm "${GUEST}" {\n\tdisable\n\tboot "${guestKernel}"\n\tinitrd "${guestInitrd}"\n\tmemory 128M\n}\n`;
    const h = await VmdHarness.start({ config });
    try {
      const peer = await LibvirtPeer.start();
      try {
        return await measure(h, peer);
      } finally {
        await peer.stop();
      }
    } finally {
      await h.teardown();
    }
  },
};
