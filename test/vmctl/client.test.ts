// Protocol tests of vmctl's client side: the compiled vmctl against a throwaway Unix-socket server speaking the framing.
// Each test scripts the replies and checks the requests vmctl sent and what it printed, byte for byte.
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { execa } from 'execa';
import { packageRoot, vmctlEntry } from '../../share/paths.js';
import type { VmInfo } from '../../share/protocol.js';
import { fakeVmd, runVmctl, STATUS_FIXTURE, type Handler } from './harness.js';

const goldenDir = join(packageRoot, 'test', 'vmctl', 'golden');

async function withVmd(t: Test, handler: Handler) {
  const vmd = await fakeVmd(handler);
  t.teardown(() => vmd.close());
  return vmd;
}

const statusReply = (req: Record<string, unknown>, vms: readonly VmInfo[] = STATUS_FIXTURE, warnings: string[] = []) =>
  ({ type: 'vm.status.response', id: req.id, vms, warnings });

t.test('no daemon: connect error and exit 1', async (t) => {
  const path = join(tmpdir(), `vmctl-missing-${process.pid}.sock`);
  const r = await runVmctl(['status'], { socket: path });
  t.same(r, { exitCode: 1, stdout: '', stderr: `vmctl: connect: ${path}: No such file or directory\n` });
});

t.test('status: the request, the table (golden), warnings, exit status', async (t) => {
  const vmd = await withVmd(t, (req) => statusReply(req, STATUS_FIXTURE, ['state database is being migrated']));
  const r = await runVmctl(['stat'], { socket: vmd.path });
  t.equal(r.exitCode, 0);
  t.equal(r.stdout, readFileSync(join(goldenDir, 'status.txt'), 'utf8'));
  t.equal(r.stderr, 'vmctl: warning: state database is being migrated\n');
  t.same(vmd.requests, [{ v: 1, id: 1, type: 'vm.status.request' }]);

  const one = await runVmctl(['show', '3'], { socket: vmd.path });
  t.equal(one.stdout, readFileSync(join(goldenDir, 'status-id.txt'), 'utf8'));
  const running = await runVmctl(['status', '-r'], { socket: vmd.path });
  t.equal(running.stdout, readFileSync(join(goldenDir, 'status-r.txt'), 'utf8'));
});

t.test('status with nothing to show exits 1', async (t) => {
  const vmd = await withVmd(t, (req) => statusReply(req, [STATUS_FIXTURE[1]!]));
  const r = await runVmctl(['status', '-r'], { socket: vmd.path });
  t.same(r, { exitCode: 1, stdout: readFileSync(join(goldenDir, 'status-empty.txt'), 'utf8'), stderr: '' });
  const other = await runVmctl(['status', 'nosuchvm'], { socket: vmd.path });
  t.equal(other.exitCode, 0, 'an id that matches nothing is not a failure');
});

t.test('a listing over 1 MiB (8,000 VMs) is read whole: replies may exceed the request bound', async (t) => {
  const many = Array.from({ length: 8000 }, (_, i) => ({ ...STATUS_FIXTURE[0]!, id: i + 1, name: `vm${i}` }));
  const vmd = await withVmd(t, (req) => statusReply(req, many));
  const r = await runVmctl(['status'], { socket: vmd.path });
  t.equal(r.exitCode, 0, r.stderr);
  t.equal(r.stdout.trim().split('\n').length, 8001, 'the header and every VM');
});

t.test('--json prints the reply as it came, and asks the daemon to filter', async (t) => {
  let sent: unknown;
  const vmd = await withVmd(t, (req) => {
    sent = { ...statusReply(req, [STATUS_FIXTURE[0]!]), extra: 'kept verbatim' };
    return sent;
  });
  const r = await runVmctl(['status', '-r', 'example', '--json'], { socket: vmd.path });
  t.equal(r.exitCode, 0);
  t.equal(r.stderr, '');
  t.same(JSON.parse(r.stdout), sent);
  t.equal(r.stdout.split('\n').length, 2, 'one line');
  t.same(vmd.requests[0], { v: 1, id: 1, type: 'vm.status.request', target: 'example', running: true });
});

