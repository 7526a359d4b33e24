// VM configurations that do not come from vm.conf's text: `vmctl start` options, instances, and `vmctl receive` streams.
// Pure functions with OpenBSD's defaults and checks (vm_instance, vm_register), so they are tested without a daemon.

import {
  DEFAULT_MEMORY, MAX_DISKS, MAX_NICS, PASST_NAT_ADDRESS,
  type DiskBus, type DiskConfig, type DiskFormat, type InstanceFlag, type InterfaceConfig, type VmConfig,
} from '../../share/config.js';
import { diskFormatAs, fsIdentityOf } from '../user-files.js';
import { VmdError } from '../../share/errors.js';
import { NAME_MAX, switchNameError, vmNameError } from '../../share/names.js';
import type { StartOptions } from '../../share/protocol.js';
import { DISK_SPEC_RE } from '../../share/read-request.js';
import type { StreamConfig } from '../../share/stream.js';
import { stableMac } from '../net/addr.js';
import { osFromOptions, osInherit, osOptionsGiven } from './vm-os.js';

/** The names vm.conf accepts (share/names.ts), with vmctl's wording for the two ways a name goes wrong. */
function vmNameCheck(name: string): void {
  const why = vmNameError(name);
  if (why === null) return;
  if (name.length > NAME_MAX) throw new VmdError('ERR_INVALID', `vm name "${name.slice(0, 20)}…": vm name too long`);
  throw new VmdError('ERR_INVALID', `vm name "${name}": invalid VM name`, { hint: why });
}

