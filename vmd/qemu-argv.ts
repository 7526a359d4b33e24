// The QEMU command line of one guest, built by a pure function from a fully resolved QemuSpec.
// No I/O and no defaults taken from the host: the same spec always gives the same argv (golden-file tested).
//
// Facts about QEMU 7.2 this builder relies on (measured on the project's hosts, see test/vmd/qemu-argv.test.ts):
// - Images reach QEMU as inherited descriptors: `-add-fd fd=N,set=K` and `file=/dev/fdset/K`. QEMU dups the
//   descriptor of the set whose access mode matches the open it wants, so a writable disk needs an O_RDWR
//   descriptor and a read-only one (cdrom, `readonly`, backing files) an O_RDONLY one.
// - `-drive` opens the file child with auto-read-only=on: it first opens O_RDONLY and only reopens O_RDWR when
//   the device asks for write access. With only an O_RDWR descriptor in the set that first open fails
//   ("Could not dup FD for /dev/fdset/1 flags 0: Permission denied"), hence `file.auto-read-only=off` on
//   writable disks: one O_RDWR descriptor is then enough.
// - A qcow2 top image via fdset cannot find its backing file on its own: a relative backing name resolves
//   against /dev/fdset/ ("Could not parse fdset /dev/fdset/base.qcow2"), an absolute one is opened by path
//   with QEMU's own rights. So the parent passes the whole chain (qemu-img info --backing-chain) and the
//   builder overrides it: `backing.driver=qcow2,backing.file.filename=/dev/fdset/K,backing.backing.…`, each
//   with an O_RDONLY descriptor (an O_RDWR one is refused: backing files are opened read-only). A `path`
//   fallback per backing element is accepted for callers that cannot open it; QEMU then needs read access.
//   The chain is not terminated: `backing=` (empty) is deprecated in 7.2 and `null` cannot be written in
//   -drive syntax, so an element whose header names a further backing file makes QEMU open that by path.
// - `-kernel`, `-initrd` and `-bios` are read with plain open(), not through fdsets: `-kernel /dev/fdset/1`
//   fails with "could not open kernel file '/dev/fdset/1': No such file or directory". `/proc/self/fd/N` of
//   an inherited descriptor works, under -sandbox too, even when the file was unlinked or sits in a directory
//   QEMU's user cannot search; the kernel still checks the file's own mode on that reopen, so the file must be
//   readable by QEMU's user (a 0600 file of another user is refused). Parents hand out an unlinked 0644 copy
//   in a private directory when the original is not readable.

import { isIPv4 } from 'node:net';
import { MAX_DISKS, MAX_MEMORY, MAX_NAME_LEN, MAX_NICS, MIN_MEMORY } from '../share/config.js';
import { VmdError } from '../share/errors.js';
import { CONTROL_CHARS } from '../share/names.js';
import { machineLayoutError, nicDevice, opts, pushCdromArgs, pushDiskArgs, type AddFd } from './qemu-disks.js';
import { displaySpecError, pushDisplayArgs } from './qemu-display.js';
import { firmwareMachineOptions, firmwareSpecError, pushFirmwareArgs } from './qemu-firmware.js';
import { pushSeedArgs } from './qemu-seed.js';
import type { QemuFile, QemuForward, QemuMachine, QemuSpec } from './qemu-spec.js';


/** Longest unix socket path Linux accepts (sun_path is 108 bytes with the NUL). */
const MAX_SOCKET_PATH = 107;
/** QEMU's pc machine limit; q35 allows 288 but the guest rarely needs more. */
const MAX_CPUS = 255;
const MIB = 1024 * 1024;

/** Build QEMU's argv (without the binary) for a spec; throws VmdError on a spec QEMU could not run. */
export function qemuArgv(spec: QemuSpec): string[] {
  validate(spec);
  const machine = spec.machine ?? 'q35';
  const argv: string[] = [];
  pushMachineArgs(argv, spec, machine);
  pushSocketArgs(argv, spec);
  pushBootFileArgs(argv, spec);
  // Descriptors first, then the drives that name their sets. Sets are numbered in argv order from 1.
  const addFd = createFdSets(argv, spec.id);
  pushFirmwareArgs(argv, spec, addFd);
  pushDiskArgs(argv, spec, addFd);
  pushSeedArgs(argv, spec, addFd);
  pushCdromArgs(argv, spec, addFd);
  pushNicArgs(argv, spec, machine);
  pushDisplayArgs(argv, spec);
  if (spec.incoming) argv.push('-incoming', spec.incoming);
  return argv;
}

