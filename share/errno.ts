// glibc's strerror(3) texts by errno name, for messages that quote a system error as C programs print it.
// Shared by the vm.conf parser (`failed to open X: No such file or directory`) and vmctl.

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
  ENOTDIR: 'Not a directory',
  EISDIR: 'Is a directory',
  EINVAL: 'Invalid argument',
  EMFILE: 'Too many open files',
  ENOSPC: 'No space left on device',
  EPIPE: 'Broken pipe',
  ERANGE: 'Numerical result out of range',
  ENAMETOOLONG: 'File name too long',
  ELOOP: 'Too many levels of symbolic links',
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