/** A VmConfig for `vmctl start NAME -m … -i …` (or an instance with -t), with OpenBSD's defaults and checks. */
export function vmFromOptions(
  name: string, o: StartOptions, uid: number, configOf: (n: string) => VmConfig | undefined, inGroup: (gid: number) => boolean,
): { vm: VmConfig; warnings: string[]; origin: 'adhoc' | 'instance' } {
  vmNameCheck(name);
  for (const n of o.nets ?? []) {
    const why = n.kind === 'switch' ? switchNameError(n.switch) : null;
    if (why !== null) throw new VmdError('ERR_INVALID', `switch "${n.kind === 'switch' ? n.switch : ''}": invalid switch name: ${why}`);
  }
  const warnings: string[] = [];
  const location = { file: '(vmctl start)', line: 0 };
  let parent: VmConfig | null = null;
  if (o.instanceOf !== undefined) {
    const p = configOf(o.instanceOf);
    if (p === undefined) throw new VmdError('ERR_PARENT_INVALID', `vm "${o.instanceOf}": invalid template`);
    parent = p;
    if (uid !== 0) {
      const allow = parent.allowInstance;
      const owner = allow?.owner ?? parent.owner;
      // OpenBSD's vm_checkperm on the instance owner: that user (not root's uid 0 of a `:group`), or the group.
      const mayCreate = owner !== null && ((owner.uid === uid && owner.uid !== 0) || (owner.gid !== null && inGroup(owner.gid)));
      if (allow === null || !mayCreate) {
        throw new VmdError('ERR_PERMISSION', `vm "${name}": no permission to create an instance of "${parent.name}"`);
      }
      // vm_instance: each override needs its `allow instance` flag; OpenBSD logs `no permission to set …`.
      const overrides: Array<[boolean, InstanceFlag, string]> = [
        [o.memory !== undefined, 'memory', 'memory'],
        [(o.disks?.length ?? 0) > 0, 'disk', 'disks'],
        [o.interfaces !== undefined || (o.nets?.length ?? 0) > 0 || (o.forwards?.length ?? 0) > 0, 'interface', 'interfaces'],
        [o.boot !== undefined || o.initrd !== undefined || o.cmdline !== undefined, 'boot', 'boot image'],
        [o.cdrom !== undefined, 'cdrom', 'cdrom'],
        // The machine decides how the instance boots and which devices it has: part of `allow instance boot`.
        [o.machine !== undefined, 'boot', 'machine'],
        [o.display !== undefined, 'boot', 'display'],
        [osOptionsGiven(o), 'boot', 'firmware or cloud-init'],
      ];
      for (const [given, flag, what] of overrides) {
        if (given && !allow.flags.includes(flag)) {
          throw new VmdError('ERR_PERMISSION', `vm "${name}": no permission to set ${what}`, { hint: `vm "${parent.name}" allows instances to set: ${allow.flags.join(', ') || 'nothing'}` });
        }
      }
    }
  }
  const nets = o.nets ?? [];
  const count = Math.max(o.interfaces ?? 0, nets.length);
  const interfaces: InterfaceConfig[] = [];
  for (let i = 0; i < count; i++) {
    const n = nets[i];
    interfaces.push({
      index: i, name: null, local: n?.kind === 'local', switch: n?.kind === 'switch' ? n.switch : null, group: null,
      lladdr: null, locked: false, rdomain: null, up: true,
      forwards: i === 0 ? (o.forwards ?? []).map((f) => ({ ...f, location })) : [],
      rules: [], location,
      ...(n?.kind === 'passt' ? { passt: { dev: null, address: n.style === 'nat' ? PASST_NAT_ADDRESS : null } } : {}),
    });
  }
  if ((o.disks?.length ?? 0) > MAX_DISKS) throw new VmdError('ERR_INVALID', `vm "${name}": too many disks`);
  if (interfaces.length > MAX_NICS) throw new VmdError('ERR_INVALID', `vm "${name}": too many network interfaces`);
  const disks = (o.disks ?? []).map((spec): DiskConfig => {
    const m = DISK_SPEC_RE.exec(spec);
    const path = m ? m[3]! : spec;
    // The signature is read as the requester: root never opens a path a user named just to look at it.
    const format = m?.[2] !== undefined ? (m[2] as DiskFormat) : diskFormatAs(path, fsIdentityOf(uid));
    return m?.[1] === undefined ? { path, format } : { path, format, bus: m[1] as DiskBus };
  });
  const own: VmConfig = {
    name, instanceOf: parent?.name ?? null, enabled: true,
    memory: o.memory ?? null, cpus: null,
    boot: o.boot ?? null, initrd: o.initrd ?? null, cmdline: o.cmdline ?? null,
    // -B is a one-time boot device (vmStartRequest passes it to this start only), never part of the VM.
    bootDevice: null, cdrom: o.cdrom ?? null,
    disks, interfaces, owner: { uid, gid: null, user: null, group: null }, allowInstance: null,
    sev: false, seves: false, accel: null, ...(o.machine === undefined ? {} : { machine: o.machine }), ...osFromOptions(o),
    ...(o.display === undefined ? {} : { display: o.display }), location,
  };
  const vm = parent === null ? { ...own, memory: own.memory ?? DEFAULT_MEMORY } : inherit(parent, own);
  if (vm.boot === null && vm.disks.length === 0 && vm.cdrom === null) {
    throw new VmdError('ERR_NO_BOOT', `vm "${name}": no kernel or disk/cdrom specified`);
  }
  if (vm.boot === null && vm.disks.length === 0) warnings.push('starting without disks');
  if (vm.boot === null && vm.interfaces.length === 0) warnings.push('starting without network interfaces');
  return { vm, warnings, origin: parent === null ? 'adhoc' : 'instance' };
}

