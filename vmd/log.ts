// Logging for every vmd role: to syslog (facility daemon, program `vmd`) when detached, to stderr with a timestamp under -d.
// Levels follow OpenBSD's log.c: warnings and info always, debug with -v, more with -vv.

import { hostname } from 'node:os';
import { dgramSend } from './native.js';

/** `syslog` (a detached daemon) or `stderr` (under -d, timestamped): set by the parent, inherited by its roles. */
export const LOG_TARGET_ENV = 'VMD_LOG_TARGET';
export const DEFAULT_SYSLOG_SOCKET = '/dev/log';

/** RFC 5424 severities; the facility is daemon (3), as OpenBSD's vmd logs with LOG_DAEMON. */
const FACILITY_DAEMON = 3;
type Severity = 4 | 6 | 7;

let role: string | null = null;
let verbosity = 0;
let syslogPath: string | null = null;
let timestamps = false;

/**
 * Name this process in its lines (`vmm: …`) and choose syslog (detached: VMD_LOG_TARGET=syslog, which the roles
 * inherit) or stderr, timestamped for a daemon under -d (not for `vmd -n`, whose output tests compare byte for byte).
 */
export function logInit(name: string | null, verbose: number, opts: { timestamps?: boolean; env?: NodeJS.ProcessEnv } = {}): void {
  const env = opts.env ?? process.env;
  role = name;
  verbosity = verbose;
  timestamps = opts.timestamps ?? env[LOG_TARGET_ENV] === 'stderr';
  syslogPath = env[LOG_TARGET_ENV] === 'syslog' ? syslogSocket(env) : null;
}

export function syslogSocket(env: NodeJS.ProcessEnv = process.env): string {
  return env.VMD_SYSLOG_SOCKET && env.VMD_SYSLOG_SOCKET.length > 0 ? env.VMD_SYSLOG_SOCKET : DEFAULT_SYSLOG_SOCKET;
}

/** `vmctl log brief|verbose` changes this at run time. */
export function logSetVerbose(level: number): void {
  verbosity = level;
}

export function logVerbose(): number {
  return verbosity;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** An RFC 3164 datagram: `<PRI>Mmm dd hh:mm:ss host vmd[pid]: message`, what syslog(3) sends and every daemon reads. */
export function syslogLine(severity: number, message: string, now: Date, pid: number, host: string = hostname()): string {
  const two = (n: number): string => String(n).padStart(2, '0');
  const stamp = `${MONTHS[now.getMonth()]} ${String(now.getDate()).padStart(2, ' ')} ${two(now.getHours())}:${two(now.getMinutes())}:${two(now.getSeconds())}`;
  // One line per datagram: a newline inside would be shown as a second, unattributed entry.
  return `<${FACILITY_DAEMON * 8 + severity}>${stamp} ${host} vmd[${pid}]: ${message.replace(/\n/g, ' ')}`;
}

/** A stderr line, `vmd/vmm: message`; under -d led by the local time with milliseconds. */
export function stderrLine(message: string, now: Date): string {
  const offset = now.getTimezoneOffset() * 60_000;
  const stamp = timestamps ? `${new Date(now.getTime() - offset).toISOString().slice(0, 23).replace('T', ' ')} ` : '';
  return `${stamp}vmd${role === null ? '' : `/${role}`}: ${message}\n`;
}

function write(severity: Severity, message: string): void {
  const now = new Date();
  if (syslogPath !== null) {
    try {
      dgramSend(syslogPath, Buffer.from(syslogLine(severity, role === null ? message : `${role}: ${message}`, now, process.pid)));
      return;
    } catch {
      // No syslog daemon (or it is full): the line goes to stderr, a detached vmd's vmd.log in the state directory.
    }
  }
  process.stderr.write(stderrLine(message, now));
}

export function logWarn(message: string): void {
  write(4, message);
}

export function logInfo(message: string): void {
  write(6, message);
}

export function logDebug(message: string): void {
  if (verbosity >= 1) write(7, message);
}

export function logTrace(message: string): void {
  if (verbosity >= 2) write(7, message);
}