t.test('start: request, warnings, success line', async (t) => {
  const vm: VmInfo = { ...STATUS_FIXTURE[0]!, id: 3, name: 'web', tty: '/dev/pts/3' };
  const vmd = await withVmd(t, (req) => ({ type: 'vm.start.response', id: req.id, vm, warnings: ['switch "uplink" not found'] }));
  const cwd = join(packageRoot, 'share');
  const r = await runVmctl(['start', '-m', '1G', '-L', '-d', 'raw:paths.ts', 'web'], { socket: vmd.path, cwd });
  t.same(r, { exitCode: 0, stdout: '', stderr: 'vmctl: switch "uplink" not found\nvmctl: started vm 3 successfully, tty /dev/pts/3\n' });
  t.same(vmd.requests, [{
    v: 1, id: 1, type: 'vm.start.request', target: 'web',
    options: { memory: 1024 ** 3, interfaces: 1, nets: [{ kind: 'local' }], disks: [`raw:${join(cwd, 'paths.ts')}`] },
  }]);
});

t.test('start errors in OpenBSD\'s words, then the hint', async (t) => {
  const replies: Record<string, unknown> = {
    bios: { code: 'ERR_BIOS_MISSING', message: 'firmware /usr/share/qemu/bios.bin: no such file', hint: 'apt-get install seabios' },
    perm: { code: 'ERR_PERMISSION', message: 'vm web belongs to root' },
    other: { code: 'ERR_QEMU', message: 'qemu exited: could not access KVM kernel module', hint: 'load kvm_intel' },
  };
  const vmd = await withVmd(t, (req) => ({ type: 'error', id: req.id, error: replies[req.target as string] }));
  t.same(await runVmctl(['start', 'bios'], { socket: vmd.path }), {
    exitCode: 1, stdout: '', stderr: 'vmctl: vmm bios firmware file not found.\nvmctl: hint: apt-get install seabios\n',
  });
  t.same(await runVmctl(['start', 'perm'], { socket: vmd.path }), {
    exitCode: 1, stdout: '', stderr: 'vmctl: start vm command failed: Operation not permitted\n',
  });
  t.same(await runVmctl(['-v', 'start', 'perm'], { socket: vmd.path }), {
    exitCode: 1, stdout: '', stderr: 'vmctl: start vm command failed: Operation not permitted\nvmctl: vmd: vm web belongs to root (ERR_PERMISSION)\n',
  });
  t.same(await runVmctl(['start', 'other'], { socket: vmd.path }), {
    exitCode: 1, stdout: '', stderr: 'vmctl: qemu exited: could not access KVM kernel module\nvmctl: hint: load kvm_intel\n',
  });
  const json = await runVmctl(['start', 'bios', '--json'], { socket: vmd.path });
  t.equal(json.exitCode, 1);
  t.same(JSON.parse(json.stdout), { type: 'error', id: 1, error: replies.bios });
});

t.test('stop: one line per VM on stderr', async (t) => {
  const vmd = await withVmd(t, (req) => {
    if (req.type === 'vm.status.request') return statusReply(req);
    if (req.target === 'gone') return { type: 'error', id: req.id, error: { code: 'ERR_VM_NOT_FOUND', message: 'vm gone not found' } };
    if (req.target === 'busy') return { type: 'error', id: req.id, error: { code: 'ERR_VM_STOPPING', message: 'vm busy is stopping' } };
    if (req.target === 'idle') return { type: 'error', id: req.id, error: { code: 'ERR_VM_NOT_RUNNING', message: 'vm idle is not running' } };
    const vmId = req.target === '1' ? 1 : 7;
    return { type: 'vm.stop.response', id: req.id, vmId, name: 'web', result: req.wait ? 'terminated' : 'requested' };
  });
  t.same(await runVmctl(['stop', 'web'], { socket: vmd.path }), { exitCode: 0, stdout: '', stderr: 'stopping vm web: requested to shutdown vm 7\n' });
  t.same(await runVmctl(['stop', '-fw', 'web'], { socket: vmd.path }), { exitCode: 0, stdout: '', stderr: 'stopping vm web: terminated vm 7\n' });
  t.same(await runVmctl(['stop', '1'], { socket: vmd.path }), { exitCode: 0, stdout: '', stderr: 'stopping vm: requested to shutdown vm 1\n' });
  t.same(await runVmctl(['stop', 'gone'], { socket: vmd.path }), { exitCode: 1, stdout: '', stderr: 'stopping vm gone: vm not found\n' });
  t.same(await runVmctl(['stop', 'busy'], { socket: vmd.path }), { exitCode: 1, stdout: '', stderr: 'stopping vm busy: failed: Operation already in progress\n' });
  t.same(await runVmctl(['stop', 'idle'], { socket: vmd.path }), { exitCode: 1, stdout: '', stderr: 'stopping vm idle: cannot stop vm that is not running\n' });
  const f = vmd.requests.find((r) => r.target === 'web' && r.force === true);
  t.same(f, { v: 1, id: 1, type: 'vm.stop.request', target: 'web', force: true, wait: true });

  vmd.requests.length = 0;
  const all = await runVmctl(['stop', '-a'], { socket: vmd.path });
  t.equal(all.exitCode, 0);
  const running = STATUS_FIXTURE.filter((v) => v.pid !== null || ['running', 'starting', 'paused', 'stopping'].includes(v.state)).map((v) => v.name);
  t.same(vmd.requests.map((r) => r.target ?? r.type), ['vm.status.request', ...running], 'the list, then each running VM by name, in order');
  t.same(vmd.requests.map((r) => r.id), [1, 2, 3, 4, 5], 'one connection, increasing ids');
  t.equal(all.stderr, running.map((n) => `stopping vm ${n}: requested to shutdown vm 7\n`).join(''));
});

