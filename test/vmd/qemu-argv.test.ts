// Tests for vmd/qemu-argv: golden files (spec .json → expected .argv, like libvirt's xml2argv), validation,
// and a smoke run of a real QEMU 7.2 proving that images, backing files, cdrom and kernel by descriptor work.
import t from 'tap';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../share/paths.js';
import { VmdError } from '../../share/errors.js';
import { qemuArgv } from '../../vmd/qemu-argv.js';
import type { QemuSpec } from '../../vmd/qemu-spec.js';
import { QmpClient } from '../../vmd/qmp.js';
import { golden } from '../lib/golden.js';

const goldenDir = join(packageRoot, 'test', 'vmd', 'golden', 'qemu-argv');
const update = process.env.VMD_UPDATE_GOLDEN === '1';

t.test('golden files', async (t) => {
  const cases = readdirSync(goldenDir).filter((f) => f.endsWith('.json')).sort();
  t.ok(cases.length >= 8, 'at least 8 golden cases');
  for (const file of cases) {
    const name = file.slice(0, -'.json'.length);
    const spec = JSON.parse(readFileSync(join(goldenDir, file), 'utf8')) as QemuSpec;
    const actual = `${qemuArgv(spec).join('\n')}\n`;
    const argvFile = join(goldenDir, `${name}.argv`);
    if (update) writeFileSync(argvFile, actual);
    t.ok(existsSync(argvFile), `${name}.argv exists (VMD_UPDATE_GOLDEN=1 writes it)`);
    if (existsSync(argvFile)) t.equal(actual, readFileSync(argvFile, 'utf8'), name);
  }
});

const base: QemuSpec = {
  id: 1, name: 'g', memory: 256 * 1024 * 1024, cpus: 1, accel: 'tcg',
  disks: [{ fd: 3, format: 'raw' }], nics: [],
  qmpSocket: '/run/vmd/1/qmp.sock', consoleSocket: '/run/vmd/1/console.sock', sandbox: true,
};

t.test('pure and deterministic', async (t) => {
  const spec = deepFreeze(JSON.parse(JSON.stringify({ ...base, nics: [{ kind: 'user', mac: 'fe:e1:bb:00:00:01', forwards: [{ proto: 'tcp', hostPort: 2, guestPort: 22 }] }] })) as QemuSpec);
  t.same(qemuArgv(spec), qemuArgv(spec), 'same spec, same argv');
  t.ok(qemuArgv(spec).includes('-nodefaults'));
});

t.test('commas in option values are doubled', async (t) => {
  const argv = qemuArgv({ ...base, qmpSocket: '/run/a,b/qmp.sock' });
  t.ok(argv.includes('socket,id=qmp,path=/run/a,,b/qmp.sock,server=on,wait=off'));
});

