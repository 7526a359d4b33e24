// How vmctl fails: its own error types, libc's strerror texts, and the mapping of vmd's error codes to OpenBSD's wording.
// Every command reports through here so that the same daemon error reads the same way OpenBSD's vmctl would print it.

import type { ErrorCode, VmdErrorData } from '../share/errors.js';
import { strerror } from '../share/errno.js';
import { MAX_SOCKET_PATH_BYTES } from '../share/paths.js';

export { strerror };

/** A failure to report as `vmctl: <message>` and exit 1; `code` is what --json prints. */
export class CliError extends Error {
  /** The line after the message that names the likely fix, printed as `vmctl: hint: …`. */
  readonly hint: string | undefined;

  constructor(message: string, readonly code: ErrorCode = 'ERR_INVALID', options?: { hint?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CliError';
    this.hint = options?.hint;
  }
}

/** Bad command-line syntax: the command's usage is printed and vmctl exits 1, as OpenBSD's ctl_usage(). */
export class UsageError extends Error {
  constructor() {
    super('usage');
    this.name = 'UsageError';
  }
}

/** glibc's strerror(3) texts for the errno names vmctl can meet; Node only offers libuv's lowercase variants. */

/** The text after `vmctl: ` for a failed system call, as err(3) prints it: `what: strerror`. */
export function sysMessage(what: string, err: unknown): string {
  const code = typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
  return `${what}: ${strerror(code)}`;
}

/** The errno OpenBSD's vmd answers where we answer with a code; codes without one keep the daemon's own message. */
const ERRNO_OF: Partial<Readonly<Record<ErrorCode, string>>> = {
  ERR_PERMISSION: 'EPERM',
  ERR_RATE_LIMIT: 'EPERM',
  ERR_VM_NOT_FOUND: 'ENOENT',
  ERR_VM_EXISTS: 'EALREADY',
  ERR_VM_RUNNING: 'EALREADY',
  ERR_VM_STOPPING: 'EALREADY',
  ERR_VM_NOT_RUNNING: 'EINVAL',
  ERR_INTERRUPTED: 'EINTR',
};

/** The errno name OpenBSD's vmd would have used for a code, if it has one. */
export function errnoOf(code: ErrorCode): string | undefined {
  return ERRNO_OF[code];
}

/** Which command saw the error: OpenBSD words the same errno differently per command. */
export type ErrorContext =
  | 'start' | 'stop' | 'wait' | 'pause' | 'unpause' | 'console'
  | 'status' | 'load' | 'reload' | 'reset' | 'log' | 'send' | 'receive' | 'migrate';

/** start's VMD_* results, worded as vm_start_complete() prints them. */
const START_MESSAGES: Partial<Readonly<Record<ErrorCode, string>>> = {
  ERR_BIOS_MISSING: 'vmm bios firmware file not found.',
  ERR_DISK_MISSING: 'could not open disk image(s)',
  ERR_CDROM_MISSING: 'could not find specified iso image',
  ERR_CDROM_INVALID: 'specified iso image is not a regular file',
  ERR_PARENT_INVALID: 'invalid template',
  ERR_NO_BOOT: 'no kernel or disk/cdrom specified',
};

/**
 * The message for a daemon error in a command's context, without the `vmctl: ` prefix. For stop and wait it is the
 * rest of the `stopping vm NAME: ` line, as terminate_vm_complete() prints it. Codes OpenBSD has no wording for keep
 * the daemon's message.
 */
export function errorMessage(context: ErrorContext, error: VmdErrorData): string {
  const errno = errnoOf(error.code);
  switch (context) {
    case 'start':
      if (START_MESSAGES[error.code] !== undefined) return START_MESSAGES[error.code] as string;
      return errno === undefined ? error.message : `start vm command failed: ${strerror(errno)}`;
    case 'stop':
    case 'wait':
      if (error.code === 'ERR_VM_NOT_FOUND') return 'vm not found';
      if (error.code === 'ERR_VM_NOT_RUNNING') return 'cannot stop vm that is not running';
      if (error.code === 'ERR_INTERRUPTED') return 'interrupted call';
      return `failed: ${errno === undefined ? error.message : strerror(errno)}`;
    case 'pause':
    case 'unpause':
      return errno === undefined ? error.message : `${context} vm command failed: ${strerror(errno)}`;
    case 'console':
      if (error.code === 'ERR_VM_NOT_FOUND' || error.code === 'ERR_VM_NOT_RUNNING') return 'console not found';
      return errno === undefined ? error.message : `failed to open the console: ${strerror(errno)}`;
    case 'send':
    case 'receive':
    case 'migrate':
      // OpenBSD had no wording of its own here beyond the control gate's EPERM; vmd's message names the cause.
      return error.code === 'ERR_PERMISSION' ? `command failed: ${strerror('EPERM')}` : error.message;
    default:
      // IMSG_CTL_FAIL with an errno: what the control gate answers to load, reload, reset and log from non-root.
      return errno === undefined ? error.message : `command failed: ${strerror(errno)}`;
  }
}

/** Whether errorMessage() replaced the daemon's words, so `-v` should show them as well. */
export function isMapped(context: ErrorContext, error: VmdErrorData): boolean {
  return errorMessage(context, error) !== error.message && !errorMessage(context, error).endsWith(`: ${error.message}`);
}

/** Connecting to a socket path longer than a unix socket address holds: refused before any connect (share/paths.ts). */
export function longSocketError(path: string): CliError {
  return new CliError(`connect: ${path}: ${strerror('ENAMETOOLONG')}`, 'ERR_CONNECT',
    { hint: `a unix socket path holds at most ${MAX_SOCKET_PATH_BYTES} bytes: set VMD_SOCKET to a shorter one` });
}
