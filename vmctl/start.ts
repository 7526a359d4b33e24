// `vmctl start`: OpenBSD's ctl_start() option parsing and vm_start() checks, turned into a vm.start.request.
// Paths are resolved here, against the caller's cwd and as the caller, so vmd only ever sees absolute paths.

import { closeSync, fstatSync, openSync, realpathSync } from 'node:fs';
import { isAbsolute, normalize, resolve } from 'node:path';
import { DISK_BUSES, DISPLAY_KINDS, MACHINES, type DisplayKind, type Machine } from '../share/config.js';
import type { StartForward, StartNet, StartOptions } from '../share/protocol.js';
import { fmtScaled, ScaledError, scanScaledBig } from '../share/scaled.js';
import { attachConsole } from './console.js';
import { getopt, parseVmid, printJson, reportError, strtonum, VM_NAME_MAX, warnx, type CommandSpec, type Context, type VmRef } from './command.js';
import { CliError, sysMessage, UsageError } from './errors.js';
import { OS_START_OPTIONS, osFlagsEmpty, osStartOptions, readOsStartOption, type OsFlags } from './start-os.js';
import { COMMAND_USAGE } from './usage.js';

/** vmd.h limits vmctl enforces before asking: disks and NICs per VM, PATH_MAX. */
export const MAX_DISKS = 4;
export const MAX_NICS = 4;
const PATH_MAX = 1024;
const MIB = 1024n * 1024n;
/** VMM_MAX_VM_MEM_SIZE: 128 GiB. */
export const MAX_MEMORY = 128n * 1024n * MIB;

/** Everything `vmctl start` was asked to do. */
export interface StartArgs {
  readonly ref: VmRef;
  readonly options: StartOptions;
  /** `-c`: attach the console once started. */
  readonly console: boolean;
}

/** Where parsing looks and complains: the caller's cwd, and warnx for warnings that do not stop it. */
export interface StartEnv {
  readonly cwd: string;
  readonly warn: (message: string) => void;
  /** Set with -H: paths name files of that host, so they are taken as typed (absolute) and not looked at here. */
  readonly remote?: string | undefined;
}

/** parse_size(): scan_scaled, at least 1 MiB, at most 128 GiB for memory, rounded down to MiB with a warning. */
export function parseSize(word: string, type: 'memory' | 'disk', warn: (message: string) => void): number {
  let val: bigint;
  try {
    val = scanScaledBig(word);
  } catch (err) {
    if (err instanceof ScaledError) throw new CliError(`invalid ${type} size: ${word}: ${err.message}`);
    throw err;
  }
  if (val < MIB) throw new CliError(`${type} size must be at least 1MB`);
  if (type === 'memory' && val > MAX_MEMORY) throw new CliError(`memory size too large (limit is ${fmtScaled(MAX_MEMORY)})`);
  const size = (val / MIB) * MIB;
  if (size !== val) warn(`${type} size rounded to ${fmtScaled(size)}`);
  return Number(size);
}

/** `--forward proto:hostport:guestport` (ours): tcp or udp, ports 1 to 65535. */
export function parseForward(spec: string): StartForward {
  const m = /^(tcp|udp):([0-9]{1,5}):([0-9]{1,5})$/.exec(spec);
  const hostPort = m === null ? 0 : Number(m[2]);
  const guestPort = m === null ? 0 : Number(m[3]);
  if (m === null || hostPort < 1 || hostPort > 65535 || guestPort < 1 || guestPort > 65535) {
    throw new CliError(`invalid forward: ${spec}`);
  }
  return { proto: m[1] as 'tcp' | 'udp', hostPort, guestPort };
}

/**
 * realpath(3) against the caller's cwd; an empty path fails as in C rather than naming the cwd. With -H the file is
 * on the other host, which has no cwd of ours: the path must be absolute, and vmd there opens it as the ssh user.
 */
function realpath(cwd: string, path: string, remote?: string): string {
  if (path.length === 0) throw Object.assign(new Error('empty path'), { code: 'ENOENT' });
  if (remote === undefined) return realpathSync(resolve(cwd, path));
  if (!isAbsolute(path)) throw new CliError(`a path on host "${remote}" must be absolute`);
  return normalize(path);
}