t.test('wait, pause, unpause', async (t) => {
  const vmd = await withVmd(t, (req) => {
    if (req.target === 'gone') return { type: 'error', id: req.id, error: { code: 'ERR_VM_NOT_FOUND', message: 'no such vm' } };
    const type = String(req.type).replace('.request', '.response');
    return { type, id: req.id, vmId: 4, name: 'web' };
  });
  t.same(await runVmctl(['wait', 'web'], { socket: vmd.path }), { exitCode: 0, stdout: '', stderr: 'waiting for vm web: terminated vm 4\n' });
  t.same(await runVmctl(['wait', '4'], { socket: vmd.path }), { exitCode: 0, stdout: '', stderr: 'waiting for vm: terminated vm 4\n' });
  t.same(await runVmctl(['wait', 'gone'], { socket: vmd.path }), { exitCode: 1, stdout: '', stderr: 'waiting for vm gone: vm not found\n' });
  t.same(await runVmctl(['pause', 'web'], { socket: vmd.path }), { exitCode: 0, stdout: '', stderr: 'vmctl: paused vm 4 successfully\n' });
  t.same(await runVmctl(['unp', 'web'], { socket: vmd.path }), { exitCode: 0, stdout: '', stderr: 'vmctl: unpaused vm 4 successfully\n' });
  t.same(await runVmctl(['pause', 'gone'], { socket: vmd.path }), { exitCode: 1, stdout: '', stderr: 'vmctl: pause vm command failed: No such file or directory\n' });
  t.same(vmd.requests.map((r) => r.type), ['vm.wait.request', 'vm.wait.request', 'vm.wait.request', 'vm.pause.request', 'vm.unpause.request', 'vm.pause.request']);
});

t.test('load, reload, reset, log', async (t) => {
  const vmd = await withVmd(t, (req) => {
    if (req.type === 'config.reload.request') return { type: 'error', id: req.id, error: { code: 'ERR_PERMISSION', message: 'config.reload: permission denied' } };
    if (req.type === 'config.load.request' && req.path === '/bad.conf') {
      return { type: 'error', id: req.id, error: { code: 'ERR_CONFIG', message: '/bad.conf:3: syntax error' } };
    }
    return { type: 'ok.response', id: req.id };
  });
  t.same(await runVmctl(['load', 'vm.conf'], { socket: vmd.path, cwd: '/tmp' }), { exitCode: 0, stdout: '', stderr: '' });
  t.same(await runVmctl(['load', '/bad.conf'], { socket: vmd.path }), { exitCode: 1, stdout: '', stderr: 'vmctl: /bad.conf:3: syntax error\n' });
  t.same(await runVmctl(['reload'], { socket: vmd.path }), { exitCode: 1, stdout: '', stderr: 'vmctl: command failed: Operation not permitted\n' });
  t.same(await runVmctl(['reset', 'vms'], { socket: vmd.path }), { exitCode: 0, stdout: '', stderr: '' });
  t.same(await runVmctl(['log', 'verb'], { socket: vmd.path }), { exitCode: 0, stdout: '', stderr: '' });
  const json = await runVmctl(['--json', 'reset'], { socket: vmd.path });
  t.same(JSON.parse(json.stdout), { type: 'ok.response', id: 1 });
  t.same(vmd.requests, [
    { v: 1, id: 1, type: 'config.load.request', path: '/tmp/vm.conf' },
    { v: 1, id: 1, type: 'config.load.request', path: '/bad.conf' },
    { v: 1, id: 1, type: 'config.reload.request' },
    { v: 1, id: 1, type: 'config.reset.request', mode: 'vms' },
    { v: 1, id: 1, type: 'log.verbose.request', level: 2 },
    { v: 1, id: 1, type: 'config.reset.request', mode: 'all' },
  ]);
});