t.test('impossible specs are refused with clear messages', async (t) => {
  const bad: Array<[string, Partial<QemuSpec> & Record<string, unknown>, RegExp, string?]> = [
    ['name', { name: 'a b' }, /^vm: invalid name/],
    ['id', { id: 0 }, /^vm g: invalid id 0$/],
    ['accel', { accel: 'auto' as never }, /invalid accel auto/],
    ['memory not MiB', { memory: 1000 }, /memory must be a whole number of megabytes/],
    ['memory too small', { memory: 0 }, /memory out of range/],
    ['cpus', { cpus: 0 }, /cpus out of range: 0/],
    ['relative socket', { qmpSocket: 'qmp.sock' }, /qmp socket: path must be absolute/],
    ['long socket', { consoleSocket: `/${'x'.repeat(120)}` }, /console socket path too long/],
    ['same sockets', { consoleSocket: base.qmpSocket }, /qmp and console sockets must differ/],
    ['stdio fd', { disks: [{ fd: 1, format: 'raw' }] }, /disk 0: invalid descriptor 1/],
    ['fd twice', { disks: [{ fd: 3, format: 'raw' }], cdrom: { fd: 3 } }, /cdrom: descriptor 3 used twice/],
    ['raw with backing', { disks: [{ fd: 3, format: 'raw', backing: [{ fd: 4, format: 'raw' }] }] }, /disk 0: a raw image cannot have a backing file/],
    ['relative backing path', { disks: [{ fd: 3, format: 'qcow2', backing: [{ path: 'base.qcow2', format: 'qcow2' }] }] }, /disk 0 backing 0: path must be absolute/],
    ['too many disks', { disks: [3, 4, 5, 6, 7].map((fd) => ({ fd, format: 'raw' as const })) }, /too many disks: 5/],
    ['initrd without kernel', { initrd: { path: '/i' } }, /initrd needs a kernel/],
    ['cmdline without kernel', { cmdline: 'quiet' }, /cmdline needs a kernel/],
    ['cmdline newline', { kernel: { path: '/k' }, cmdline: 'a\nb' }, /cmdline contains control characters/],
    ['bad mac', { nics: [{ kind: 'user', mac: 'FE:E1:BB:00:00:01' }] }, /interface 0: invalid mac/],
    ['multicast mac', { nics: [{ kind: 'user', mac: '01:00:5e:00:00:01' }] }, /interface 0: multicast mac/],
    ['forward port', { nics: [{ kind: 'user', mac: 'fe:e1:bb:00:00:01', forwards: [{ proto: 'tcp', hostPort: 0, guestPort: 22 }] }] }, /invalid forward port 0/],
    ['forward ipv6', { nics: [{ kind: 'user', mac: 'fe:e1:bb:00:00:01', forwards: [{ proto: 'tcp', hostAddr: '::1', hostPort: 22, guestPort: 22 }] }] }, /forward address must be ipv4/],
    ['duplicate forward', { nics: [{ kind: 'user', mac: 'fe:e1:bb:00:00:01', forwards: [{ proto: 'tcp', hostPort: 22, guestPort: 22 }, { proto: 'tcp', hostPort: 22, guestPort: 23 }] }] }, /duplicate forward tcp 22/],
    ['boot cdrom without cdrom', { bootDevice: 'cdrom' }, /boot device cdrom without a cdrom/],
    ['boot net without nic', { bootDevice: 'net' }, /boot device net without an interface/],
    ['boot device with kernel', { bootDevice: 'disk', kernel: { path: '/k' } }, /boot device cannot be used with a kernel/],
    ['exec under sandbox', { incoming: 'exec:cat state' }, /incoming exec: needs spawning/],
    ['nothing to boot', { disks: [] }, /^vm g: no kernel or disk\/cdrom specified$/, 'ERR_NO_BOOT'],
    ['ide on q35', { disks: [{ fd: 3, format: 'raw', bus: 'ide' }] }, /^vm g: disk 0: bus ide needs machine pc, not q35$/],
    ['unknown bus', { disks: [{ fd: 3, format: 'raw', bus: 'usb' as never }] }, /disk 0: unknown bus usb: virtio, scsi, sata, ide, nvme/],
    ['unknown machine', { machine: 'isapc' as never }, /unsupported machine isapc: q35, pc, microvm/],
    ['sata on microvm', { machine: 'microvm', kernel: { path: '/k' }, disks: [{ fd: 3, format: 'raw', bus: 'sata' }] }, /disk 0: bus sata needs machine q35 or pc, not microvm/],
    ['nvme on microvm', { machine: 'microvm', kernel: { path: '/k' }, disks: [{ fd: 3, format: 'raw', bus: 'nvme' }] }, /disk 0: bus nvme needs machine q35 or pc, not microvm/],
    ['microvm without kernel', { machine: 'microvm' }, /machine microvm needs a kernel/],
    ['microvm with cdrom', { machine: 'microvm', kernel: { path: '/k' }, cdrom: { fd: 4 } }, /machine microvm has no cdrom bus/],
    ['display on microvm', { machine: 'microvm', kernel: { path: '/k' }, display: { vncSocket: '/run/vmd/1.display/vnc.sock' } }, /machine microvm has no bus for a display/],
    ['relative vnc socket', { display: { vncSocket: 'vnc.sock' } }, /vnc socket: path must be absolute/],
    ['long vnc socket', { display: { vncSocket: `/${'x'.repeat(120)}` } }, /vnc socket path too long/],
    ['vnc socket is the qmp socket', { display: { vncSocket: base.qmpSocket } }, /vnc socket must differ/],
    ['four ide disks and a cdrom', { machine: 'pc', cdrom: { fd: 7 }, disks: [3, 4, 5, 6].map((fd) => ({ fd, format: 'raw' as const, bus: 'ide' as const })) }, /too many ide disks: 4 \(pc has 3 places besides the cdrom\)/],
  ];
  for (const [what, change, message, code] of bad) {
    let thrown: unknown = null;
    try {
      qemuArgv({ ...base, ...change } as QemuSpec);
    } catch (err) {
      thrown = err;
    }
    t.ok(thrown instanceof VmdError, `${what}: throws a VmdError`);
    const err = thrown as VmdError;
    t.equal(err.code, code ?? 'ERR_INVALID', `${what}: code`);
    t.match(err.message, message, `${what}: message`);
    t.match(err.message, /^vm( [\w.-]+)?: [a-z]/, `${what}: lowercase "what: why"`);
  }
});