/**
 * Disk operands may name their bus (ours: `virtio:`, `scsi:`, `sata:`, `ide:`, `nvme:`) and then their format
 * (`raw:` or `qcow2:`, as parse_disktype() reads them). The prefixes are kept in front of the resolved path,
 * `nvme:qcow2:/abs/disk.img`, and vmd strips and honours them; without them vmd detects the format, the bus is virtio.
 */
function parseDisk(env: StartEnv, word: string): string {
  const bus = new RegExp(`^(${DISK_BUSES.join('|')}):`).exec(word);
  const rest = bus === null ? word : word.slice(bus[0].length);
  const m = /^(raw|qcow2):/.exec(rest);
  const path = m === null ? rest : rest.slice(m[0].length);
  let real: string;
  try {
    real = realpath(env.cwd, path, env.remote);
  } catch (err) {
    const what = `invalid disk path: ${path}`;
    throw new CliError(err instanceof CliError ? `${what}: ${err.message}` : sysMessage(what, err));
  }
  return `${bus === null ? '' : bus[0]}${m === null ? '' : m[0]}${real}`;
}

/** vm_start() opens the kernel itself, as the caller: so a user can only boot what they can read. */
function checkBootFile(path: string, what: 'kernel' | 'initrd'): void {
  if (path.length >= PATH_MAX) throw new CliError(`${what} name too long`);
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new CliError(sysMessage(`cannot open ${what} '${path}'`, err));
  }
  try {
    if (!fstatSync(fd).isFile()) throw new CliError(`${what} must be a regular file`);
  } finally {
    closeSync(fd);
  }
}

/** OpenBSD's VM name rule: `[A-Za-z0-9._-]`, not starting with `.`, `-` or `_`. */
export function validVmName(name: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name);
}

/** The options of `vmctl start`: OpenBSD's getopt string `b:B:cd:i:Lm:n:r:t:` plus our long options. */
const START_OPTIONS = [
  '-b <path>', '-B <device>', '-c', '-d <disk>', '-i <count>', '-L', '-m <size>', '-n <switch>', '-r <path>', '-t <name>',
  '--initrd <path>', '--cmdline <string>', '--forward <spec>', '--machine <type>', '--passt <style>', '--display <kind>', ...OS_START_OPTIONS,
] as const;

/** The options seen so far: getopt's events fill it in one at a time, in the order they were typed. */
interface StartFlags {
  boot: string | undefined;
  bootDevice: StartOptions['bootDevice'];
  cdrom: string | undefined;
  memory: number | undefined;
  nifs: number | undefined;
  instanceOf: string | undefined;
  initrd: string | undefined;
  cmdline: string | undefined;
  machine: Machine | undefined;
  display: DisplayKind | undefined;
  console: boolean;
  readonly nets: StartNet[];
  readonly disks: string[];
  readonly forwards: StartForward[];
  readonly os: OsFlags;
}

/** -b, -r and --initrd resolve their path the same way; only the message on failure differs. */
function resolveOptionPath(env: StartEnv, path: string, failure: string): string {
  try {
    return realpath(env.cwd, path, env.remote);
  } catch (err) {
    throw new CliError(err instanceof CliError ? `${failure}: ${err.message}` : sysMessage(failure, err));
  }
}

/** -i: strtonum's complaint is a warning, then the count is refused, as ctl_start() does. */
function parseInterfaceCount(v: string, env: StartEnv): number {
  const n = strtonum(v, 1, 2 ** 31 - 1);
  if (n.value === undefined) {
    env.warn(`count is ${n.error as string}: ${v}`);
    throw new CliError(`invalid interface count: ${v}`);
  }
  return n.value;
}