/** The machine, its size and how QEMU behaves as a process: everything before the first device. */
function pushMachineArgs(argv: string[], spec: QemuSpec, machine: QemuMachine): void {
  // process= shows up in ps/top (truncated to 15 bytes by the kernel); guest= in QMP query-name.
  argv.push('-name', opts([`guest=${spec.name}`, `process=vmd-${spec.id}-${spec.name}`]));
  // No default devices (NIC with iPXE, VGA, floppy, cdrom, serial) and no /etc/qemu config: every device is ours.
  argv.push('-nodefaults', '-no-user-config');
  argv.push('-machine', opts([machine, ...firmwareMachineOptions(spec)]), '-accel', spec.accel);
  // KVM: expose the host CPU. TCG: QEMU's default model, the one boot times were measured with.
  if (spec.accel === 'kvm') argv.push('-cpu', 'host');
  argv.push('-m', String(spec.memory / MIB), '-smp', String(spec.cpus));
  argv.push('-display', 'none');
  // A guest reboot makes QEMU exit (SHUTDOWN event, reason "guest-reset") instead of resetting in place: the
  // lifecycle layer restarts the VM itself, as OpenBSD's vmd does, and so counts restarts (three within 6 s
  // leave it stopped) and can drop a one-time boot device.
  argv.push('-no-reboot');
  if (spec.paused) argv.push('-S');
  if (spec.sandbox) argv.push('-sandbox', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny');
  if (spec.pidfile) argv.push('-pidfile', spec.pidfile);
}

/** The QMP and console sockets the vmm role talks to. */
function pushSocketArgs(argv: string[], spec: QemuSpec): void {
  // wait=off: QEMU runs without a client; the vmm role (re)connects whenever it likes, also after a vmd restart.
  argv.push('-chardev', opts(['socket', 'id=qmp', `path=${spec.qmpSocket}`, 'server=on', 'wait=off']));
  argv.push('-mon', 'chardev=qmp,mode=control');
  argv.push('-chardev', opts(['socket', 'id=console', `path=${spec.consoleSocket}`, 'server=on', 'wait=off']));
  argv.push('-serial', 'chardev:console');
}

/** Firmware and direct boot: files QEMU opens itself, so they are paths, not fdsets (see the header). */
function pushBootFileArgs(argv: string[], spec: QemuSpec): void {
  if (spec.firmware) argv.push('-bios', filePath(spec.firmware));
  if (spec.kernel) argv.push('-kernel', filePath(spec.kernel));
  if (spec.initrd) argv.push('-initrd', filePath(spec.initrd));
  if (spec.cmdline) argv.push('-append', spec.cmdline);
}

/** One counter for every fdset of the argv, so disks, backing files and the cdrom never share a set. */
function createFdSets(argv: string[], id: number): AddFd {
  let nextSet = 1;
  return (fd, opaque) => {
    const set = nextSet++;
    argv.push('-add-fd', opts([`fd=${fd}`, `set=${set}`, `opaque=vmd-${id}-${opaque}`]));
    return set;
  };
}

/** virtio NICs on user-mode NAT or the parent's taps. */
function pushNicArgs(argv: string[], spec: QemuSpec, machine: QemuMachine): void {
  const { model, pci } = nicDevice(machine);
  spec.nics.forEach((nic, i) => {
    if (nic.kind === 'user') {
      const netdev = ['user', `id=net${i}`];
      for (const f of nic.forwards ?? []) netdev.push(`hostfwd=${f.proto}:${f.hostAddr ?? ''}:${f.hostPort}-:${f.guestPort}`);
      argv.push('-netdev', opts(netdev));
    } else if (nic.kind === 'stream') {
      // passt's socket (QEMU 7.2's stream netdev); passt starts first, so QEMU connects as a client.
      argv.push('-netdev', opts(['stream', `id=net${i}`, 'server=off', 'addr.type=unix', `addr.path=${nic.socket}`]));
    } else {
      argv.push('-netdev', opts(['tap', `id=net${i}`, `fd=${nic.fd}`]));
    }
    const device = [model, `netdev=net${i}`, `id=nic${i}`, `mac=${nic.mac}`];
    // The iPXE option ROM costs ~350 ms of boot per NIC: keep it only on the NIC we network-boot from.
    if (spec.bootDevice === 'net' && i === 0) device.push('bootindex=0');
    else if (pci) device.push('romfile=');
    argv.push('-device', opts(device));
  });
}

/** The path QEMU opens for a QemuFile: /proc/self/fd/N reopens the inherited descriptor (see the header). */
function filePath(file: QemuFile): string {
  return 'fd' in file ? `/proc/self/fd/${file.fd}` : file.path;
}

function fail(spec: QemuSpec, why: string, code: 'ERR_INVALID' | 'ERR_NO_BOOT' = 'ERR_INVALID'): never {
  const who = typeof spec.name === 'string' && NAME_RE.test(spec.name) ? `vm ${spec.name}` : 'vm';
  throw new VmdError(code, `${who}: ${why}`);
}

const NAME_RE = /^[A-Za-z0-9._-]+$/;
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
// Control characters would break QEMU's option parsing, the golden files' one-argument-per-line format and logs.
const CONTROL_RE = CONTROL_CHARS;

/** Every check QEMU would otherwise fail on later, or worse, accept: in a fixed order, so the first fault is named. */
function validate(spec: QemuSpec): void {
  checkScalars(spec);
  checkSockets(spec);
  const fds = trackDescriptors(spec);
  checkBootFiles(spec, fds);
  if (spec.uefi) for (const [what, fd] of [['uefi code', spec.uefi.code], ['uefi vars', spec.uefi.vars]] as const) fds.checkFd(what, fd);
  if (spec.seed !== undefined && spec.seed !== null) fds.checkFd('seed', spec.seed);
  const firmwareError = firmwareSpecError(spec);
  if (firmwareError !== null) fail(spec, firmwareError);
  checkDisks(spec, fds);
  checkNics(spec, fds);
  checkBootDevice(spec);
  const displayError = displaySpecError(spec);
  if (displayError !== null) fail(spec, displayError);
  const layout = machineLayoutError(spec);
  if (layout !== null) fail(spec, layout);
}

/** Name, id, accel, memory and cpus: the values every argv carries (the machine is qemu-disks.ts's). */
function checkScalars(spec: QemuSpec): void {
  if (typeof spec.name !== 'string' || !NAME_RE.test(spec.name) || spec.name.length > MAX_NAME_LEN) {
    fail(spec, `invalid name ${JSON.stringify(spec.name)}: letters, digits, ".", "-" and "_" only, at most ${MAX_NAME_LEN} characters`);
  }
  if (!Number.isSafeInteger(spec.id) || spec.id < 1) fail(spec, `invalid id ${spec.id}`);
  if (spec.accel !== 'kvm' && spec.accel !== 'tcg') fail(spec, `invalid accel ${String(spec.accel)}: kvm or tcg`);
  if (!Number.isSafeInteger(spec.memory) || spec.memory % MIB !== 0) fail(spec, `memory must be a whole number of megabytes: ${spec.memory} bytes`);
  if (spec.memory < MIN_MEMORY || spec.memory > MAX_MEMORY) fail(spec, `memory out of range: ${spec.memory / MIB} megabytes`);
  if (!Number.isSafeInteger(spec.cpus) || spec.cpus < 1 || spec.cpus > MAX_CPUS) {
    fail(spec, `cpus out of range: ${spec.cpus} (1 to ${MAX_CPUS})`);
  }
}

/** The sockets, pidfile and incoming URI: paths and strings QEMU parses, and what the sandbox allows. */
function checkSockets(spec: QemuSpec): void {
  for (const [what, path] of [['qmp socket', spec.qmpSocket], ['console socket', spec.consoleSocket]] as const) {
    checkPath(spec, what, path);
    if (Buffer.byteLength(path) > MAX_SOCKET_PATH) fail(spec, `${what} path too long: ${path}`);
  }
  if (spec.qmpSocket === spec.consoleSocket) fail(spec, 'qmp and console sockets must differ');
  if (spec.pidfile) checkPath(spec, 'pidfile', spec.pidfile);
  if (spec.incoming !== undefined && spec.incoming !== null && (spec.incoming === '' || CONTROL_RE.test(spec.incoming))) {
    fail(spec, 'invalid incoming uri');
  }
  // Measured: with spawn=deny QEMU dies of SIGSYS on `exec:` migration, in both directions. `-incoming fd:N`
  // with an inherited descriptor works; an outgoing `migrate fd:N` needs a named fd (getfd, SCM_RIGHTS).
  if (spec.sandbox && spec.incoming?.startsWith('exec:')) fail(spec, 'incoming exec: needs spawning, which the sandbox forbids; use fd:N');
}

/** Descriptor and file checks that share one set of the descriptors seen so far. */
interface DescriptorChecks {
  readonly checkFd: (what: string, fd: number) => void;
  readonly checkFile: (what: string, file: QemuFile) => void;
}

/** One set across firmware, kernel, disks, backing files, cdrom and taps, so no descriptor is used twice. */
function trackDescriptors(spec: QemuSpec): DescriptorChecks {
  const fds = new Set<number>();
  const checkFd = (what: string, fd: number) => {
    // 0-2 are QEMU's stdio; a descriptor used twice means two devices would share one open file.
    if (!Number.isSafeInteger(fd) || fd < 3) fail(spec, `${what}: invalid descriptor ${fd}`);
    if (fds.has(fd)) fail(spec, `${what}: descriptor ${fd} used twice`);
    fds.add(fd);
  };
  const checkFile = (what: string, file: QemuFile) => {
    if ('fd' in file) checkFd(what, file.fd);
    else checkPath(spec, what, file.path);
  };
  return { checkFd, checkFile };
}

/** Firmware, kernel, initrd and cmdline: initrd and cmdline mean nothing without a kernel. */
function checkBootFiles(spec: QemuSpec, { checkFile }: DescriptorChecks): void {
  if (spec.firmware) checkFile('firmware', spec.firmware);
  if (spec.kernel) checkFile('kernel', spec.kernel);
  if (spec.initrd) {
    if (!spec.kernel) fail(spec, 'initrd needs a kernel');
    checkFile('initrd', spec.initrd);
  }
  if (spec.cmdline) {
    if (!spec.kernel) fail(spec, 'cmdline needs a kernel');
    if (CONTROL_RE.test(spec.cmdline)) fail(spec, 'cmdline contains control characters');
  }
}

/** The disk list, each disk's format and backing chain, and the cdrom. */
function checkDisks(spec: QemuSpec, { checkFd }: DescriptorChecks): void {
  // Through `unknown`, so TypeScript keeps the element types (Array.isArray narrows readonly arrays to any[]).
  if (!Array.isArray(spec.disks as unknown) || !Array.isArray(spec.nics as unknown)) fail(spec, 'disks and nics must be lists');
  if (spec.disks.length > MAX_DISKS) fail(spec, `too many disks: ${spec.disks.length} (at most ${MAX_DISKS})`);
  spec.disks.forEach((disk, i) => {
    if (disk.format !== 'raw' && disk.format !== 'qcow2') fail(spec, `disk ${i}: invalid format ${String(disk.format)}`);
    checkFd(`disk ${i}`, disk.fd);
    if (disk.backing && disk.backing.length > 0) {
      if (disk.format !== 'qcow2') fail(spec, `disk ${i}: a raw image cannot have a backing file`);
      disk.backing.forEach((b, j) => {
        if (b.format !== 'raw' && b.format !== 'qcow2') fail(spec, `disk ${i} backing ${j}: invalid format ${String(b.format)}`);
        if (b.format === 'raw' && j < disk.backing!.length - 1) fail(spec, `disk ${i} backing ${j}: a raw image cannot have a backing file`);
        if ('fd' in b) checkFd(`disk ${i} backing ${j}`, b.fd);
        else checkPath(spec, `disk ${i} backing ${j}`, b.path);
      });
    }
  });
  if (spec.cdrom) checkFd('cdrom', spec.cdrom.fd);
}

/** The NIC list: unicast MACs, a descriptor per tap, valid and distinct forwards on user-mode NICs. */
function checkNics(spec: QemuSpec, { checkFd }: DescriptorChecks): void {
  if (spec.nics.length > MAX_NICS) fail(spec, `too many interfaces: ${spec.nics.length} (at most ${MAX_NICS})`);
  spec.nics.forEach((nic, i) => {
    if (typeof nic.mac !== 'string' || !MAC_RE.test(nic.mac)) fail(spec, `interface ${i}: invalid mac ${String(nic.mac)}`);
    if (parseInt(nic.mac.slice(0, 2), 16) & 1) fail(spec, `interface ${i}: multicast mac ${nic.mac}`);
    if (nic.kind === 'tap') {
      checkFd(`interface ${i}`, nic.fd);
    } else if (nic.kind === 'user') {
      checkForwards(spec, i, nic.forwards ?? []);
    } else if (nic.kind === 'stream') {
      if (typeof nic.socket !== 'string' || !nic.socket.startsWith('/')) fail(spec, `interface ${i}: socket must be an absolute path`);
    } else {
      fail(spec, `interface ${i}: invalid kind ${String((nic as { kind: unknown }).kind)}`);
    }
  });
}

/** hostfwd rules of user-mode NIC `i`: QEMU would refuse a bad one only at start, and a duplicate silently. */
function checkForwards(spec: QemuSpec, i: number, forwards: readonly QemuForward[]): void {
  const seen = new Set<string>();
  for (const f of forwards) {
    if (f.proto !== 'tcp' && f.proto !== 'udp') fail(spec, `interface ${i}: invalid forward protocol ${String(f.proto)}`);
    for (const port of [f.hostPort, f.guestPort]) {
      if (!Number.isSafeInteger(port) || port < 1 || port > 65535) fail(spec, `interface ${i}: invalid forward port ${port}`);
    }
    // QEMU 7.2's hostfwd takes an IPv4 address only.
    if (f.hostAddr !== undefined && !isIPv4(f.hostAddr)) fail(spec, `interface ${i}: forward address must be ipv4: ${f.hostAddr}`);
    const key = `${f.proto}:${f.hostAddr ?? '*'}:${f.hostPort}`;
    if (seen.has(key)) fail(spec, `interface ${i}: duplicate forward ${f.proto} ${f.hostPort}`);
    seen.add(key);
  }
}

/** The boot device needs its device, excludes a kernel, and some boot source must exist. */
function checkBootDevice(spec: QemuSpec): void {
  switch (spec.bootDevice ?? null) {
    case null:
      break;
    case 'cdrom':
      if (!spec.cdrom) fail(spec, 'boot device cdrom without a cdrom');
      break;
    case 'disk':
      if (spec.disks.length === 0) fail(spec, 'boot device disk without a disk');
      break;
    case 'net':
      if (spec.nics.length === 0) fail(spec, 'boot device net without an interface');
      break;
    default:
      fail(spec, `unknown boot device ${String(spec.bootDevice)}`);
  }
  if (spec.bootDevice && spec.kernel) fail(spec, 'boot device cannot be used with a kernel');
  // OpenBSD's check, with its wording; firmware or a network boot are boot sources too here.
  if (!spec.kernel && !spec.firmware && spec.disks.length === 0 && !spec.cdrom && spec.bootDevice !== 'net') {
    fail(spec, 'no kernel or disk/cdrom specified', 'ERR_NO_BOOT');
  }
}

function checkPath(spec: QemuSpec, what: string, path: string): void {
  if (typeof path !== 'string' || !path.startsWith('/')) fail(spec, `${what}: path must be absolute: ${String(path)}`);
  if (CONTROL_RE.test(path)) fail(spec, `${what}: path contains control characters`);
}
