// Choosing QEMU's accelerator: KVM when a short probe shows it really runs guest code, TCG otherwise.
// `/dev/kvm` existing is not enough: nested KVM on these hosts hangs as soon as a guest leaves real mode.
//
// Measured on the project's hosts (QEMU 7.2, nested KVM): a real-mode payload exits fine under -accel kvm, but
// setting CR0.PE hangs, which is where a Linux guest stops ("Probing EDD" is the last line). So the payload
// goes all the way to 64-bit long mode with paging, then spins a million iterations, then reports through
// isa-debug-exit. Under TCG it takes ~50 ms; a working KVM is faster still.

import { spawn } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { mkdtemp, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { QemuAccel } from './qemu-spec.js';
import { pidAlive } from './pid.js';

/** Knobs for tests and for `qemu PATH` in vm.conf. */
export interface AccelProbeOptions {
  /** QEMU binary; default qemu-system-x86_64 from PATH. */
  readonly qemu?: string;
  /** Upper bound for the whole payload run, QEMU start included. Default 2500 ms. */
  readonly timeoutMs?: number;
  /** The KVM device; default /dev/kvm. */
  readonly kvmDevice?: string;
}

/** What running the payload under one accelerator gave; `reason` is for logs. */
export interface PayloadResult {
  readonly ok: boolean;
  readonly reason: string;
  readonly ms: number;
}

// isa-debug-exit makes QEMU exit with (value << 1) | 1; the payload writes 0x31.
const DEBUG_EXIT_PORT = '0xf4';
const PAYLOAD_EXIT_CODE = (0x31 << 1) | 1;

// The payload's code, linked at 0xF0000 (the BIOS's real-mode alias). Assembled once from:
//   .code16: cli; mov $0xf000,%ax; mov %ax,%ds; lgdtl gdt_desc; CR0.PE=1; ljmpl $0x08,$pm32
//   .code32 pm32: data selectors = 0x10; zero 0x1000-0x3fff; PML4[0]=0x2003, PDPT[0]=0x3003, PD[0]=0x83
//     (2 MiB page at 0); CR3=0x1000; CR4.PAE; EFER.LME (rdmsr/wrmsr 0xC0000080); CR0.PG; ljmp $0x18,$lm64
//   .code64 lm64: mov $1000000,%ecx; 1: loop 1b; mov $0x31,%al; out %al,$0xf4; 2: hlt; jmp 2b
//   gdt @0x98: null, code32 0x00cf9a000000ffff, data 0x00cf92000000ffff, code64 0x00af9a000000ffff
//   gdt_desc @0xb8: limit 31, base 0xF0098
const PAYLOAD_CODE =
  'fab800f08ed8660f0116b8000f20c06683c8010f22c066ea1e000f000800' + // real mode -> protected mode
  '66b810008ed88ec08ed0bf00100000b9000c000031c0f3ab' + // segments, clear page tables
  'c7050010000003200000c7050020000003300000c7050030000083000000' + // PML4, PDPT, PD
  'b8001000000f22d80f20e083c8200f22e0b9800000c00f320d000100000f30' + // CR3, PAE, EFER.LME
  '0f20c00d000000800f22c0ea85000f001800' + // paging on, far jump to 64-bit code
  'b940420f00e2feb031e6f4f4ebfd' + // spin, report 0x31, halt
  '8db40000' + '90' + // padding to the 8-byte aligned GDT
  '0000000000000000ffff0000009acf00ffff00000092cf00ffff0000009aaf00' + // GDT
  '1f0098000f00'; // GDT descriptor
// At the reset vector (physical 0xFFFFFFF0, file offset 0xFFF0): ljmp $0xf000,$0x0000.
const RESET_VECTOR = 'ea000000f0';

/** The 64 KiB firmware image QEMU runs as -bios (QEMU wants a multiple of 64 KiB); `hlt` everywhere else. */
export function accelPayloadBios(): Buffer {
  const bios = Buffer.alloc(0x10000, 0xf4);
  Buffer.from(PAYLOAD_CODE, 'hex').copy(bios, 0);
  Buffer.from(RESET_VECTOR, 'hex').copy(bios, 0xfff0);
  return bios;
}

/**
 * Probe directories are named after the vmd that made them (`vmd-accel-PID-XXXXXX`): one left by a vmd killed
 * mid-probe goes at the next probe, once its maker is gone.
 */
export async function removeStaleProbeDirs(base = tmpdir()): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await readdir(base).catch(() => [] as string[])) {
    const m = /^vmd-accel-(\d+)-[A-Za-z0-9]{6}$/.exec(name);
    if (m === null || pidAlive(Number(m[1]))) continue;
    await rm(join(base, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

/** Run the payload under one accelerator: ok when QEMU exits with the payload's code within the time bound. */
export async function runAccelPayload(accel: QemuAccel, options: AccelProbeOptions = {}): Promise<PayloadResult> {
  const started = Date.now();
  const timeoutMs = options.timeoutMs ?? 2500;
  await removeStaleProbeDirs();
  const dir = await mkdtemp(join(tmpdir(), `vmd-accel-${process.pid}-`));
  try {
    const bios = join(dir, 'payload.bin');
    await writeFile(bios, accelPayloadBios(), { mode: 0o644 });
    const args = [
      '-nodefaults', '-no-user-config', '-display', 'none', '-machine', 'pc', '-accel', accel, '-m', '16',
      '-bios', bios, '-device', `isa-debug-exit,iobase=${DEBUG_EXIT_PORT},iosize=0x04`,
      // A triple fault then ends QEMU (exit 0) instead of looping through resets until the timeout.
      '-no-reboot',
    ];
    const result = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; timedOut: boolean; error?: Error; stderr: string }>((resolve) => {
      // Under timeout(1) with a bound of its own: if vmd dies mid-probe, a wedged KVM guest still goes.
      const bound = String(Math.ceil(timeoutMs / 1000) + 1);
      const child = spawn('timeout', ['-s', 'KILL', bound, options.qemu ?? 'qemu-system-x86_64', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      let timedOut = false;
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (s: string) => {
        if (stderr.length < 4096) stderr += s;
      });
      const timer = setTimeout(() => {
        timedOut = true;
        // timeout(1) relays SIGTERM to QEMU; killing timeout itself would orphan QEMU with our stderr pipe.
        child.kill('SIGTERM');
      }, timeoutMs);
      child.once('error', (error) => {
        clearTimeout(timer);
        resolve({ code: null, signal: null, timedOut, error, stderr });
      });
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, timedOut, stderr });
      });
    });
    const ms = Date.now() - started;
    if (result.error) return { ok: false, reason: `cannot run qemu: ${result.error.message}`, ms };
    // timeout(1) reports a command it could not run as 127 (not found) or 126 (not executable).
    if (result.code === 127 || result.code === 126) {
      return { ok: false, reason: `cannot run qemu: ${options.qemu ?? 'qemu-system-x86_64'}: ${result.code === 127 ? 'no such file' : 'not executable'}`, ms };
    }
    if (result.timedOut) return { ok: false, reason: `payload did not finish within ${timeoutMs} ms`, ms };
    if (result.code === PAYLOAD_EXIT_CODE) return { ok: true, reason: 'payload ran to completion', ms };
    const said = result.stderr.trim().split('\n').filter((l) => !l.includes('warning:')).join('; ');
    return { ok: false, reason: `qemu exited with ${result.code ?? result.signal}${said ? `: ${said}` : ''}`, ms };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Whether the KVM device can be opened read-write by this process (what QEMU will do). */
export async function kvmDeviceUsable(device = '/dev/kvm'): Promise<{ ok: boolean; reason: string }> {
  try {
    const handle = await open(device, fsConstants.O_RDWR);
    await handle.close();
    return { ok: true, reason: `${device} opens` };
  } catch (err) {
    return { ok: false, reason: `${device}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` };
  }
}

/** The outcome of a full probe, with the reason for logs (`vmd -v` says why it chose TCG). */
export interface AccelProbeResult {
  readonly accel: QemuAccel;
  readonly reason: string;
}

/** Device check, then the payload under KVM; never throws, a failure of any kind means TCG. */
export async function probeAccelDetailed(options: AccelProbeOptions = {}): Promise<AccelProbeResult> {
  const device = await kvmDeviceUsable(options.kvmDevice);
  if (!device.ok) return { accel: 'tcg', reason: device.reason };
  const run = await runAccelPayload('kvm', options);
  return run.ok
    ? { accel: 'kvm', reason: `kvm ran the payload in ${run.ms} ms` }
    : { accel: 'tcg', reason: `kvm: ${run.reason}` };
}

/** A file's identity for a cache key: device, inode, size and change time; 'absent' when it does not exist. */
async function fileIdentity(path: string): Promise<string> {
  try {
    const st = await stat(path);
    return `${st.dev}:${st.ino}:${st.rdev}:${st.size}:${st.ctimeMs}`;
  } catch {
    return 'absent';
  }
}

/** The path a command name runs from, found in PATH as execvp would; the name itself when it has a slash. */
export async function commandPath(name: string, path = process.env.PATH ?? '/usr/bin:/bin'): Promise<string | null> {
  if (name.includes('/')) return name;
  for (const dir of path.split(':')) {
    const candidate = join(dir === '' ? '.' : dir, name);
    try {
      const st = await stat(candidate);
      if (st.isFile() && (st.mode & 0o111) !== 0) return candidate;
    } catch {
      /* not here */
    }
  }
  return null;
}

/**
 * What a probe's answer depends on: this boot of the host (a reboot may change the hypervisor under us), the QEMU
 * binary (an upgrade), and the KVM device (loading or reloading the kvm modules makes the node anew).
 */
export async function probeKey(options: AccelProbeOptions = {}): Promise<string> {
  let boot = 'unknown';
  try {
    boot = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
  } catch {
    /* no procfs: the key still holds the files */
  }
  const qemu = await commandPath(options.qemu ?? 'qemu-system-x86_64');
  const kvm = options.kvmDevice ?? '/dev/kvm';
  return JSON.stringify({ boot, qemu, qemuFile: qemu === null ? 'absent' : await fileIdentity(qemu), kvm, kvmFile: await fileIdentity(kvm) });
}

/**
 * The probe, remembered in `file` (vmd's state directory) for as long as its key holds: a vmd restarted on the same
 * host boot with the same QEMU and KVM device does not probe again, so its first start does not wait for the
 * probe (up to its 2.5 s bound where nested KVM hangs). An unreadable or foreign file just means probing.
 */
export async function probeAccelCached(file: string, options: AccelProbeOptions = {}): Promise<AccelProbeResult & { readonly cached: boolean }> {
  const key = await probeKey(options);
  try {
    const saved = JSON.parse(await readFile(file, 'utf8')) as { key?: unknown; accel?: unknown; reason?: unknown };
    if (saved.key === key && (saved.accel === 'kvm' || saved.accel === 'tcg') && typeof saved.reason === 'string') {
      return { accel: saved.accel, reason: saved.reason, cached: true };
    }
  } catch {
    /* none yet, or not ours */
  }
  const result = await probeAccelDetailed(options);
  // A failure to run QEMU at all is not remembered: the next start should look again.
  if (!/cannot run qemu/.test(result.reason)) {
    const tmp = `${file}.${process.pid}.tmp`;
    try {
      await writeFile(tmp, `${JSON.stringify({ key, accel: result.accel, reason: result.reason })}\n`, { mode: 0o644 });
      await rename(tmp, file);
    } catch {
      await rm(tmp, { force: true });
    }
  }
  return { ...result, cached: false };
}
