// Packet capture on a guest's host link for `vmctl capture`: tcpdump in the link's namespace, its pcap relayed to the client.
// The parent runs it; no capture outlives its client, its VM or vmd itself (tcpdump dies with the parent: PR_SET_PDEATHSIG).

import { spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { VmdError } from '../share/errors.js';
import { logDebug, logInfo, logWarn } from './log.js';

/** Captures running at once, all VMs together: each is a process, and any VM owner may start them. */
export const MAX_CAPTURES = 32;

/** How long tcpdump may take to open the link and compile the filter. */
const START_TIMEOUT_MS = 10_000;

/** What one capture runs on and keeps. */
export interface CaptureSpec {
  /** The host link (tap) name. */
  readonly link: string;
  /** The namespace the link lives in (its rdomain), null for the host's own. */
  readonly netns: string | null;
  /** Who tcpdump runs as: it keeps CAP_NET_RAW and nothing else. */
  readonly uid: number;
  readonly gid: number;
  readonly count?: number;
  readonly snaplen?: number;
  readonly filter?: string;
}

/**
 * The command line of one capture. tcpdump must not drop privileges itself: a uid change clears the parent-death
 * signal (prctl(2)), and tcpdump would then outlive a killed vmd. So setpriv drops to the capture user first,
 * keeping only CAP_NET_RAW as an ambient capability, and sets the parent-death signal last, right before the exec.
 * `ip netns exec` enters the namespace and execs in place (no fork), so the parent of tcpdump is vmd itself.
 * The filter is one argument after `--`: tcpdump joins its words, and GNU getopt never reads it as options.
 */
export function captureArgv(spec: CaptureSpec): { file: string; args: string[] } {
  const tcpdump = [
    'tcpdump', '-i', spec.link, '-U', '--immediate-mode', '-w', '-',
    ...(spec.count === undefined ? [] : ['-c', String(spec.count)]),
    ...(spec.snaplen === undefined ? [] : ['-s', String(spec.snaplen)]),
    '--', ...(spec.filter === undefined ? [] : [spec.filter]),
  ];
  const setpriv = [
    'setpriv', `--reuid=${spec.uid}`, `--regid=${spec.gid}`, '--clear-groups',
    '--inh-caps=-all,+net_raw', '--ambient-caps=-all,+net_raw', '--bounding-set=-all,+net_raw',
    '--no-new-privs', '--pdeathsig=KILL', '--', ...tcpdump,
  ];
  const argv = spec.netns === null ? setpriv : ['ip', 'netns', 'exec', spec.netns, ...setpriv];
  return { file: argv[0] as string, args: argv.slice(1) };
}

/** Names for the error messages of one capture. */
export interface CaptureSubject {
  readonly vm: string;
  readonly index: number;
  readonly link: string;
  readonly filter?: string;
}

/** What tcpdump (or setpriv, or ip) said when it would not start, as a VmdError naming the VM and the filter. */
export function captureError(stderr: string, s: CaptureSubject): VmdError {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l.length > 0 && !/^tcpdump: (WARNING|listening on)/.test(l));
  const vm = `vm "${s.vm}"`;
  const exec = lines.map((l) => /^setpriv: failed to execute (\S+): (.*)$/.exec(l)).find((m) => m !== null);
  if (exec != null) {
    return exec[2] === 'No such file or directory'
      ? new VmdError('ERR_UNSUPPORTED', `${vm}: capture: ${exec[1]} is not installed`, { hint: 'install tcpdump on the host (apt-get install tcpdump)' })
      : new VmdError('ERR_INTERNAL', `${vm}: capture: ${exec[1]}: ${exec[2]}`);
  }
  const tcpdump = lines.filter((l) => l.startsWith('tcpdump: ')).map((l) => l.slice('tcpdump: '.length));
  const parse = tcpdump.map((l) => /^can't parse filter expression: (.*)$/.exec(l)).find((m) => m !== null);
  const filter = `filter "${s.filter ?? ''}"`;
  if (parse != null) return new VmdError('ERR_INVALID', `${vm}: ${filter}: ${parse[1]}`, { hint: 'see pcap-filter(7) for the syntax' });
  const first = tcpdump[0] ?? lines[0];
  if (first === undefined) return new VmdError('ERR_INTERNAL', `${vm}: interface ${s.index}: capture ended before it started`);
  // tcpdump names the link when opening it failed; anything else it says comes from compiling the filter.
  if (first.startsWith(`${s.link}: `) || s.filter === undefined) {
    return new VmdError('ERR_INVALID', `${vm}: interface ${s.index}: link ${first.startsWith(`${s.link}: `) ? first : `${s.link}: ${first}`}`);
  }
  return new VmdError('ERR_INVALID', `${vm}: ${filter}: ${first}`, { hint: 'see pcap-filter(7) for the syntax' });
}

interface Running {
  readonly vmId: number;
  readonly child: ChildProcess;
  readonly socket: Socket;
}

/** Every capture the parent runs: started per request, stopped with their client, their VM, or vmd. */
export class Captures {
  readonly #running = new Set<Running>();

  get size(): number {
    return this.#running.size;
  }

  /**
   * Starts tcpdump and waits until it listens. Then `header` (the reply frame) goes to the client, followed by
   * the pcap stream; the client's own bytes are read and dropped, only its close matters. Rejects with the
   * error to send back, having killed what it started.
   */
  // PRIV: tcpdump opens a packet socket on the link (CAP_NET_RAW), in the link's namespace.
  async start(vmId: number, subject: CaptureSubject, spec: CaptureSpec, socket: Socket, header: Buffer): Promise<void> {
    if (this.#running.size >= MAX_CAPTURES) {
      throw new VmdError('ERR_INVALID', `vm "${subject.vm}": capture: ${MAX_CAPTURES} captures are running already`, { hint: 'stop one of them first' });
    }
    const { file, args } = captureArgv(spec);
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const cap: Running = { vmId, child, socket };
    this.#running.add(cap);
    let stderr = '';
    const early: Buffer[] = [];
    const onEarly = (chunk: Buffer): void => { early.push(chunk); };
    child.stdout!.on('data', onEarly);
    child.stderr!.on('data', (chunk: Buffer) => {
      // Bounded: only the start-up messages matter, and the final statistics at most reach the debug log.
      if (stderr.length < 16_384) stderr += chunk.toString('utf8');
    });
    const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
    void exited.then(() => {
      this.#running.delete(cap);
      logDebug(`capture on ${spec.link}: ended (${stderr.trim().split('\n').slice(-3).join('; ')})`);
    });
    // The client's bytes are never read as anything; reading them is how its close is noticed.
    socket.on('data', () => undefined);
    socket.on('error', () => socket.destroy());
    socket.once('close', () => this.#kill(cap));
    socket.resume();

    let started = await new Promise<'ready' | 'exited' | 'closed' | 'timeout'>((resolve) => {
      const timer = setTimeout(() => resolve('timeout'), START_TIMEOUT_MS);
      const check = (): void => {
        if (/listening on /.test(stderr)) {
          clearTimeout(timer);
          resolve('ready');
        }
      };
      child.stderr!.on('data', check);
      child.once('error', (err) => {
        stderr += `\nsetpriv: failed to execute ${file}: ${err.message}`;
      });
      void exited.then(() => { clearTimeout(timer); check(); resolve('exited'); });
      socket.once('close', () => { clearTimeout(timer); resolve('closed'); });
    });
    // A client gone before its socket reached us has no 'close' left to notice: treat it as gone now.
    if (started === 'ready' && socket.destroyed) started = 'closed';
    if (started !== 'ready') {
      this.#kill(cap);
      if (started === 'timeout') throw new VmdError('ERR_INTERNAL', `vm "${subject.vm}": interface ${subject.index}: capture did not start in time`);
      if (started === 'closed') throw new VmdError('ERR_INTERRUPTED', `vm "${subject.vm}": capture: client went away`);
      throw captureError(stderr, subject);
    }
    logInfo(`capture on ${spec.link} (vm "${subject.vm}" interface ${subject.index})${spec.filter === undefined ? '' : ` filter "${spec.filter}"`}: started`);
    child.stdout!.off('data', onEarly);
    socket.write(header);
    for (const chunk of early) socket.write(chunk);
    // tcpdump's exit (count reached, killed) ends its stdout, and with it the client's stream.
    child.stdout!.pipe(socket);
  }

  /** The VM stopped: its captures end (its taps are gone anyway). */
  stopVm(vmId: number): void {
    for (const cap of this.#running) if (cap.vmId === vmId) this.#kill(cap);
  }

  /** vmd's orderly exit: every capture ends, and is waited for (a second at most). */
  async stopAll(): Promise<void> {
    const all = [...this.#running];
    for (const cap of all) this.#kill(cap);
    await Promise.all(all.map((cap) => new Promise<void>((resolve) => {
      if (cap.child.exitCode !== null || cap.child.signalCode !== null) resolve();
      else {
        const timer = setTimeout(resolve, 1000);
        cap.child.once('close', () => { clearTimeout(timer); resolve(); });
      }
    })));
  }

  /** SIGTERM lets tcpdump flush what it holds; SIGKILL follows if it lingers. */
  #kill(cap: Running): void {
    const { child } = cap;
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => {
      if (child.exitCode === null && child.signalCode === null) {
        logWarn(`capture pid ${child.pid ?? '?'}: did not exit on SIGTERM, killing it`);
        child.kill('SIGKILL');
      }
    }, 2000);
    timer.unref();
    child.once('close', () => clearTimeout(timer));
  }
}
