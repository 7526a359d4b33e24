// Writes raw bytes into a running vmd role's end of its IPC channel from outside, as a subverted role could: a copy
// of the role's channel descriptor taken with pidfd_getfd(2) (root, or the role's own user), no hook in vmd itself.

import { readFileSync } from 'node:fs';
import { execa } from 'execa';

// pidfd_getfd is 438 on every architecture (the unified syscall table); Python's os has pidfd_open but not it.
const GETFD = `
import ctypes, os, select, sys
pid, fd = int(sys.argv[1]), int(sys.argv[2])
libc = ctypes.CDLL(None, use_errno=True)
copy = libc.syscall(438, os.pidfd_open(pid), fd, 0)
if copy < 0:
    raise OSError(ctypes.get_errno(), f'pidfd_getfd {pid} {fd}')
data = sys.stdin.buffer.read()
# The copy shares the role's open file, non-blocking: wait until writable rather than change its flags under the role.
while data:
    select.select([], [copy], [])
    try:
        data = data[os.write(copy, data):]
    except BlockingIOError:
        pass
`;

/** The descriptor of a Node child's IPC channel, as fork() told it in NODE_CHANNEL_FD. */
export function channelFd(pid: number): number {
  const env = readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0');
  const fd = env.find((e) => e.startsWith('NODE_CHANNEL_FD='))?.slice('NODE_CHANNEL_FD='.length);
  if (fd === undefined || !/^\d+$/.test(fd)) throw new Error(`pid ${pid}: no NODE_CHANNEL_FD, not a forked role`);
  return Number(fd);
}

/** Writes `bytes` into the role's channel as they are: a line that is not JSON, or one with no end. */
export async function injectBytes(pid: number, bytes: string): Promise<void> {
  await execa('python3', ['-c', GETFD, String(pid), String(channelFd(pid))], { input: bytes });
}

/** Sends `messages` to the parent as if the role with `pid` had: one JSON line each, in one write (Node's 'json' framing). */
export async function injectIntoChannel(pid: number, messages: readonly object[]): Promise<void> {
  await injectBytes(pid, messages.map((m) => `${JSON.stringify(m)}\n`).join(''));
}
