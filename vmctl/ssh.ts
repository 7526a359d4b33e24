// vmctl -H: reaches another host's vmd through the system's OpenSSH client (the user's own keys, agent and config),
// which runs `vmctl relay` there; the relay's stdin and stdout carry the control protocol unchanged.

import { spawn, type ChildProcess } from 'node:child_process';
import { Duplex } from 'node:stream';
import { ControlClient } from './client.js';
import { CliError } from './errors.js';

/** A `-H` operand taken apart: ssh's destination (`user@host`) and the port, if one was given. */
export interface SshTarget {
  readonly destination: string;
  readonly port: number | undefined;
}

/** The remote command when VMCTL_RELAY does not name another (a vmctl that is not on the remote PATH, a socket elsewhere). */
export const DEFAULT_RELAY = 'vmctl relay';

/**
 * Reads `[user@]host[:port]` (`[user@][v6addr]:port` for an IPv6 address with a port). A word starting with `-`
 * is refused: ssh would read it as an option (`-oProxyCommand=…` runs a command), whatever `--` comes before it.
 */
export function parseHost(word: string): SshTarget {
  const bad = (why: string): CliError => new CliError(`host "${word}": ${why}`, 'ERR_USAGE');
  if (word.length === 0) throw bad('empty host name');
  if (word.startsWith('-')) throw bad('a host name cannot start with "-"');
  if (/[\s\0]/.test(word)) throw bad('a host name cannot contain white space');
  const at = word.lastIndexOf('@');
  const user = at < 0 ? '' : word.slice(0, at + 1);
  const rest = word.slice(at + 1);
  if (at === 0 || rest.length === 0) throw bad('expected [user@]host[:port]');
  // A bare IPv6 address (two colons or more) cannot carry a port: brackets say where the address ends.
  if (/^[0-9A-Fa-f]*:[0-9A-Fa-f]*:[0-9A-Fa-f:.%\w]*$/.test(rest)) return { destination: `${user}${rest}`, port: undefined };
  const m = /^\[([0-9A-Fa-f:.%\w]+)\](?::(\d+))?$/.exec(rest) ?? /^([^:[\]]+)(?::(\d+))?$/.exec(rest);
  if (m === null) throw bad('expected [user@]host[:port]');
  const port = m[2] === undefined ? undefined : Number(m[2]);
  if (port !== undefined && (port < 1 || port > 65535)) throw bad(`port ${port} is out of range (1 to 65535)`);
  return { destination: `${user}${m[1] as string}`, port };
}

/**
 * ssh's argv: VMCTL_SSH (default `ssh`, split at white space, no shell) for a program or options of the user's own,
 * then no tty (the protocol is binary), no X11 or agent forwarding, the port, `--`, the destination, the remote command.
 */
export function sshArgv(target: SshTarget, env: NodeJS.ProcessEnv): string[] {
  const ssh = (env.VMCTL_SSH ?? '').trim().split(/\s+/).filter((w) => w.length > 0);
  const relay = env.VMCTL_RELAY !== undefined && env.VMCTL_RELAY.trim() !== '' ? env.VMCTL_RELAY : DEFAULT_RELAY;
  return [
    ...(ssh.length > 0 ? ssh : ['ssh']), '-T', '-x', '-a',
    ...(target.port === undefined ? [] : ['-p', String(target.port)]),
    '--', target.destination, relay,
  ];
}

/** How long ssh's own stderr may grow before older text is dropped: only its last words explain a failure. */
const STDERR_KEEP = 4096;

/** The command a user can try by hand to see what ssh says about a host. */
function sshTry(host: string): string {
  const t = parseHost(host);
  return `ssh ${t.port === undefined ? '' : `-p ${t.port} `}${t.destination} true`;
}

