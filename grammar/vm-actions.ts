// The actions of a `vm "name" { … }` block: parse.y's vm rule and its options (disks, memory, boot files,
// owner, allow instance, interfaces), building a VmConfig at the closing brace.

import type {
  Accel, AllowInstance, BootDevice, DisplayKind, DiskBus, DiskConfig, InstanceFlag, InterfaceConfig, Machine, Owner, SourceLocation, VmConfig,
} from '../share/config.js';
import { DISK_BUSES, MACHINE_BUSES, MACHINES, MAX_DISKS, MAX_MEMORY, MAX_NICS, MIN_MEMORY } from '../share/config.js';
import { hasQcow2Magic } from '../share/diskformat.js';
import { strerror } from '../share/errno.js';
import { CONTROL_CHARS } from '../share/names.js';
import { fmtScaled, ScaledError, scanScaledBig } from '../share/scaled.js';
import { resolve } from 'node:path';
import { ACCELS, type ActionBase, NAME_MAX, PATH_MAX } from './action-base.js';
import type { Toks, VmOpt } from './ast.js';
import { vmDisplay } from './display-actions.js';
import { type IfaceDraft, vmInterface } from './interface-actions.js';
import { type OsDraft, osFields, vmCloudInit, vmFirmware } from './os-actions.js';
import { strtonum } from './values.js';

const MAX_CPUS = 64;

/** A vm while its block is being read. */
export interface VmDraft extends OsDraft {
  name: string;
  instanceOf: string | null;
  enabled: boolean;
  memory: number | null;
  cpus: number | null;
  boot: string | null;
  initrd: string | null;
  cmdline: string | null;
  bootDevice: BootDevice | null;
  cdrom: string | null;
  disks: DiskConfig[];
  nics: IfaceDraft[];
  nifs: number | null;
  owner: Owner | null;
  allow: { flags: Set<InstanceFlag>; owner: Owner | null } | null;
  sev: boolean;
  seves: boolean;
  accel: Accel | null;
  machine: Machine | null;
  /** Token of each disk's `bus` word (or of its line), for the machine check at the closing brace. */
  diskAt: number[];
  machineAt: number;
  display: DisplayKind | null;
  displayAt: number;
  location: SourceLocation;
}

/** The mid-rule action after `vm NAME [instance NAME]`. */
export function vmBegin(a: ActionBase, nameToks: Toks, instance: Toks | null, headEnd: number): VmDraft {
  let name = a.concat(nameToks);
  let instanceOf: string | null = null;
  if (instance !== null) {
    if (name.length >= NAME_MAX) a.fail(headEnd, `vm ${name} name too long`, headEnd);
    instanceOf = name;
    name = a.concat(instance);
  }
  if (name.length >= NAME_MAX) a.fail(headEnd, 'vm name too long', headEnd);
  return {
    name, instanceOf, enabled: true, memory: null, cpus: null, boot: null, initrd: null, cmdline: null,
    bootDevice: null, cdrom: null, disks: [], nics: [], nifs: null, owner: null, allow: null,
    sev: false, seves: false, accel: null, machine: null, diskAt: [], machineAt: nameToks[0]! - 1,
    firmware: null, secureBoot: false, cloudInit: null, display: null, displayAt: nameToks[0]! - 1,
    location: a.location(nameToks[0]! - 1),
  };
}