/** ctl_start()'s getopt switch: one option into `flags`, refusing repeats with OpenBSD's words. */
function readStartOption(flags: StartFlags, name: string, v: string, env: StartEnv): void {
  switch (name) {
    case 'b':
      if (flags.boot !== undefined) throw new CliError('boot image specified multiple times');
      flags.boot = resolveOptionPath(env, v, 'invalid boot image path');
      break;
    case 'B':
      if (flags.bootDevice !== undefined) throw new CliError('boot device specified multiple times');
      if (v !== 'disk' && v !== 'cdrom' && v !== 'net') throw new CliError(`unknown boot device ${v}`);
      flags.bootDevice = v;
      break;
    case 'r':
      if (flags.cdrom !== undefined) throw new CliError('iso image specified multiple times');
      flags.cdrom = resolveOptionPath(env, v, `invalid iso image path: ${v}`);
      break;
    case 'c':
      flags.console = true;
      break;
    case 'L':
      flags.nets.push({ kind: 'local' });
      break;
    case 'm':
      if (flags.memory !== undefined) throw new CliError('memory specified multiple times');
      flags.memory = parseSize(v, 'memory', env.warn);
      break;
    case 'n':
      flags.nets.push({ kind: 'switch', switch: v });
      break;
    case 'd':
      flags.disks.push(parseDisk(env, v));
      break;
    case 'i':
      if (flags.nifs !== undefined) throw new CliError('interfaces specified multiple times');
      flags.nifs = parseInterfaceCount(v, env);
      break;
    case 't':
      if (v.length >= VM_NAME_MAX) {
        env.warn('instance vm name too long');
        throw new CliError(`invalid name: ${v}`);
      }
      flags.instanceOf = v;
      break;
    case 'initrd':
      if (flags.initrd !== undefined) throw new CliError('initrd specified multiple times');
      flags.initrd = resolveOptionPath(env, v, `invalid initrd path: ${v}`);
      break;
    case 'cmdline':
      if (flags.cmdline !== undefined) throw new CliError('cmdline specified multiple times');
      flags.cmdline = v;
      break;
    case 'forward':
      flags.forwards.push(parseForward(v));
      break;
    case 'machine':
      if (flags.machine !== undefined) throw new CliError('machine specified multiple times');
      if (!(MACHINES as readonly string[]).includes(v)) throw new CliError(`unknown machine ${v}: ${MACHINES.join(', ')}`);
      flags.machine = v as Machine;
      break;
    case 'display':
      if (flags.display !== undefined) throw new CliError('display specified multiple times');
      if (!(DISPLAY_KINDS as readonly string[]).includes(v)) throw new CliError(`unknown display ${v}: ${DISPLAY_KINDS.join(', ')}`);
      flags.display = v as DisplayKind;
      break;
    case 'passt':
      // A passt-backed NIC (vm.conf's `passt interface`): the host's address, or qemu style with `nat`.
      if (v !== 'real' && v !== 'nat') throw new CliError(`invalid passt style: ${v}: want real or nat`);
      flags.nets.push({ kind: 'passt', style: v });
      break;
    default:
      if (!readOsStartOption(flags.os, name, v, env.cwd)) throw new UsageError();
  }
}

/**
 * vm_start()'s checks after parsing, in its order: limits, then lengths, name and boot files. Whether a new VM can
 * boot and its `starting without …` warnings are vmd's to say: only vmd knows whether NAME exists (then any option
 * but -b and -B is refused as OpenBSD does) or what an instance inherits, and vmctl prints its warnings once.
 */
function checkStartFlags(flags: StartFlags, ref: VmRef, nnics: number, remote: string | undefined): void {
  const { boot, cdrom, disks, initrd } = flags;
  if (disks.length > MAX_DISKS) throw new CliError('too many disks');
  if (nnics > MAX_NICS) throw new CliError('too many network interfaces');
  for (const d of disks) if (d.slice(d.indexOf('/')).length >= PATH_MAX) throw new CliError('disk path too long');
  for (const n of flags.nets) if (n.kind === 'switch' && n.switch.length >= VM_NAME_MAX) throw new CliError('interface name too long');
  if (ref.name !== undefined && !validVmName(ref.name)) throw new CliError('invalid VM name');
  // Over -H the files are the other host's: its vmd opens them as the ssh user, and says so if it cannot.
  if (boot !== undefined && remote === undefined) checkBootFile(boot, 'kernel');
  if (initrd !== undefined && remote === undefined) checkBootFile(initrd, 'initrd');
  if (cdrom !== undefined && cdrom.length >= PATH_MAX) throw new CliError('cdrom name too long');
}