/** Why the ssh session ended, worded for `vmctl: host "h": …`, with a hint where one fix is likely. */
export function explainExit(host: string, code: number | null, stderr: string, signal: NodeJS.Signals | null = null): CliError {
  if (code === null) return new CliError(`host "${host}": ssh: killed by ${signal ?? 'a signal'}`, 'ERR_CONNECT');
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
  const last = lines[lines.length - 1] ?? '';
  if (code === 255) {
    const hint = /Permission denied|publickey/i.test(last)
      ? `check that ssh reaches it: ${sshTry(host)} (keys, agent, ~/.ssh/config)`
      : /resolve|Connection refused|timed out|No route/i.test(last) ? 'check the host name and port, and that sshd runs there' : undefined;
    const why = last.replace(/^ssh:\s*/, '');
    return new CliError(`host "${host}": ssh: ${why.length > 0 ? why : 'connection failed'}`, 'ERR_CONNECT', hint === undefined ? undefined : { hint });
  }
  if (code === 127 || (/command not found|No such file/i.test(last) && !/connect:/.test(last))) {
    return new CliError(`host "${host}": relay: ${last.length > 0 ? last : `exit status ${String(code)}`}`, 'ERR_CONNECT',
      { hint: 'install vmd there, or name the remote command in VMCTL_RELAY' });
  }
  const why = last.replace(/^vmctl:\s*/, '');
  return new CliError(`host "${host}": ${why.length > 0 ? why : `the relay exited with status ${String(code)}`}`, 'ERR_CONNECT');
}

/**
 * The ssh child's stdin and stdout as one stream. Its end (or its error, with ssh's words) comes only once ssh has
 * exited, so the reason is known before the client reports a closed pipe; destroying it ends the ssh session.
 */
class SshStream extends Duplex {
  readonly #child: ChildProcess;
  #stderr = '';
  #exited = false;

  constructor(child: ChildProcess, host: string) {
    super({ allowHalfOpen: true });
    this.#child = child;
    const out = child.stdout as NodeJS.ReadableStream;
    out.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) out.pause();
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      this.#stderr = (this.#stderr + chunk.toString('utf8')).slice(-STDERR_KEEP);
    });
    // A write after ssh died must not crash vmctl: the exit below explains the failure.
    child.stdin?.on('error', () => undefined);
    child.once('error', (err: NodeJS.ErrnoException) => {
      this.#exited = true;
      const hint = err.code === 'ENOENT' ? 'install OpenSSH\'s client (openssh-client), or name the program in VMCTL_SSH' : undefined;
      this.destroy(new CliError(`host "${host}": ssh: ${err.code === 'ENOENT' ? 'not found' : err.message}`, 'ERR_CONNECT', { cause: err, ...(hint === undefined ? {} : { hint }) }));
    });
    child.once('close', (code: number | null, signal: NodeJS.Signals | null) => {
      this.#exited = true;
      if (code === 0) this.push(null);
      else if (!this.destroyed) this.destroy(explainExit(host, code, this.#stderr, signal));
    });
  }

  /** What ssh said so far (`-v` prints it when the session worked). */
  get sshStderr(): string {
    return this.#stderr;
  }

  override _read(): void {
    (this.#child.stdout as NodeJS.ReadableStream).resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    const stdin = this.#child.stdin;
    if (stdin === null || stdin.destroyed) {
      done();
      return;
    }
    if (stdin.write(chunk)) done();
    else stdin.once('drain', () => done());
  }

  override _final(done: (err?: Error | null) => void): void {
    this.#child.stdin?.end();
    done();
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    if (!this.#exited) this.#child.kill('SIGTERM');
    this.#child.stdin?.destroy();
    done(err);
  }
}

/** Starts ssh to the host's relay and wraps it as a control client; failures surface on the first request. */
export function sshConnect(host: string, env: NodeJS.ProcessEnv, stderr: NodeJS.WritableStream, verbose: number): Promise<ControlClient> {
  const argv = sshArgv(parseHost(host), env);
  if (verbose > 1) stderr.write(`vmctl: running ${argv.join(' ')}\n`);
  const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], env });
  const stream = new SshStream(child, host);
  if (verbose > 0) stream.on('end', () => { if (stream.sshStderr.length > 0) stderr.write(stream.sshStderr); });
  return Promise.resolve(ControlClient.fromStream(`host "${host}"`, stream));
}