export function vmOption(a: ActionBase, vm: VmDraft, o: VmOpt): void {
  const la = o.end;
  switch (o.kind) {
    case 'enable': vm.enabled = true; return;
    case 'disable': vm.enabled = false; return;
    case 'sev': vm.sev = true; return;
    case 'seves': vm.sev = true; vm.seves = true; return;
    case 'disk':
      vm.disks.push(vmDisk(a, vm, o, la));
      vm.diskAt.push(o.bus ?? o.path[0]!);
      return;
    case 'interface':
      vm.nics.push(vmInterface(a, o, vm.nics.length));
      return;
    case 'bootDevice': vm.bootDevice = o.value; return;
    case 'boot':
    case 'initrd': {
      const what = o.kind === 'boot' ? 'kernel' : 'initrd';
      if (vm[o.kind] !== null) a.fail(la, `${what} specified more than once`, la);
      const p = a.realpath(a.concat(o.path));
      if (p.error !== null) a.fail(la, `${what} path not found: ${p.error}`, la);
      if (CONTROL_CHARS.test(p.path)) a.fail(la, `${what} path contains control characters: ${JSON.stringify(p.path)}`, la);
      vm[o.kind] = p.path;
      return;
    }
    case 'cdrom': {
      if (vm.cdrom !== null) a.fail(la, 'cdrom specified more than once', la);
      const path = a.concat(o.path);
      if (Buffer.byteLength(path) >= PATH_MAX) a.fail(la, 'cdrom name too long', la);
      if (CONTROL_CHARS.test(path)) a.fail(la, `cdrom path contains control characters: ${JSON.stringify(path)}`, la);
      vm.cdrom = resolve(a.options.cwd, path);
      return;
    }
    case 'interfaces': {
      if (vm.nifs !== null && vm.nifs !== 0) a.fail(o.value, 'interfaces specified more than once', la);
      const v = BigInt(a.text(o.value));
      if (v < 0n || v > BigInt(MAX_NICS)) a.fail(o.value, `too many interfaces: ${v}`, la);
      vm.nifs = Number(v);
      return;
    }
    case 'memory': {
      const raw = a.text(o.value);
      if (vm.memory !== null) {
        a.fail(o.value, o.number ? 'memory specified more than once' : 'argument specified more than once', la);
      }
      vm.memory = parseSize(a, raw, o.number) ?? a.fail(o.value, `failed to parse size: ${o.number ? BigInt(raw).toString() : raw}`, la);
      return;
    }
    case 'owner':
      vm.owner = a.owner(o.owner, la);
      return;
    case 'allow': {
      const allow = vm.allow ?? { flags: new Set<InstanceFlag>(), owner: null };
      for (const f of o.flags) {
        if (f.flag === 'owner') allow.owner = a.owner(f.owner!, la);
        else allow.flags.add(f.flag);
      }
      vm.allow = allow;
      return;
    }
    case 'cpus': {
      if (vm.cpus !== null) a.fail(o.value, 'cpus specified more than once', la);
      const v = a.text(o.value);
      const n = strtonum(v, 1, MAX_CPUS);
      if (typeof n !== 'number') a.fail(o.value, `invalid number of cpus: ${v}`, la);
      vm.cpus = n;
      return;
    }
    case 'accel': {
      if (vm.accel !== null) a.fail(o.value, 'accel specified more than once', la);
      const v = a.text(o.value);
      if (!ACCELS.includes(v)) a.fail(o.value, `invalid accel: ${v}`, la);
      vm.accel = v as Accel;
      return;
    }
    case 'machine': {
      if (vm.machine !== null) a.fail(o.value, 'machine specified more than once', la);
      const v = a.text(o.value);
      if (!(MACHINES as readonly string[]).includes(v)) a.fail(o.value, `invalid machine: ${v}: ${MACHINES.join(', ')}`, la);
      vm.machine = v as Machine;
      vm.machineAt = o.value;
      return;
    }
    case 'cmdline': {
      if (vm.cmdline !== null) a.fail(la, 'cmdline specified more than once', la);
      const cmdline = a.concat(o.value);
      if (CONTROL_CHARS.test(cmdline)) a.fail(la, `cmdline contains control characters: ${JSON.stringify(cmdline)}`, la);
      vm.cmdline = cmdline;
      return;
    }
    case 'firmware': vmFirmware(a, vm, o); return;
    case 'cloudInit': vmCloudInit(a, vm, o); return;
    case 'display': vmDisplay(a, vm, o); return;
  }
}

/** The closing brace: pad to `interfaces N` and register the vm. */
export function vmEnd(a: ActionBase, vm: VmDraft, close: number): VmConfig {
  const nics: InterfaceConfig[] = vm.nics.map((n, index) => ({ index, ...n }));
  for (let index = nics.length; index < (vm.nifs ?? 0); index++) {
    nics.push({
      index, name: null, local: false, switch: null, group: null, lladdr: null, locked: false, rdomain: null,
      up: true, forwards: [], rules: [], location: vm.location,
    });
  }
  const allow: AllowInstance | null = vm.allow === null
    ? null
    : { flags: [...vm.allow.flags].sort(), owner: vm.allow.owner };
  machineCheck(a, vm);
  a.debug(close, `vm "${vm.name}" registered (${vm.enabled ? 'enabled' : 'disabled'})`);
  return {
    name: vm.name, instanceOf: vm.instanceOf, enabled: vm.enabled, memory: vm.memory, cpus: vm.cpus,
    boot: vm.boot, initrd: vm.initrd, cmdline: vm.cmdline, bootDevice: vm.bootDevice, cdrom: vm.cdrom,
    disks: vm.disks, interfaces: nics, owner: vm.owner, allowInstance: allow, sev: vm.sev, seves: vm.seves,
    accel: vm.accel, ...(vm.machine === null ? {} : { machine: vm.machine }), ...osFields(vm),
    ...(vm.display === null ? {} : { display: vm.display }), location: vm.location,
  };
}