/** The request carries only what was given, so vmd's defaults and the VM's configuration fill the rest. */
function buildStartOptions(flags: StartFlags, nnics: number): StartOptions {
  const options: { -readonly [K in keyof StartOptions]: StartOptions[K] } = {};
  if (flags.memory !== undefined) options.memory = flags.memory;
  if (nnics > 0) options.interfaces = nnics;
  if (flags.nets.length > 0) options.nets = flags.nets;
  if (flags.disks.length > 0) options.disks = flags.disks;
  if (flags.boot !== undefined) options.boot = flags.boot;
  if (flags.initrd !== undefined) options.initrd = flags.initrd;
  if (flags.cmdline !== undefined) options.cmdline = flags.cmdline;
  if (flags.cdrom !== undefined) options.cdrom = flags.cdrom;
  if (flags.bootDevice !== undefined) options.bootDevice = flags.bootDevice;
  if (flags.machine !== undefined) options.machine = flags.machine;
  if (flags.display !== undefined) options.display = flags.display;
  if (flags.instanceOf !== undefined) options.instanceOf = flags.instanceOf;
  if (flags.forwards.length > 0) options.forwards = flags.forwards;
  return { ...options, ...osStartOptions(flags.os) };
}

/** ctl_start() and vm_start(): every check and message in OpenBSD's order; throws CliError or UsageError. */
export function parseStart(args: readonly string[], env: StartEnv): StartArgs {
  const { events, operands } = getopt(args, START_OPTIONS);
  const flags: StartFlags = {
    boot: undefined, bootDevice: undefined, cdrom: undefined, memory: undefined, nifs: undefined, instanceOf: undefined,
    initrd: undefined, cmdline: undefined, machine: undefined, display: undefined, console: false, nets: [], disks: [], forwards: [], os: osFlagsEmpty(),
  };
  for (const { name, value } of events) readStartOption(flags, name, value ?? '', env);
  if (operands.length !== 1) throw new UsageError();
  const word = operands[0] as string;
  const ref = parseVmid(word, env.warn);
  if (ref === undefined) throw new CliError(`invalid id: ${word}`);

  // -L and -n NICs come first, in order; -i adds plain ones up to its count and never removes any.
  const nnics = Math.max(flags.nifs ?? 0, flags.nets.length);
  checkStartFlags(flags, ref, nnics, env.remote);
  return { ref, options: buildStartOptions(flags, nnics), console: flags.console };
}

async function runStart(args: readonly string[], ctx: Context): Promise<number> {
  const parsed = parseStart(args, { cwd: ctx.cwd, warn: (m) => warnx(ctx, m), remote: ctx.remote });
  const client = await ctx.connect();
  try {
    const { response, raw } = await client.request({ type: 'vm.start.request', target: parsed.ref.target, options: parsed.options });
    if (response.type === 'error') {
      reportError(ctx, 'start', response.error, raw);
      return 1;
    }
    if (response.type !== 'vm.start.response') throw new CliError('unexpected response received from vmd');
    if (ctx.json) printJson(ctx, raw);
    else for (const w of response.warnings) warnx(ctx, w);
    // OpenBSD execs cu(1) straight away with -c and says nothing more.
    if (parsed.console) return await attachConsole(ctx, client, response.vm.name, {});
    if (!ctx.json) warnx(ctx, `started vm ${response.vm.id} successfully, tty ${response.vm.tty ?? '-'}`);
    return 0;
  } finally {
    client.close();
  }
}

/** `vmctl start`: the usage line is OpenBSD's, with our long options on a third line. */
export const startCommand: CommandSpec = {
  name: 'start',
  usage: COMMAND_USAGE.start,
  run: runStart,
};
