// The effective configuration of one VM written back as vm.conf text (`vmctl inspect`), which `vmd -n` accepts again.
// Instances are written out whole (what they inherited included), as a plain vm block: the text says what runs.

import type { AllowInstance, InterfaceConfig, Owner, SwitchConfig, VmConfig } from './config.js';

/** A vm.conf string: double-quoted, with the quote and backslash escaped as the lexer reads them. */
export function confString(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** `user[:group]`, `:group` or a uid, as `owner` and `socket owner` take it; the uid when the name is unknown. */
export function ownerText(o: Owner): string {
  const user = o.user ?? (o.group === null || o.uid !== 0 ? String(o.uid) : '');
  const group = o.group ?? (o.gid === null ? null : String(o.gid));
  return `${user}${group === null ? '' : `:${group}`}`;
}

function sizeText(bytes: number): string {
  const mib = bytes / (1024 * 1024);
  return mib % 1024 === 0 ? `${mib / 1024}G` : `${mib}M`;
}

function interfaceLines(nic: InterfaceConfig): string[] {
  const body: string[] = [];
  if (nic.switch !== null) body.push(`switch ${confString(nic.switch)}`);
  if (nic.group !== null) body.push(`group ${confString(nic.group)}`);
  if (nic.lladdr !== null || nic.locked) body.push(`${nic.locked ? 'locked ' : ''}lladdr${nic.lladdr === null ? '' : ` ${nic.lladdr}`}`);
  if (nic.rdomain !== null) body.push(`rdomain ${nic.rdomain}`);
  if (!nic.up) body.push('down');
  for (const a of nic.allow ?? []) body.push(`allow ${a}`);
  for (const f of nic.forwards) body.push(`forward ${f.proto} ${f.hostPort}${f.guestPort === f.hostPort ? '' : ` to ${f.guestPort}`}`);
  for (const r of nic.rules) body.push(r.text);
  const head = nic.local ? 'local interface' : `interface${nic.name === null ? '' : ` ${nic.name}`}`;
  return body.length === 0 ? [`${head}`] : [`${head} {`, ...body.map((l) => `\t${l}`), '}'];
}

function allowLines(a: AllowInstance): string[] {
  const words: string[] = [...a.flags.filter((f) => f !== 'owner')];
  if (a.owner !== null) words.push(`owner ${ownerText(a.owner)}`);
  return words.length === 0 ? [] : ['allow instance {', ...words.map((w) => `\t${w}`), '}'];
}

/** The vm block of `vm`, every setting spelled out; `owner` overrides the block's own (a command-line VM's creator). */
export function vmConfigText(vm: VmConfig, owner: Owner | null = vm.owner): string {
  const lines: string[] = [];
  lines.push(vm.enabled ? 'enable' : 'disable');
  if (vm.memory !== null) lines.push(`memory ${sizeText(vm.memory)}`);
  if (vm.cpus !== null) lines.push(`cpus ${vm.cpus}`);
  if (vm.accel !== null) lines.push(`accel ${vm.accel}`);
  if (vm.boot !== null) lines.push(`boot ${confString(vm.boot)}`);
  if (vm.initrd !== null) lines.push(`initrd ${confString(vm.initrd)}`);
  if (vm.cmdline !== null) lines.push(`cmdline ${confString(vm.cmdline)}`);
  if (vm.bootDevice !== null) lines.push(`boot device ${vm.bootDevice}`);
  if (vm.cdrom !== null) lines.push(`cdrom ${confString(vm.cdrom)}`);
  for (const d of vm.disks) lines.push(`disk ${confString(d.path)} format ${d.format}`);
  for (const nic of vm.interfaces) lines.push(...interfaceLines(nic));
  if (owner !== null) lines.push(`owner ${ownerText(owner)}`);
  if (vm.allowInstance !== null) lines.push(...allowLines(vm.allowInstance));
  if (vm.sev) lines.push('sev');
  if (vm.seves) lines.push('seves');
  if (vm.display !== undefined && vm.display !== null) lines.push(`display ${vm.display}`);
  return [`vm ${confString(vm.name)} {`, ...lines.map((l) => `\t${l}`), '}', ''].join('\n');
}

/** A switch block, so a VM's text that names it reads on its own. */
export function switchConfigText(sw: SwitchConfig): string {
  const lines = [sw.enabled ? 'enable' : 'disable', `interface ${sw.interface}`];
  if (sw.group !== null) lines.push(`group ${confString(sw.group)}`);
  if (sw.locked) lines.push('locked lladdr');
  if (sw.rdomain !== null) lines.push(`rdomain ${sw.rdomain}`);
  if (!sw.up) lines.push('down');
  if (sw.address !== null) lines.push(`address ${sw.address}`);
  if (sw.dhcp) lines.push('dhcp');
  if (sw.nat) lines.push('nat');
  const x = sw.vxlan;
  if (x !== null) {
    const peers = x.group !== null ? `group ${x.group}` : x.remotes.length === 1 ? `remote ${x.remotes[0]!}` : `remote { ${x.remotes.join(', ')} }`;
    lines.push(`vxlan ${x.id} ${peers}${x.local === null ? '' : ` local ${x.local}`}${x.dev === null ? '' : ` dev ${x.dev}`} port ${x.port}`);
  }
  return [`switch ${confString(sw.name)} {`, ...lines.map((l) => `\t${l}`), '}', ''].join('\n');
}

/** What `vmctl inspect` prints: the switches the VM's interfaces name, then the VM. */
export function inspectText(vm: VmConfig, switches: readonly SwitchConfig[], owner: Owner | null): string {
  const used = new Set(vm.interfaces.map((n) => n.switch).filter((s): s is string => s !== null));
  const blocks = switches.filter((s) => used.has(s.name)).map(switchConfigText);
  return [...blocks, vmConfigText(vm, owner)].join('\n');
}