/** What the machine cannot hold, on the line that asks for it: a bus it lacks; microvm's kernel-only boot. */
function machineCheck(a: ActionBase, vm: VmDraft): void {
  const machine = vm.machine ?? 'q35';
  vm.disks.forEach((d, i) => {
    const bus = d.bus ?? 'virtio';
    if (!MACHINE_BUSES[machine].includes(bus)) {
      const has = Object.entries(MACHINE_BUSES).filter(([, b]) => b.includes(bus)).map(([m]) => m);
      a.error(vm.diskAt[i]!, `disk ${d.path}: bus ${bus} needs machine ${has.join(' or ')}, not ${machine}`);
    }
  });
  if (machine !== 'microvm') return;
  if (vm.display === 'vnc') a.error(vm.displayAt, 'machine microvm has no bus for a display: display needs machine q35 or pc');
  if (vm.boot === null) a.error(vm.machineAt, 'machine microvm needs a kernel: boot PATH (it has no firmware that boots a disk)');
  if (vm.cdrom !== null) a.error(vm.machineAt, 'machine microvm has no cdrom bus');
  if (vm.bootDevice !== null) a.error(vm.machineAt, 'machine microvm cannot use boot device');
}

/** `disk PATH [format raw|qcow2] [bus virtio|scsi|sata|ide|nvme]`. */
function vmDisk(a: ActionBase, vm: VmDraft, o: VmOpt & { kind: 'disk' }, la: number): DiskConfig {
  const path = a.concat(o.path);
  let format: 'raw' | 'qcow2' | null = null;
  if (o.format !== null) {
    const f = a.concat(o.format);
    if (f.toLowerCase() === 'raw') format = 'raw';
    else if (f.toLowerCase() === 'qcow2') format = 'qcow2';
    else a.fail(la, `unrecognized disk format ${f}`, la);
  }
  let bus: DiskBus | null = null;
  if (o.bus !== null) {
    const b = a.text(o.bus);
    if (!(DISK_BUSES as readonly string[]).includes(b)) a.fail(o.bus, `unrecognized disk bus ${b}: ${DISK_BUSES.join(', ')}`, la);
    bus = b as DiskBus;
  }
  const disk = parseDisk(a, vm, path, format) ?? a.fail(la, `failed to parse disks: ${path}`, la);
  return bus === null ? disk : { ...disk, bus };
}

/** parse.y parse_disk(): count, realpath, then the format from the qcow2 magic unless given. */
function parseDisk(a: ActionBase, vm: VmDraft, word: string, format: 'raw' | 'qcow2' | null): DiskConfig | null {
  if (vm.disks.length >= MAX_DISKS) {
    a.warnx('too many disks');
    return null;
  }
  const p = a.realpath(word);
  if (p.error !== null) {
    a.warnx(`disk ${word}: ${p.error}`);
    return null;
  }
  if (Buffer.byteLength(p.path) >= PATH_MAX) {
    a.warnx('disk path too long');
    return null;
  }
  if (CONTROL_CHARS.test(p.path)) {
    a.warnx(`disk ${JSON.stringify(p.path)}: path contains control characters`);
    return null;
  }
  return { path: p.path, format: format ?? (hasQcow2Magic(p.path) ? 'qcow2' : 'raw') };
}

/** parse.y parse_size(): scan_scaled for strings, 1M..128G, rounded down to whole MiB. */
function parseSize(a: ActionBase, text: string, isNumber: boolean): number | null {
  let val: bigint;
  if (isNumber) val = BigInt(text);
  else {
    try {
      val = scanScaledBig(text);
    } catch (err) {
      if (!(err instanceof ScaledError)) throw err;
      a.warnx(`invalid memory size: ${text}: ${strerror(err.code)}`);
      return null;
    }
  }
  if (val < BigInt(MIN_MEMORY)) {
    a.warnx('memory size must be at least 1MB');
    return null;
  }
  if (val > BigInt(MAX_MEMORY)) {
    a.warnx(`memory size too large (limit is ${fmtScaled(MAX_MEMORY)})`);
    return null;
  }
  const size = Number((val / 1048576n) * 1048576n);
  if (BigInt(size) !== val) a.debug(null, `memory size rounded to ${fmtScaled(size)}`);
  return size;
}
