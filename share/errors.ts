// Errors that cross process and socket boundaries: a stable code, a lowercase `what: why` message, a hint.
// Codes are asserted in tests and mapped by vmctl to OpenBSD's wording where OpenBSD has one.

export const ERROR_CODES = [
  'ERR_PROTOCOL',        // malformed, oversized or unknown message
  'ERR_VERSION',         // protocol version mismatch
  'ERR_PERMISSION',      // EPERM: not root / not the owner
  'ERR_VM_NOT_FOUND',    // ENOENT
  'ERR_VM_EXISTS',       // a VM of that name exists and options were given (EALREADY)
  'ERR_VM_RUNNING',      // already running (EALREADY)
  'ERR_VM_NOT_RUNNING',  // VMD_VM_STOP_INVALID / EINVAL
  'ERR_VM_STOPPING',     // already stopping without -f (EALREADY)
  'ERR_VM_PAUSED',
  'ERR_VM_NOT_PAUSED',
  'ERR_RATE_LIMIT',      // restarted too quickly
  'ERR_BIOS_MISSING',    // VMD_BIOS_MISSING
  'ERR_DISK_MISSING',    // VMD_DISK_MISSING
  'ERR_DISK_LOCKED',
  'ERR_CDROM_MISSING',   // VMD_CDROM_MISSING
  'ERR_CDROM_INVALID',   // VMD_CDROM_INVALID
  'ERR_PARENT_INVALID',  // VMD_PARENT_INVALID
  'ERR_NO_BOOT',         // no kernel or disk/cdrom specified
  'ERR_INVALID',         // bad argument
  'ERR_CONFIG',          // config file errors (reload/load)
  'ERR_CONSOLE_BUSY',
  'ERR_CONSOLE',
  'ERR_QEMU',            // QEMU failed to start or died
  'ERR_UNSUPPORTED',     // e.g. sev on this host
  'ERR_INTERRUPTED',
  'ERR_STREAM',          // a send/receive stream that is not one, too new, or truncated
  'ERR_INTERNAL',
  'ERR_USAGE',           // vmctl: bad command line (its usage is printed)
  'ERR_CONNECT',         // vmctl: the control socket cannot be reached
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface VmdErrorData {
  readonly code: ErrorCode;
  readonly message: string;
  readonly hint?: string;
}

/** The one error type that crosses boundaries; `toJSON` is what the socket carries. */
export class VmdError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options?: { hint?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'VmdError';
    this.code = code;
    this.hint = options?.hint;
  }

  toJSON(): VmdErrorData {
    return this.hint === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, hint: this.hint };
  }

  static from(data: VmdErrorData): VmdError {
    return new VmdError(data.code, data.message, data.hint === undefined ? undefined : { hint: data.hint });
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && (ERROR_CODES as readonly string[]).includes(value);
}

/** Wrap anything thrown into a VmdError without losing the original. */
export function toVmdError(err: unknown, code: ErrorCode = 'ERR_INTERNAL'): VmdError {
  if (err instanceof VmdError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new VmdError(code, message, { cause: err });
}
