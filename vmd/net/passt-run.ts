// Running passt for a guest: started before QEMU, as QEMU's user, detached like QEMU; found again through its
// pid file in the run directory after a vmd restart, and killed by it when the guest is gone.

import { spawn } from 'node:child_process';
import { execa } from 'execa';
import { closeSync, existsSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { errnoMessage } from '../../share/errno.js';
import { VmdError } from '../../share/errors.js';
import type { PasstConfig } from '../../share/config.js';
import { passtArgv, passtNatOf, type PasstSpec } from './passt.js';

/** How long passt may take to listen on its socket (it probes the host's routes and sandboxes itself first). */
const READY_TIMEOUT_MS = 10_000;

/** The run-directory files of NIC `index`'s passt. */
export function passtFiles(runDir: string, index: number): { socket: string; pidFile: string; logFile: string } {
  return { socket: join(runDir, `passt${index}.sock`), pidFile: join(runDir, `passt${index}.pid`), logFile: join(runDir, `passt${index}.log`) };
}

/** Whether passt is installed (on PATH): a rootless vmd then prefers it to QEMU's user-mode NAT. */
export function passtInstalled(path = process.env.PATH ?? ''): boolean {
  return path.split(delimiter).some((d) => d !== '' && existsSync(join(d, 'passt')));
}

/** Whether a Unix socket is listening at `path` (in this network namespace), read from /proc/net/unix without connecting. */
function unixListening(path: string): boolean {
  // A probe connection would be passt's one client (--one-off): it would serve it and exit.
  const text = readFileSync('/proc/net/unix', 'utf8');
  return text.split('\n').some((l) => {
    const f = l.trim().split(/\s+/);
    return f[7] === path && f[3] === '00010000';
  });
}

/** The live passt process whose pid file is `pidFile` and whose command line names `socket`, or null. */
export function passtPidOf(pidFile: string, socket: string): number | null {
  try {
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    if (!Number.isSafeInteger(pid) || pid <= 1) return null;
    // The pid may have been reused since: only a passt serving this very socket is ours.
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return argv.some((a) => /(^|\/)passt(\.avx2)?$/.test(a)) && argv.includes(socket) ? pid : null;
  } catch {
    return null;
  }
}

/** The last ERROR lines of a passt log, for a start failure's message. */
function logTail(path: string): string {
  try {
    const lines = readFileSync(path, 'utf8').split('\n').filter((l) => /ERROR|WARNING/.test(l));
    return lines.slice(-2).map((l) => l.replace(/^[0-9.]+: (ERROR|WARNING):\s*/, '')).join('; ');
  } catch {
    return '';
  }
}

/**
 * Starts one passt and resolves once its socket listens (QEMU's `-netdev stream` connects at once and fails on a
 * missing socket). `identity` is the user it runs as when vmd is root. Returns its pid (from its pid file: passt
 * re-forks into a pid namespace of its own, so the spawned pid is not the one that stays).
 */
// PRIV: spawns passt as QEMU's unprivileged user; passt then sandboxes itself (namespaces, seccomp).
export async function passtStart(spec: PasstSpec, opts: { vm: string; index: number; identity: { uid: number; gid: number } | null; cwd: string }): Promise<number> {
  const what = `vm "${opts.vm}": interface ${opts.index}: passt`;
  const err = openSync(`${spec.logFile}.stderr`, 'w', 0o640);
  let exit: number | null = null;
  try {
    const child = spawn('passt', passtArgv(spec), {
      detached: true, stdio: ['ignore', 'ignore', err], cwd: opts.cwd,
      ...(opts.identity === null ? {} : { uid: opts.identity.uid, gid: opts.identity.gid }),
    });
    const spawnError = await new Promise<Error | null>((resolve) => {
      child.once('spawn', () => resolve(null));
      child.once('error', (e) => resolve(e));
    });
    if (spawnError !== null) throw new VmdError('ERR_UNSUPPORTED', `${what}: ${errnoMessage(spawnError)}`, { cause: spawnError, hint: 'install passt (Debian package passt)' });
    child.once('exit', (code) => { exit = code ?? 1; });
    child.unref();
  } finally {
    closeSync(err);
  }
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const pid = passtPidOf(spec.pidFile, spec.socket);
    if (pid !== null && unixListening(spec.socket)) return pid;
    if (exit !== null && exit !== 0) {
      const tail = logTail(spec.logFile);
      throw new VmdError('ERR_QEMU', `${what}: ${tail || `exited with status ${exit}`}`, /External interface not usable/.test(tail)
        ? { hint: 'passt needs a host interface with an IPv4 address and a default route' }
        : {});
    }
    if (Date.now() > deadline) {
      if (pid !== null) passtKill(pid);
      throw new VmdError('ERR_QEMU', `${what}: not listening after ${READY_TIMEOUT_MS / 1000} s${logTail(spec.logFile) ? `: ${logTail(spec.logFile)}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

function passtKill(pid: number): void {
  try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
}

/** Kills every passt a run directory's pid files name (a stopped, failed or vanished guest's); returns how many. */
export function passtStopAll(runDir: string): number {
  let n = 0;
  let files: string[];
  try { files = readdirSync(runDir); } catch { return 0; }
  for (const f of files) {
    const m = /^passt(\d+)\.pid$/.exec(f);
    if (m === null) continue;
    const pid = passtPidOf(join(runDir, f), passtFiles(runDir, Number(m[1])).socket);
    if (pid !== null) { passtKill(pid); n++; }
  }
  return n;
}

/**
 * The address a passt NIC's guest is given: qemu style, the configured one; real-addr, the first IPv4 address of
 * the outward interface (`dev`, else the one with the default route), as passt picks it. Null when there is none.
 */
export async function passtGuestAddress(config: PasstConfig): Promise<string | null> {
  if (config.address !== null) return `${passtNatOf(config.address).address}/${passtNatOf(config.address).length}`;
  try {
    let dev = config.dev;
    if (dev === null) {
      const routes = JSON.parse((await execa('ip', ['-j', '-4', 'route', 'show', 'default'])).stdout) as Array<{ dev?: string }>;
      dev = routes[0]?.dev ?? null;
    }
    if (dev === null) return null;
    const links = JSON.parse((await execa('ip', ['-j', '-4', 'address', 'show', 'dev', dev])).stdout) as Array<{ addr_info?: Array<{ local?: string; prefixlen?: number }> }>;
    const a = links[0]?.addr_info?.[0];
    return a?.local === undefined ? null : `${a.local}/${a.prefixlen ?? 32}`;
  } catch {
    return null;
  }
}
