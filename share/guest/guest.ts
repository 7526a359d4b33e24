// The vmd test guest as seen from Node: where share/guest/build puts it, how to boot it, what it prints.
// Tests, the daemon's end-to-end suites and the README all take these values from here.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../paths.js';

/** Directory share/guest/build writes by default; tests boot the guest from here. */
export function guestDir(root: string = packageRoot): string {
  return join(root, 'build', 'guest');
}

/** The build script, for tests that make sure the guest exists before booting it. */
export const guestBuildScript: string = join(packageRoot, 'share', 'guest', 'build');

/** Files of a built guest: bzImage (`kernel`), its PVH ELF (`vmlinux`, faster under TCG) and the initramfs. */
export interface GuestFiles {
  readonly kernel: string;
  readonly vmlinux: string;
  readonly initrd: string;
}

/** Paths of the built guest's files in `dir`. */
export function guestFiles(dir: string = guestDir()): GuestFiles {
  return { kernel: join(dir, 'kernel'), vmlinux: join(dir, 'vmlinux'), initrd: join(dir, 'initrd.img') };
}

/** Kernel command line measured fastest and reliable under TCG on -M pc and -M q35 (HOST-FACTS §1). */
export const GUEST_CMDLINE =
  'console=ttyS0 quiet panic=-1 cryptomgr.notests mitigations=off nokaslr apparmor=0 audit=0 ' +
  'tsc=reliable no_timer_check i8042.noaux i8042.nokbd i8042.nopnp 8250.nr_uarts=1';

/** Printed by /init right after /proc, /sys and /dev are mounted. */
export const INIT_MARKER = 'vmd-guest: init';

/** Printed by /init when httpd and acpid run and the console shell is about to start. */
export const READY_MARKER = 'vmd-guest: ready';

/** One DHCP lease: `vmd-guest: lease eth0 10.0.2.15/24`; groups are interface, address, prefix length. */
export const LEASE_RE = /vmd-guest: lease (\S+) (\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})\r?\n/;

/** One static address applied from `vmd.ip=`: `vmd-guest: address eth0 10.9.9.9/24`. */
export const ADDRESS_RE = /vmd-guest: address (\S+) (\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})\r?\n/;

/** The IPv6 address the guest takes on a /96 that vmd's router advertisements announce (`local inet6`). */
export const ADDRESS6_RE = /vmd-guest: address6 (\S+) ([0-9a-f:]+)\/96\r?\n/;

/** A static address for one guest NIC; DHCP runs on every NIC that has none. */
export interface GuestStaticIp {
  readonly iface: string;
  readonly cidr: string;
  readonly gateway?: string;
}

/** Options the guest's /init reads from the kernel command line. */
export interface GuestCmdlineOptions {
  readonly hostname?: string;
  readonly ips?: readonly GuestStaticIp[];
  /** Host TSC rate; needed only on -M microvm, where the guest cannot calibrate its TSC under TCG. */
  readonly tscKhz?: number;
  readonly extra?: readonly string[];
}

const WORD = /^[A-Za-z0-9._:/-]+$/;

/** Build the full kernel command line for the guest; rejects values that would split into several words. */
export function guestCmdline(opts: GuestCmdlineOptions = {}): string {
  const words = [GUEST_CMDLINE];
  const word = (w: string): string => {
    if (!WORD.test(w)) throw new Error(`guest cmdline: unsafe value ${JSON.stringify(w)}`);
    return w;
  };
  if (opts.hostname !== undefined) words.push(`vmd.hostname=${word(opts.hostname)}`);
  for (const ip of opts.ips ?? []) {
    words.push(`vmd.ip=${word(ip.iface)}:${word(ip.cidr)}${ip.gateway ? `:${word(ip.gateway)}` : ''}`);
  }
  if (opts.tscKhz !== undefined) words.push(`tsc_early_khz=${Math.round(opts.tscKhz)}`);
  for (const w of opts.extra ?? []) words.push(w);
  return words.join(' ');
}

/** Host TSC rate in kHz from /proc/cpuinfo (under TCG the guest TSC is the host's), or undefined. */
export function hostTscKhz(cpuinfo?: string): number | undefined {
  let text = cpuinfo;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      return undefined;
    }
  }
  const m = /^cpu MHz\s*:\s*([0-9.]+)/m.exec(text);
  return m ? Math.round(Number(m[1]) * 1000) : undefined;
}
