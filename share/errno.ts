// glibc's strerror(3) texts by errno name: the one errno table, for messages that quote a system error.
// The vm.conf parser and vmctl print them as C programs do; the daemon's `what: why` messages use them lowercased.

const STRERROR: Readonly<Record<string, string>> = {
  EPERM: 'Operation not permitted',
  ENOENT: 'No such file or directory',
  EINTR: 'Interrupted system call',
  EIO: 'Input/output error',
  ENXIO: 'No such device or address',
  EAGAIN: 'Resource temporarily unavailable',
  ENOMEM: 'Cannot allocate memory',
  EACCES: 'Permission denied',
  EBUSY: 'Device or resource busy',
  EEXIST: 'File exists',
  ENODEV: 'No such device',
  ENOTDIR: 'Not a directory',
  EISDIR: 'Is a directory',
  EINVAL: 'Invalid argument',
  EMFILE: 'Too many open files',
  ETXTBSY: 'Text file busy',
  EFBIG: 'File too large',
  ENOSPC: 'No space left on device',
  EROFS: 'Read-only file system',
  EPIPE: 'Broken pipe',
  ERANGE: 'Numerical result out of range',
  ENAMETOOLONG: 'File name too long',
  ELOOP: 'Too many levels of symbolic links',
  EOVERFLOW: 'Value too large for defined data type',
  ENOTSOCK: 'Socket operation on non-socket',
  EPROTOTYPE: 'Protocol wrong type for socket',
  EADDRINUSE: 'Address already in use',
  ENETDOWN: 'Network is down',
  ECONNRESET: 'Connection reset by peer',
  ETIMEDOUT: 'Connection timed out',
  ECONNREFUSED: 'Connection refused',
  EALREADY: 'Operation already in progress',
};

/** strerror(3) for an errno name such as `ENOENT` (Node's `err.code`); unknown names are printed as they are. */
export function strerror(code: string | undefined): string {
  if (code === undefined) return 'Unknown error';
  return STRERROR[code] ?? code;
}

/** vmd's own short wording for the errors a user most often meets on a path they named (`disk X: no such file`). */
const SHORT: Readonly<Record<string, string>> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EISDIR: 'is a directory',
  ELOOP: 'too many symbolic links',
};

/** The reason part of a `what: why` message for a system error: vmd's short form, else strerror(3) in lower case. */
export function errnoMessage(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (code !== undefined && SHORT[code] !== undefined) return SHORT[code];
  if (code !== undefined && STRERROR[code] !== undefined) return STRERROR[code].toLowerCase();
  return err instanceof Error ? err.message : String(err);
}