t.test('network boot needs no disk; firmware alone boots', async (t) => {
  const net = qemuArgv({ ...base, disks: [], bootDevice: 'net', nics: [{ kind: 'tap', fd: 3, mac: 'fe:e1:bb:00:00:01' }] });
  t.notOk(net.includes('-drive'), 'network boot: no drive');
  t.ok(net.includes('virtio-net-pci,netdev=net0,id=nic0,mac=fe:e1:bb:00:00:01,bootindex=0'), 'network boot: the NIC boots first');
  golden(t, 'test/vmd/golden/qemu-argv', 'net-boot-diskless.argv', `${net.join('\n')}\n`);
  const firmware = qemuArgv({ ...base, disks: [], firmware: { path: '/usr/share/qemu/qboot.rom' } });
  t.notOk(firmware.includes('-drive'), 'firmware alone: no drive');
  t.equal(firmware[firmware.indexOf('-bios') + 1], '/usr/share/qemu/qboot.rom', 'firmware alone: -bios names it');
  golden(t, 'test/vmd/golden/qemu-argv', 'firmware-diskless.argv', `${firmware.join('\n')}\n`);
});

// A multiboot "kernel" (a.out kludge, loaded at 1 MiB): prints VMD-KERNEL-OK on COM1, then resets the
// machine through port 0xcf9. Assembled from: mov $msg,%esi; mov $0x3f8,%dx; 1: lodsb; test %al,%al; jz 2f;
// out %al,%dx; jmp 1b; 2: mov $0xcf9,%dx; mov $6,%al; out %al,%dx; 3: hlt; jmp 3b; msg: .asciz "VMD-KERNEL-OK\n"
const MULTIBOOT_KERNEL = Buffer.from(
  '02b0ad1b00000100fe4f51e40000100000001000000000000000000020001000' +
  'be3b00100066baf803ac84c07403eeebf866baf90cb006eef4ebfd' +
  Buffer.from('VMD-KERNEL-OK\n\0').toString('hex'),
  'hex',
);

