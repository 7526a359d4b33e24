// Tests for vmctl/errors: every daemon error code gets OpenBSD's words where OpenBSD has them, per command.
// The words are those of OpenBSD's vmctl.c (vm_start_complete, terminate_vm_complete, pause_vm_complete, vmmaction).
import t from 'tap';
import { ERROR_CODES, type ErrorCode } from '../../share/errors.js';
import { errorMessage, errnoOf, strerror, type ErrorContext } from '../../vmctl/errors.js';

const err = (code: ErrorCode, message = `daemon says ${code}`) => ({ code, message });

t.test('strerror texts are glibc\'s', async (t) => {
  t.equal(strerror('ENOENT'), 'No such file or directory');
  t.equal(strerror('ECONNREFUSED'), 'Connection refused');
  t.equal(strerror('EACCES'), 'Permission denied');
  t.equal(strerror('EPERM'), 'Operation not permitted');
  t.equal(strerror('EALREADY'), 'Operation already in progress');
  t.equal(strerror('EWHATEVER'), 'EWHATEVER');
});

t.test('start', async (t) => {
  const cases: [ErrorCode, string][] = [
    ['ERR_BIOS_MISSING', 'vmm bios firmware file not found.'],
    ['ERR_DISK_MISSING', 'could not open disk image(s)'],
    ['ERR_CDROM_MISSING', 'could not find specified iso image'],
    ['ERR_CDROM_INVALID', 'specified iso image is not a regular file'],
    ['ERR_PARENT_INVALID', 'invalid template'],
    ['ERR_NO_BOOT', 'no kernel or disk/cdrom specified'],
    ['ERR_PERMISSION', 'start vm command failed: Operation not permitted'],
    ['ERR_RATE_LIMIT', 'start vm command failed: Operation not permitted'],
    ['ERR_VM_RUNNING', 'start vm command failed: Operation already in progress'],
    ['ERR_VM_EXISTS', 'start vm command failed: Operation already in progress'],
    ['ERR_VM_NOT_FOUND', 'start vm command failed: No such file or directory'],
    ['ERR_QEMU', 'daemon says ERR_QEMU'],
  ];
  for (const [code, want] of cases) t.equal(errorMessage('start', err(code)), want, code);
});

t.test('stop and wait complete the "stopping vm NAME: " line', async (t) => {
  for (const ctx of ['stop', 'wait'] as const) {
    t.equal(errorMessage(ctx, err('ERR_VM_NOT_FOUND')), 'vm not found');
    t.equal(errorMessage(ctx, err('ERR_VM_NOT_RUNNING')), 'cannot stop vm that is not running');
    t.equal(errorMessage(ctx, err('ERR_VM_STOPPING')), 'failed: Operation already in progress');
    t.equal(errorMessage(ctx, err('ERR_PERMISSION')), 'failed: Operation not permitted');
    t.equal(errorMessage(ctx, err('ERR_INTERRUPTED')), 'interrupted call');
    t.equal(errorMessage(ctx, err('ERR_QEMU', 'qmp: timeout')), 'failed: qmp: timeout');
  }
});

t.test('pause, unpause, console', async (t) => {
  t.equal(errorMessage('pause', err('ERR_PERMISSION')), 'pause vm command failed: Operation not permitted');
  t.equal(errorMessage('unpause', err('ERR_VM_NOT_FOUND')), 'unpause vm command failed: No such file or directory');
  t.equal(errorMessage('pause', err('ERR_VM_PAUSED', 'vm web is already paused')), 'vm web is already paused');
  t.equal(errorMessage('console', err('ERR_VM_NOT_FOUND')), 'console not found');
  t.equal(errorMessage('console', err('ERR_VM_NOT_RUNNING')), 'console not found');
  t.equal(errorMessage('console', err('ERR_CONSOLE_BUSY', 'console busy: vm web is attached by another vmctl')),
    'console busy: vm web is attached by another vmctl');
});

t.test('root-only commands fail as the control gate answers', async (t) => {
  for (const ctx of ['load', 'reload', 'reset', 'log', 'status'] as const) {
    t.equal(errorMessage(ctx, err('ERR_PERMISSION')), 'command failed: Operation not permitted', ctx);
    t.equal(errorMessage(ctx, err('ERR_CONFIG', '/etc/vm.conf:3: syntax error')), '/etc/vm.conf:3: syntax error', ctx);
  }
});

t.test('every code has some message in every context', async (t) => {
  const contexts: ErrorContext[] = ['start', 'stop', 'wait', 'pause', 'unpause', 'console', 'status', 'load', 'reload', 'reset', 'log'];
  let withErrno = 0;
  for (const code of ERROR_CODES) {
    for (const c of contexts) t.ok(errorMessage(c, err(code)).length > 0, `${c} ${code}`);
    const errno = errnoOf(code);
    if (errno === undefined) continue;
    withErrno++;
    t.not(strerror(errno), errno, `${errno} has a strerror text`);
  }
  t.ok(withErrno > 0, `codes with an errno were checked (${withErrno})`);
});