/** The configuration a send stream carries: what the guest runs with now, its NICs with the MACs it has. */
export function streamConfigOf(id: number, vm: VmConfig): StreamConfig {
  return {
    name: vm.name,
    id,
    memory: vm.memory ?? DEFAULT_MEMORY,
    cpus: vm.cpus ?? 1,
    boot: vm.boot, initrd: vm.initrd, cmdline: vm.cmdline, cdrom: vm.cdrom,
    disks: vm.disks.map((d) => ({ path: d.path, format: d.format, ...(d.bus === undefined ? {} : { bus: d.bus }) })),
    ...(vm.machine == null ? {} : { machine: vm.machine }),
    interfaces: vm.interfaces.map((n) => ({
      local: n.local, switch: n.switch, lladdr: n.lladdr ?? stableMac(id, vm.name, n.index), locked: n.locked,
      group: n.group, rdomain: n.rdomain,
      forwards: n.forwards.map((f) => ({ proto: f.proto, hostPort: f.hostPort, guestPort: f.guestPort })),
      rules: n.rules.map((r) => ({ action: r.action, direction: r.direction, quick: r.quick, protos: r.protos, from: r.from, to: r.to, text: r.text })),
      ...(n.allow === undefined || n.allow.length === 0 ? {} : { allow: [...n.allow] }),
      ...(n.passt == null ? {} : { passt: { dev: n.passt.dev, address: n.passt.address } }),
    })),
    owner: vm.owner === null ? null : { uid: vm.owner.uid, gid: vm.owner.gid },
    ...(vm.firmware === 'uefi' ? { firmware: 'uefi' as const } : {}),
    ...(vm.firmware === 'uefi' && vm.secureBoot === true ? { secureBoot: true as const } : {}),
    ...(vm.display === 'vnc' ? { display: 'vnc' as const } : {}),
  };
}

/** A VmConfig for `vmctl receive NAME` from a stream's (already decoded) configuration. */
export function vmFromStream(name: string, c: StreamConfig): VmConfig {
  vmNameCheck(name);
  const location = { file: '(vmctl receive)', line: 0 };
  return {
    name, instanceOf: null, enabled: true, memory: c.memory, cpus: c.cpus,
    boot: c.boot, initrd: c.initrd, cmdline: c.cmdline, bootDevice: null, cdrom: c.cdrom,
    disks: c.disks.map((d) => ({ path: d.path, format: d.format, ...(d.bus === undefined ? {} : { bus: d.bus }) })),
    ...(c.machine === undefined ? {} : { machine: c.machine }),
    interfaces: c.interfaces.map((n, index) => ({
      index, name: null, local: n.local, switch: n.switch, group: n.group, lladdr: n.lladdr, locked: n.locked,
      rdomain: n.rdomain, up: true,
      forwards: n.forwards.map((f) => ({ ...f, location })),
      rules: n.rules.map((r) => ({ ...r, location })),
      ...(n.allow === undefined ? {} : { allow: n.allow }),
      ...(n.passt === undefined ? {} : { passt: n.passt }),
    location })),
    owner: c.owner === null ? null : { uid: c.owner.uid, gid: c.owner.gid, user: null, group: null },
    allowInstance: null, sev: false, seves: false, accel: null, location,
    ...(c.firmware === 'uefi' ? { firmware: 'uefi' as const } : {}),
    ...(c.secureBoot === true ? { secureBoot: true } : {}),
    ...(c.display === 'vnc' ? { display: 'vnc' as const } : {}),
  };
}

/** Instance inheritance (OpenBSD vm_instance): unset cpus, memory, NICs, cdrom and owner come from the parent. */
export function inherit(parent: VmConfig | null, child: VmConfig): VmConfig {
  if (parent === null) return child;
  for (const d of child.disks) {
    if (parent.disks.some((p) => p.path === d.path)) {
      throw new VmdError('ERR_INVALID', `vm "${child.name}": disk ${d.path} cannot be reused`, { hint: 'give the instance its own overlay: vmctl create -b BASE NEW.qcow2' });
    }
  }
  return {
    ...child,
    memory: child.memory ?? parent.memory,
    cpus: child.cpus ?? parent.cpus,
    boot: child.boot ?? parent.boot,
    initrd: child.initrd ?? parent.initrd,
    cmdline: child.cmdline ?? parent.cmdline,
    cdrom: child.cdrom ?? parent.cdrom,
    interfaces: child.interfaces.length > 0 ? child.interfaces : parent.interfaces,
    owner: child.owner ?? parent.owner,
    accel: child.accel ?? parent.accel,
    machine: child.machine ?? parent.machine ?? null,
    ...osInherit(parent, child),
    // `display none` in the instance turns the parent's off; unset takes the parent's.
    ...((child.display ?? parent.display) == null ? {} : { display: child.display ?? parent.display }),
  };
}