t.test('a daemon that hangs up or talks nonsense', async (t) => {
  const vmd = await withVmd(t, (req, conn) => {
    if (req.type === 'vm.pause.request') {
      conn.socket.destroy();
      return undefined;
    }
    if (req.type === 'vm.unpause.request') return { type: 'vm.bogus', id: req.id };
    // A request vmd could not read is answered with id 0.
    return { type: 'error', id: 0, error: { code: 'ERR_VERSION', message: 'protocol version 1 not supported: vmd speaks version 2', hint: 'use the vmctl that came with vmd' } };
  });
  t.same(await runVmctl(['pause', 'web'], { socket: vmd.path }), { exitCode: 1, stdout: '', stderr: 'vmctl: pipe closed\n' });
  const bogus = await runVmctl(['unpause', 'web'], { socket: vmd.path });
  t.equal(bogus.exitCode, 1);
  t.match(bogus.stderr, /^vmctl: unexpected response received from vmd: reply: unknown type "vm.bogus"\n$/);
  t.same(await runVmctl(['status'], { socket: vmd.path }), {
    exitCode: 1, stdout: '', stderr: 'vmctl: protocol version 1 not supported: vmd speaks version 2\nvmctl: hint: use the vmctl that came with vmd\n',
  });
});

/** A console stand-in: answers the console request, then echoes input back upper-cased on the raw stream. */
const consoleHandler = (greeting: string): Handler => (req, conn) => {
  if (req.type === 'vm.start.request') {
    return { type: 'vm.start.response', id: req.id, vm: { ...STATUS_FIXTURE[0]!, name: 'web' }, warnings: [] };
  }
  if (req.type !== 'vm.console.request') return undefined;
  if (req.target === 'busy') {
    return { type: 'error', id: req.id, error: { code: 'ERR_CONSOLE_BUSY', message: 'console busy: vm busy is attached by another vmctl' } };
  }
  if (req.target === 'gone') return { type: 'error', id: req.id, error: { code: 'ERR_VM_NOT_FOUND', message: 'no vm gone' } };
  conn.switchToRaw();
  // The reply and the first console bytes in one write: vmctl must not lose or misparse them.
  const reply = { type: 'vm.console.response', id: req.id, vmId: 1, name: String(req.target) };
  conn.socket.write(Buffer.concat([encode(reply), Buffer.from(greeting)]));
  conn.socket.on('data', (d: Buffer) => conn.socket.write(d.toString('utf8').toUpperCase()));
  conn.socket.resume();
  return undefined;
};

import { encodeFrame as encode } from '../../share/frame.js';

t.test('console in pipe mode', async (t) => {
  const vmd = await withVmd(t, consoleHandler('login: '));
  const r = await runVmctl(['console', 'web'], { socket: vmd.path, input: 'root\nuname\n' });
  t.same(r, { exitCode: 0, stdout: 'login: ROOT\nUNAME\n', stderr: '' });
  t.same(vmd.requests, [{ v: 1, id: 1, type: 'vm.console.request', target: 'web' }], 'nothing framed after the request');

  const started = Date.now();
  const timed = await execa(process.execPath, [vmctlEntry, 'console', '-t', '0.4', 'web'], {
    env: { ...process.env, VMD_SOCKET: vmd.path }, reject: false, stdin: 'pipe', stripFinalNewline: false, timeout: 10_000,
  });
  t.equal(timed.exitCode, 0, '-t ends a session whose stdin never closes');
  t.equal(timed.stdout, 'login: ');
  t.ok(Date.now() - started < 8000);

  const busy = await runVmctl(['console', 'busy'], { socket: vmd.path, input: '' });
  t.same(busy, { exitCode: 1, stdout: '', stderr: 'vmctl: console busy: vm busy is attached by another vmctl\n' });
  const gone = await runVmctl(['console', 'gone'], { socket: vmd.path, input: '' });
  t.same(gone, { exitCode: 1, stdout: '', stderr: 'vmctl: console not found\n' });
});

t.test('start -c attaches the console on the same connection', async (t) => {
  const vmd = await withVmd(t, consoleHandler('booting\n'));
  const r = await runVmctl(['start', '-c', 'web'], { socket: vmd.path, input: 'x' });
  t.same(r, { exitCode: 0, stdout: 'booting\nX', stderr: '' });
  t.same(vmd.requests.map((q) => [q.type, q.id]), [['vm.start.request', 1], ['vm.console.request', 2]]);
});