t.test('smoke: real QEMU with every image passed by descriptor', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'vmd-argv-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  // Images live in a directory QEMU's user cannot enter: only the descriptors can reach them.
  const images = join(root, 'images');
  mkdirSync(images, { mode: 0o700 });
  const run = join(root, 'run');
  mkdirSync(run, { mode: 0o700 });
  const asNobody = process.getuid?.() === 0;
  if (asNobody) chownSync(run, 65534, 65534);
  chmodSync(root, 0o755);

  const img = (name: string) => join(images, name);
  execFileSync('qemu-img', ['create', '-q', '-f', 'raw', img('raw.img'), '16M']);
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', img('base.qcow2'), '16M']);
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x77 0 4096', img('base.qcow2')], { stdio: 'ignore' });
  // A relative backing name: QEMU alone would look for /dev/fdset/base.qcow2 and fail.
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', img('top.qcow2')]);
  execFileSync('qemu-img', ['create', '-q', '-f', 'raw', img('cd.iso'), '1M']);
  writeFileSync(img('kernel'), MULTIBOOT_KERNEL, { mode: 0o644 });

  // Child descriptor N = stdio[N]; opened as the parent would: rw for disks, ro for backing files and the cdrom.
  const stdio: Array<'ignore' | 'pipe' | number> = ['ignore', 'pipe', 'pipe'];
  const kernelFd = openSync(img('kernel'), 'r');
  unlinkSync(img('kernel')); // the descriptor outlives the name
  const fds = [kernelFd, openSync(img('raw.img'), 'r+'), openSync(img('top.qcow2'), 'r+'), openSync(img('base.qcow2'), 'r'), openSync(img('cd.iso'), 'r')];
  t.teardown(() => fds.forEach((fd) => closeSync(fd)));
  stdio.push(...fds); // child fds 3..7

  const spec: QemuSpec = {
    id: 42, name: 'smoke', memory: 64 * 1024 * 1024, cpus: 1, accel: 'tcg', machine: 'q35',
    kernel: { fd: 3 },
    disks: [{ fd: 4, format: 'raw' }, { fd: 5, format: 'qcow2', backing: [{ fd: 6, format: 'qcow2' }] }],
    cdrom: { fd: 7 },
    nics: [{ kind: 'user', mac: 'fe:e1:bb:d1:2a:00' }],
    qmpSocket: join(run, 'qmp.sock'), consoleSocket: join(run, 'console.sock'),
    sandbox: true, paused: true,
  };
  const child: ChildProcess = spawn('qemu-system-x86_64', qemuArgv(spec), {
    stdio, ...(asNobody ? { uid: 65534, gid: 65534 } : {}),
  });
  // HMP's qemu-io prints its results on QEMU's stdout, not in the QMP reply.
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  const qmp = await QmpClient.connect(spec.qmpSocket, { timeoutMs: 5000 }).catch((err: unknown) => {
    throw new Error(`qemu did not start: ${stderr}`, { cause: err });
  });
  t.teardown(() => qmp.destroy());

  type Block = { device: string; inserted?: { file: string; ro: boolean; drv: string; backing_file_depth?: number } };
  const blocks = await qmp.execute<Block[]>('query-block');
  const byName = new Map(blocks.map((b) => [b.device, b.inserted]));
  t.match(byName.get('disk0'), { file: '/dev/fdset/1', ro: false, drv: 'raw' }, 'raw disk from its descriptor, writable');
  t.match(byName.get('disk1'), { ro: false, drv: 'qcow2', backing_file_depth: 1 }, 'qcow2 with its backing file');
  t.match(byName.get('cdrom0'), { file: '/dev/fdset/4', ro: true, drv: 'raw' }, 'cdrom read-only');

  // Data goes through the descriptors: a write lands in the raw file, the backing file's pattern shows through.
  const hmp = (line: string) => qmp.execute<string>('human-monitor-command', { 'command-line': line });
  await hmp('qemu-io disk0 "write -P 0x5a 0 4096"');
  t.equal(readFileSync(join(images, 'raw.img')).subarray(0, 4).toString('hex'), '5a5a5a5a', 'write reached the raw file');
  await hmp('qemu-io disk1 "read -P 0x77 0 4096"');
  await waitFor(() => /read 4096\/4096/.test(stdout) || /fail/i.test(stdout), 5000);
  t.match(stdout, /read 4096\/4096/, 'backing data visible through the overlay');
  t.notMatch(stdout, /fail/i, 'pattern verified');

  // The kernel came by descriptor too: run it, read its console line, and see its reset end QEMU (-no-reboot).
  const consoleText = new Promise<string>((resolve, reject) => {
    const sock = connect(spec.consoleSocket);
    let text = '';
    sock.on('data', (d) => {
      text += d.toString();
      if (text.includes('\n')) {
        sock.destroy();
        resolve(text);
      }
    });
    sock.on('error', reject);
    t.teardown(() => sock.destroy());
  });
  const shutdown = new Promise<Record<string, unknown>>((resolve) => qmp.once('SHUTDOWN', (ev: { data: Record<string, unknown> }) => resolve(ev.data)));
  // wait=off drops output nobody reads: let QEMU accept the console connection before the guest prints.
  await new Promise((r) => setTimeout(r, 200));
  await qmp.execute('cont');
  t.equal(await withTimeout(consoleText, 10_000, 'console'), 'VMD-KERNEL-OK\n');
  t.same(await withTimeout(shutdown, 10_000, 'shutdown'), { guest: true, reason: 'guest-reset' }, 'a guest reboot is a SHUTDOWN');
  t.equal(await withTimeout(exited, 10_000, 'exit'), 0, 'and QEMU exits');
});

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: timed out`)), ms))),
  ]);
}

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    Object.values(value).forEach(deepFreeze);
    Object.freeze(value);
  }
  return value;
}
