// The semantic actions of vm.conf: what parse.y's rule actions do, in the same order, building the model.
// They print OpenBSD's diagnostics at OpenBSD's lines; a failing action throws YyError like yacc's YYERROR.

import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import type {
  Accel, AgentxConfig, AllowInstance, Config, DiskConfig, FilterRule, InstanceFlag, InterfaceAllow, InterfaceConfig, Owner,
  PortForward, PortRange, Prefix4, Prefix6, RuleEndpoint, RuleProto, SourceLocation, StaggeredStart,
  SwitchConfig, VmConfig, VxlanConfig, BootDevice,
} from '../share/config.js';
import { DEFAULT_LOCAL_PREFIX, MAX_DISKS, MAX_MEMORY, MAX_NICS, MIN_MEMORY } from '../share/config.js';
import { fmtScaled, ScaledError, scanScaledBig } from '../share/scaled.js';
import type { UserDb } from '../share/users.js';
import type {
  IfaceOpt, OwnerNode, PartialBlock, Statement, SwitchNode, SwitchOpt, Tok, Toks, VmNode, VmOpt,
} from './ast.js';
import type { Diagnostic } from './parse.js';
import type { TokenStream } from './lexer.js';
import { CODE_NL } from './tokens.js';
import {
  etherAton, formatIPv4, formatIPv6, isLinuxIfName, maskIPv6, parseCidr, parseHostAddress,
  parseIPv4Net, parseIPv6, strtonum,
} from './values.js';
import { strerror } from '../share/errno.js';
import { hasQcow2Magic } from '../share/diskformat.js';

/** yacc's YYERROR: abandon the statement; recovery starts at token `at` (the lookahead). */
export class YyError extends Error {
  constructor(readonly at: number) {
    super('YYERROR');
  }
}

const PATH_MAX = 1024;
const NAME_MAX = 64;
const IF_NAMESIZE = 16;
const RT_TABLEID_MAX = 255;
const MAX_CPUS = 64;
const AGENTX_CONTEXT_MAX = 32;
// sizeof(sun_path) on Linux, minus the terminator.
const AGENTX_PATH_MAX = 107;
const AGENTX_MASTER_PATH = '/var/agentx/master';
const VXLAN_DEFAULT_PORT = 4789;
const ACCELS: readonly string[] = ['auto', 'kvm', 'tcg'];
const PROTOS: readonly string[] = ['tcp', 'udp', 'icmp', 'icmp6'];

interface IfaceDraft {
  name: string | null;
  local: boolean;
  switch: string | null;
  group: string | null;
  lladdr: string | null;
  locked: boolean;
  rdomain: number | null;
  up: boolean;
  allow?: InterfaceAllow[];
  forwards: PortForward[];
  rules: FilterRule[];
  location: SourceLocation;
}

interface VmDraft {
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
  /** The interface being parsed: its options run before the interface action counts it (parse.y order). */
  nic: IfaceDraft | null;
  nifs: number | null;
  owner: Owner | null;
  allow: { flags: Set<InstanceFlag>; owner: Owner | null } | null;
  sev: boolean;
  seves: boolean;
  accel: Accel | null;
  location: SourceLocation;
}

interface SwitchDraft {
  name: string;
  id: number;
  interface: string | null;
  enabled: boolean;
  up: boolean;
  group: string | null;
  locked: boolean;
  rdomain: number | null;
  address: string | null;
  dhcp: boolean;
  nat: boolean;
  vxlan: VxlanConfig | null;
  location: SourceLocation;
}

/** Settings of the actions that come from the caller. */
export interface ActionOptions {
  readonly cwd: string;
  readonly users: UserDb;
}

/** Runs the actions statement by statement and accumulates the model and the diagnostics. */
export class Builder {
  readonly diagnostics: Diagnostic[] = [];
  private readonly switches: SwitchConfig[] = [];
  private readonly vms: VmConfig[] = [];
  private localPrefix: Prefix4 = DEFAULT_LOCAL_PREFIX;
  private localInet6 = false;
  private localInet6Prefix: Prefix6 | null = null;
  private socketOwner: Owner | null = null;
  private staggered: StaggeredStart | null = null;
  private agentx: AgentxConfig | null = null;
  private accel: Accel = 'auto';
  private qemu: string | null = null;
  private vm: VmDraft | null = null;
  private sw: SwitchDraft | null = null;
  private readonly realpaths = new Map<string, { path: string; error: null } | { path: null; error: string }>();

  constructor(private readonly stream: TokenStream, private readonly options: ActionOptions) {}

  // --- diagnostics

  location(i: number): SourceLocation {
    return { file: this.stream.files[this.stream.fileOf[i]!]!, line: this.stream.lines[i]! };
  }

  /** yyerror(): `file:line: message` at the token yacc had last read. */
  error(i: number, message: string): void {
    const loc = this.location(i);
    this.diagnostics.push({ severity: 'error', file: loc.file, line: loc.line, message });
  }

  /** log_warnx() during parsing: `vmd: message`, part of a failure. */
  private warnx(message: string): void {
    this.diagnostics.push({ severity: 'error', file: null, line: null, message });
  }

  /** log_debug(): shown with -vv. */
  private debug(i: number | null, message: string): void {
    const loc = i === null ? null : this.location(i);
    this.diagnostics.push({ severity: 'debug', file: loc?.file ?? null, line: loc?.line ?? null, message });
  }

  /** Unused-macro warnings: stderr without prefix. */
  warning(message: string): void {
    this.diagnostics.push({ severity: 'warning', file: null, line: null, message });
  }

  private fail(i: number, message: string, at: number): never {
    this.error(i, message);
    throw new YyError(at);
  }

  private text(t: Tok): string {
    return this.stream.texts[t]!;
  }

  private concat(toks: Toks): string {
    let s = '';
    for (const t of toks) s += this.stream.texts[t]!;
    return s;
  }

  // --- top level

  statement(s: Statement): void {
    // The newline that ends a statement is the lookahead of actions at its end.
    const la = s.end - 1;
    switch (s.kind) {
      case 'empty':
        return;
      case 'include': {
        const inc = this.stream.includes.get(s.start);
        if (inc === undefined || !inc.ok) this.fail(la, `failed to include file ${this.concat(s.path)}`, la);
        return;
      }
      case 'varset':
        if (/\s/.test(this.text(s.name).slice(1))) this.fail(s.value, 'macro name cannot contain whitespace', la);
        return;
      case 'localInet6': {
        if (s.prefix !== null) {
          const p = parsePrefix6(this.text(s.prefix));
          if (typeof p === 'string') this.fail(s.prefix, `invalid local inet6 prefix: ${p}`, la);
          this.localInet6Prefix = p;
        }
        this.localInet6 = true;
        return;
      }
      case 'localPrefix': {
        const p = parsePrefix4(this.text(s.value));
        if (typeof p === 'string') this.fail(s.value, `invalid local prefix: ${p}`, la);
        this.localPrefix = p;
        return;
      }
      case 'socketOwner': {
        const o = this.owner(s.owner, la);
        // parse.y: the socket's group defaults to wheel (0) when none is given.
        this.socketOwner = { ...o, gid: o.gid ?? 0 };
        return;
      }
      case 'agentx': {
        let context: string | null = null;
        let path = '';
        for (const o of s.opts) {
          const v = this.text(o.value);
          if (o.kind === 'context') {
            if (v.length > AGENTX_CONTEXT_MAX) this.fail(o.value, 'agentx context too large', o.end);
            context = v;
          } else {
            if (v.length > AGENTX_PATH_MAX) this.fail(o.value, 'agentx path too large', o.end);
            if (!v.startsWith('/')) this.fail(o.value, 'agentx path is not absolute', o.end);
            path = v;
          }
        }
        this.agentx = { context, path: path === '' ? AGENTX_MASTER_PATH : path };
        return;
      }
      case 'staggered': {
        const parallel = Number(this.text(s.parallel));
        const delay = Number(this.text(s.delay));
        if (parallel < 0) this.fail(s.parallel, `invalid staggered start parallel: ${parallel}`, la);
        if (delay < 0) this.fail(s.delay, `invalid staggered start delay: ${delay}`, la);
        this.staggered = { parallel, delay };
        return;
      }
      case 'accel': {
        const v = this.text(s.value);
        if (!ACCELS.includes(v)) this.fail(s.value, `invalid accel: ${v}`, la);
        this.accel = v as Accel;
        return;
      }
      case 'qemu':
        this.qemu = resolve(this.options.cwd, this.concat(s.path));
        return;
      case 'switch':
        this.switchStatement(s);
        return;
      case 'vm':
        this.vmStatement(s);
        return;
    }
  }

  private switchStatement(s: SwitchNode): void {
    this.switchBegin(s.name, s.headEnd);
    for (const o of s.opts) this.switchOption(o);
    this.switchEnd(s.close);
  }

  private vmStatement(s: VmNode): void {
    this.vmBegin(s.name, s.instance, s.headEnd);
    for (const o of s.opts) this.vmOption(o);
    this.vmEnd(s.close);
  }

  /** A block with a syntax error at `errPos`: run the actions yacc ran before it detected the error. */
  partial(p: PartialBlock, errPos: number): void {
    if (errPos < p.headEnd) return;
    if (p.kind === 'vm') this.vmBegin(p.name, p.instance ?? null, p.headEnd);
    else this.switchBegin(p.name, p.headEnd);
    if (p.body === null) return;
    const opts = p.body.items.filter((x): x is SwitchOpt | VmOpt => typeof x !== 'number');
    for (let k = 0; k < opts.length; k++) {
      const o = opts[k]!;
      if (o.end > errPos) return;
      const next = this.stream.codes[o.end];
      const complete = o.end === errPos || next === CODE_NL || next === '}' || opts[k + 1]?.start === o.end;
      if (!complete) return;
      if (p.kind === 'vm') this.vmOption(o as VmOpt);
      else this.switchOption(o as SwitchOpt);
    }
    if (p.body.close !== null && p.body.close < errPos) {
      if (p.kind === 'vm') this.vmEnd(p.body.close);
      else this.switchEnd(p.body.close);
    }
  }

  // --- switch

  private switchBegin(name: Toks, headEnd: number): void {
    const n = this.concat(name);
    if (n.length >= NAME_MAX) this.fail(headEnd, `switch name too long: ${n}`, headEnd);
    this.sw = {
      name: n, id: this.switches.filter((x) => x.enabled).length + 1, interface: null, enabled: true, up: true,
      group: null, locked: false, rdomain: null, address: null, dhcp: false, nat: false, vxlan: null,
      location: this.location(name[0]! - 1),
    };
  }

  private switchOption(o: SwitchOpt): void {
    const sw = this.sw!;
    const la = o.end;
    switch (o.kind) {
      case 'enable': sw.enabled = true; return;
      case 'disable': sw.enabled = false; return;
      case 'up': sw.up = true; return;
      case 'down': sw.up = false; return;
      case 'locked': sw.locked = true; return;
      case 'dhcp': sw.dhcp = true; return;
      case 'nat': sw.nat = true; return;
      case 'group': {
        const g = this.concat(o.value);
        if (!validGroup(g)) this.fail(la, `invalid group name: ${g}`, la);
        sw.group = g === '' ? null : g;
        return;
      }
      case 'interface': {
        const name = this.concat(o.value);
        if (name === '' || name === '.' || name === '..' || /[/:\s]/.test(name)) this.fail(la, `invalid switch interface: ${name}`, la);
        if (!isLinuxIfName(name)) this.fail(la, `switch interface too long: ${name}`, la);
        sw.interface = name;
        return;
      }
      case 'rdomain':
        sw.rdomain = this.rdomain(o.value, la);
        return;
      case 'address': {
        const v = this.text(o.value);
        const m = /^([0-9.]+)\/([0-9]+)$/.exec(v);
        const len = m === null ? null : strtonum(m[2]!, 1, 32);
        if (m === null || typeof len !== 'number' || !/^\d+\.\d+\.\d+\.\d+$/.test(m[1]!) || parseIPv4Net(m[1]!) === null) {
          this.fail(o.value, `invalid address: ${v}`, la);
        }
        if (sw.address !== null) this.fail(o.value, 'address specified more than once', la);
        sw.address = `${formatIPv4(parseIPv4Net(m[1]!)!)}/${len}`;
        return;
      }
      case 'vxlan': {
        if (sw.vxlan !== null) this.fail(o.start, 'vxlan specified more than once', la);
        const idText = this.text(o.id);
        const id = strtonum(idText, 0, 16777215);
        if (typeof id !== 'number') this.fail(o.id, `invalid vxlan id: ${idText}`, la);
        const remote = this.hostAddress(o.remote, la);
        const local = o.local === null ? null : this.hostAddress(o.local, la);
        let dev: string | null = null;
        if (o.dev !== null) {
          dev = this.text(o.dev);
          if (!isLinuxIfName(dev)) this.fail(o.dev, `invalid vxlan device: ${dev}`, la);
        }
        const port = o.port === null ? VXLAN_DEFAULT_PORT : this.port(o.port, la);
        sw.vxlan = { id, remote, local, dev, port };
        return;
      }
    }
  }

  private switchEnd(close: number): void {
    const sw = this.sw!;
    this.sw = null;
    if (sw.interface === null) this.fail(close, `switch "${sw.name}" is missing interface name`, close + 1);
    this.switches.push({ ...sw, interface: sw.interface });
    if (sw.enabled) this.debug(close, `switch "${sw.name}" registered`);
    else this.debug(close, `switch "${sw.name}" skipped (disabled)`);
  }

  // --- vm

  private vmBegin(nameToks: Toks, instance: Toks | null, headEnd: number): void {
    let name = this.concat(nameToks);
    let instanceOf: string | null = null;
    if (instance !== null) {
      if (name.length >= NAME_MAX) this.fail(headEnd, `vm ${name} name too long`, headEnd);
      instanceOf = name;
      name = this.concat(instance);
    }
    if (name.length >= NAME_MAX) this.fail(headEnd, 'vm name too long', headEnd);
    this.vm = {
      name, instanceOf, enabled: true, memory: null, cpus: null, boot: null, initrd: null, cmdline: null,
      bootDevice: null, cdrom: null, disks: [], nics: [], nic: null, nifs: null, owner: null, allow: null,
      sev: false, seves: false, accel: null, location: this.location(nameToks[0]! - 1),
    };
  }

  private vmOption(o: VmOpt): void {
    const vm = this.vm!;
    const la = o.end;
    switch (o.kind) {
      case 'enable': vm.enabled = true; return;
      case 'disable': vm.enabled = false; return;
      case 'sev': vm.sev = true; return;
      case 'seves': vm.sev = true; vm.seves = true; return;
      case 'disk': {
        const path = this.concat(o.path);
        let format: 'raw' | 'qcow2' | null = null;
        if (o.format !== null) {
          const f = this.concat(o.format);
          if (f.toLowerCase() === 'raw') format = 'raw';
          else if (f.toLowerCase() === 'qcow2') format = 'qcow2';
          else this.fail(la, `unrecognized disk format ${f}`, la);
        }
        const disk = this.parseDisk(path, format);
        if (disk === null) this.fail(la, `failed to parse disks: ${path}`, la);
        vm.disks.push(disk);
        return;
      }
      case 'interface':
        this.vmInterface(o);
        return;
      case 'bootDevice': vm.bootDevice = o.value; return;
      case 'boot': {
        if (vm.boot !== null) this.fail(la, 'kernel specified more than once', la);
        const p = this.realpath(this.concat(o.path));
        if (p.error !== null) this.fail(la, `kernel path not found: ${p.error}`, la);
        vm.boot = p.path;
        return;
      }
      case 'cdrom': {
        if (vm.cdrom !== null) this.fail(la, 'cdrom specified more than once', la);
        const path = this.concat(o.path);
        if (Buffer.byteLength(path) >= PATH_MAX) this.fail(la, 'cdrom name too long', la);
        vm.cdrom = resolve(this.options.cwd, path);
        return;
      }
      case 'interfaces': {
        if (vm.nifs !== null && vm.nifs !== 0) this.fail(o.value, 'interfaces specified more than once', la);
        const v = BigInt(this.text(o.value));
        if (v < 0n || v > BigInt(MAX_NICS)) this.fail(o.value, `too many interfaces: ${v}`, la);
        vm.nifs = Number(v);
        return;
      }
      case 'memory': {
        const raw = this.text(o.value);
        if (vm.memory !== null) {
          this.fail(o.value, o.number ? 'memory specified more than once' : 'argument specified more than once', la);
        }
        const size = this.parseSize(raw, o.number);
        if (size === null) this.fail(o.value, `failed to parse size: ${o.number ? BigInt(raw).toString() : raw}`, la);
        vm.memory = size;
        return;
      }
      case 'owner':
        vm.owner = this.owner(o.owner, la);
        return;
      case 'allow': {
        const allow = vm.allow ?? { flags: new Set<InstanceFlag>(), owner: null };
        for (const f of o.flags) {
          if (f.flag === 'owner') allow.owner = this.owner(f.owner!, la);
          else allow.flags.add(f.flag);
        }
        vm.allow = allow;
        return;
      }
      case 'cpus': {
        if (vm.cpus !== null) this.fail(o.value, 'cpus specified more than once', la);
        const v = this.text(o.value);
        const n = strtonum(v, 1, MAX_CPUS);
        if (typeof n !== 'number') this.fail(o.value, `invalid number of cpus: ${v}`, la);
        vm.cpus = n;
        return;
      }
      case 'accel': {
        if (vm.accel !== null) this.fail(o.value, 'accel specified more than once', la);
        const v = this.text(o.value);
        if (!ACCELS.includes(v)) this.fail(o.value, `invalid accel: ${v}`, la);
        vm.accel = v as Accel;
        return;
      }
      case 'initrd': {
        if (vm.initrd !== null) this.fail(la, 'initrd specified more than once', la);
        const p = this.realpath(this.concat(o.path));
        if (p.error !== null) this.fail(la, `initrd path not found: ${p.error}`, la);
        vm.initrd = p.path;
        return;
      }
      case 'cmdline':
        if (vm.cmdline !== null) this.fail(la, 'cmdline specified more than once', la);
        vm.cmdline = this.concat(o.value);
        return;
    }
  }

  private vmInterface(o: VmOpt & { kind: 'interface' }): void {
    const vm = this.vm!;
    const la = o.end;
    const nic: IfaceDraft = {
      name: null, local: o.local, switch: null, group: null, lladdr: null, locked: false, rdomain: null, up: true,
      forwards: [], rules: [], location: this.location(o.start),
    };
    vm.nic = nic;
    for (const io of o.opts) this.ifaceOption(nic, io);
    vm.nic = null;
    const count = vm.nics.length + 1;
    if (count > MAX_NICS) this.fail(la, `too many interfaces: ${count}`, la);
    if (o.name !== null) {
      const name = this.text(o.name);
      const m = /^tap([0-9]+)?$/.exec(name);
      if (m === null || (m[1] !== undefined && (name.length - 1 >= IF_NAMESIZE - 1 || Number(m[1]) > 0xffffffff))) {
        this.fail(la, `invalid interface: ${name}`, la);
      }
      if (name.length >= IF_NAMESIZE) this.fail(la, `interface name too long: ${name}`, la);
      nic.name = name;
    }
    vm.nics.push(nic);
  }

  private ifaceOption(nic: IfaceDraft, o: IfaceOpt): void {
    const la = o.end;
    switch (o.kind) {
      case 'switch': {
        const v = this.concat(o.value);
        if (v.length >= NAME_MAX) this.fail(la, `switch name too long: ${v}`, la);
        nic.switch = v;
        return;
      }
      case 'group': {
        const g = this.concat(o.value);
        if (!validGroup(g)) this.fail(la, `invalid group name: ${g}`, la);
        nic.group = g === '' ? null : g;
        return;
      }
      case 'lladdr': {
        if (o.locked) nic.locked = true;
        if (o.mac !== null) {
          const v = this.text(o.mac);
          const mac = etherAton(v);
          // parse.y's format string ends in a newline, so the message carries an extra one.
          if (mac === null) this.fail(o.mac, `invalid address: ${v}\n`, la);
          nic.lladdr = mac;
        }
        return;
      }
      case 'allow': {
        const what = this.text(o.value);
        if (what !== 'dhcp' && what !== 'router') this.fail(o.value, `invalid allow: ${what}: want dhcp or router`, la);
        nic.allow = [...new Set([...(nic.allow ?? []), what as InterfaceAllow])].sort();
        return;
      }
      case 'rdomain':
        nic.rdomain = this.rdomain(o.value, la);
        return;
      case 'up': nic.up = true; return;
      case 'down': nic.up = false; return;
      case 'forward': {
        const proto = this.text(o.proto);
        if (proto !== 'tcp' && proto !== 'udp') {
          this.fail(o.proto, PROTOS.includes(proto) ? `forward needs proto tcp or udp: ${proto}` : `unknown protocol ${proto}`, la);
        }
        const hostPort = this.port(o.port, la);
        const guestPort = o.to === null ? hostPort : this.port(o.to, la);
        nic.forwards.push({ proto, hostPort, guestPort, location: this.location(o.start) });
        return;
      }
      case 'rule':
        nic.rules.push(this.rule(o, la));
        return;
    }
  }

  private rule(o: IfaceOpt & { kind: 'rule' }, la: number): FilterRule {
    const protos: RuleProto[] = [];
    for (const t of o.protos ?? []) {
      const p = this.text(t);
      if (!PROTOS.includes(p)) this.fail(t, `unknown protocol ${p}`, la);
      if (!protos.includes(p as RuleProto)) protos.push(p as RuleProto);
    }
    const from = this.endpoint(o.from, o.fromPorts, la);
    const to = this.endpoint(o.to?.addrs ?? null, o.to?.ports ?? null, la);
    if ((from.ports.length > 0 || to.ports.length > 0) && (protos.length === 0 || protos.some((p) => p !== 'tcp' && p !== 'udp'))) {
      this.fail(o.start, 'port without proto tcp/udp', la);
    }
    return {
      action: o.action, direction: o.direction, quick: o.quick, protos, from, to,
      text: this.ruleText(o.start, o.end), location: this.location(o.start),
    };
  }

  private endpoint(addrs: Toks | null, ports: Toks | null, la: number): RuleEndpoint {
    const addresses: string[] = [];
    let any = false;
    for (const t of addrs ?? []) {
      const v = this.text(t);
      if (v === 'any') {
        any = true;
        continue;
      }
      const cidr = parseCidr(v);
      if (cidr === null) this.fail(t, `invalid address: ${v}`, la);
      if (!addresses.includes(cidr)) addresses.push(cidr);
    }
    const portRanges: PortRange[] = [];
    for (const t of ports ?? []) {
      const v = this.text(t);
      const m = /^([0-9]+):([0-9]+)$/.exec(v);
      const from = strtonum(m === null ? v : m[1]!, 1, 65535);
      const to = m === null ? from : strtonum(m[2]!, 1, 65535);
      if (typeof from !== 'number' || typeof to !== 'number' || from > to) this.fail(t, `invalid port: ${v}`, la);
      portRanges.push({ from, to });
    }
    return { addresses: any ? [] : addresses, ports: portRanges };
  }

  /** The rule as written after macro expansion: tokens joined by spaces, quoted strings re-quoted. */
  private ruleText(start: number, end: number): string {
    let s = '';
    for (let i = start; i < end; i++) {
      if (this.stream.codes[i] === CODE_NL) continue;
      const text = this.stream.texts[i]!;
      const word = this.stream.quoted[i] ? JSON.stringify(text) : text;
      s += s === '' || word === ',' ? word : ` ${word}`;
    }
    return s;
  }

  private vmEnd(close: number): void {
    const vm = this.vm!;
    this.vm = null;
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
    this.vms.push({
      name: vm.name, instanceOf: vm.instanceOf, enabled: vm.enabled, memory: vm.memory, cpus: vm.cpus,
      boot: vm.boot, initrd: vm.initrd, cmdline: vm.cmdline, bootDevice: vm.bootDevice, cdrom: vm.cdrom,
      disks: vm.disks, interfaces: nics, owner: vm.owner, allowInstance: allow, sev: vm.sev, seves: vm.seves,
      accel: vm.accel, location: vm.location,
    });
    this.debug(close, `vm "${vm.name}" registered (${vm.enabled ? 'enabled' : 'disabled'})`);
  }

  // --- helpers of the actions

  private rdomain(t: Tok, la: number): number {
    const v = BigInt(this.text(t));
    if (v < 0n || v > BigInt(RT_TABLEID_MAX)) this.fail(t, `invalid rdomain: ${v}`, la);
    return Number(v);
  }

  private port(t: Tok, la: number): number {
    const v = this.text(t);
    const n = strtonum(v, 1, 65535);
    if (typeof n !== 'number' || !/^[0-9]+$/.test(v)) this.fail(t, `invalid port: ${v}`, la);
    return n;
  }

  private hostAddress(t: Tok, la: number): string {
    const v = this.text(t);
    const a = parseHostAddress(v);
    if (a === null) this.fail(t, `invalid address: ${v}`, la);
    return a;
  }

  /** parse.y owner_id: a uid, `user`, `user:group` or `:group`, looked up now. */
  private owner(node: OwnerNode, la: number): Owner {
    const text = this.text(node.tok);
    if (node.number) {
      const uid = BigInt(text);
      if (uid < 0n || uid > 0xfffffffen) this.fail(node.tok, `failed to get user: ${text}`, la);
      return { uid: Number(uid), gid: null, user: text, group: null };
    }
    const colon = text.indexOf(':');
    const user = colon < 0 ? text : text.slice(0, colon);
    const group = colon < 0 ? '' : text.slice(colon + 1);
    let uid = 0;
    let gid: number | null = null;
    if (user !== '') {
      const pw = this.options.users.getpwnam(user);
      if (pw === null) this.fail(node.tok, `failed to get user: ${user}`, la);
      uid = pw.uid;
    }
    if (group !== '') {
      const gr = this.options.users.getgrnam(group);
      if (gr === null) this.fail(node.tok, `failed to get group: ${group}`, la);
      gid = gr.gid;
    }
    return { uid, gid, user: user === '' ? null : user, group: group === '' ? null : group };
  }

  /** realpath(3) against the working directory, with OpenBSD's PATH_MAX; one answer per path and parse. */
  private realpath(path: string): { path: string; error: null } | { path: null; error: string } {
    if (Buffer.byteLength(path) >= PATH_MAX) return { path: null, error: strerror('ENAMETOOLONG') };
    const full = resolve(this.options.cwd, path);
    let r = this.realpaths.get(full);
    if (r === undefined) {
      try {
        r = { path: realpathSync.native(full), error: null };
      } catch (err) {
        r = { path: null, error: strerror((err as NodeJS.ErrnoException).code) };
      }
      this.realpaths.set(full, r);
    }
    return r;
  }

  /** parse.y parse_disk(): count, realpath, then the format from the qcow2 magic unless given. */
  private parseDisk(word: string, format: 'raw' | 'qcow2' | null): DiskConfig | null {
    const vm = this.vm!;
    if (vm.disks.length >= MAX_DISKS) {
      this.warnx('too many disks');
      return null;
    }
    const p = this.realpath(word);
    if (p.error !== null) {
      this.warnx(`disk ${word}: ${p.error}`);
      return null;
    }
    if (Buffer.byteLength(p.path) >= PATH_MAX) {
      this.warnx('disk path too long');
      return null;
    }
    return { path: p.path, format: format ?? (hasQcow2Magic(p.path) ? 'qcow2' : 'raw') };
  }

  /** parse.y parse_size(): scan_scaled for strings, 1M..128G, rounded down to whole MiB. */
  private parseSize(text: string, isNumber: boolean): number | null {
    let val: bigint;
    if (isNumber) val = BigInt(text);
    else {
      try {
        val = scanScaledBig(text);
      } catch (err) {
        if (!(err instanceof ScaledError)) throw err;
        this.warnx(`invalid memory size: ${text}: ${strerror(err.code)}`);
        return null;
      }
    }
    if (val < BigInt(MIN_MEMORY)) {
      this.warnx('memory size must be at least 1MB');
      return null;
    }
    if (val > BigInt(MAX_MEMORY)) {
      this.warnx(`memory size too large (limit is ${fmtScaled(MAX_MEMORY)})`);
      return null;
    }
    const size = Number((val / 1048576n) * 1048576n);
    if (BigInt(size) !== val) this.debug(null, `memory size rounded to ${fmtScaled(size)}`);
    return size;
  }

  /** The model; meaningful only when no error was reported. */
  config(): Config {
    return {
      global: {
        localPrefix: this.localPrefix, localInet6: this.localInet6, localInet6Prefix: this.localInet6Prefix,
        socketOwner: this.socketOwner, staggered: this.staggered, agentx: this.agentx, accel: this.accel,
        qemu: this.qemu,
      },
      switches: this.switches,
      vms: this.vms,
      files: this.stream.files,
    };
  }
}

/** priv_validgroup(): shorter than IF_NAMESIZE and not ending in a digit. */
function validGroup(name: string): boolean {
  return Buffer.byteLength(name) < IF_NAMESIZE && !/[0-9]$/.test(name);
}

/** parse_prefix4(): `ADDR[/LEN]`, LEN 1–16 (default 16), no host bits. */
export function parsePrefix4(text: string): Prefix4 | string {
  const slash = text.lastIndexOf('/');
  const addrText = slash < 0 ? text : text.slice(0, slash);
  let length = 16;
  if (slash >= 0) {
    const l = strtonum(text.slice(slash + 1), 1, 16);
    if (typeof l !== 'number') return l;
    length = l;
  }
  const addr = parseIPv4Net(addrText);
  if (addr === null) return 'invalid format';
  if ((addr & ~(~0 << (32 - length))) !== 0) return 'bad mask';
  return { address: formatIPv4(addr), length };
}

/** parse_prefix6(): numeric `ADDR[/LEN]`, LEN 0–64 (default 64), no host bits. */
export function parsePrefix6(text: string): Prefix6 | string {
  const slash = text.lastIndexOf('/');
  const addrText = slash < 0 ? text : text.slice(0, slash);
  let length = 64;
  if (slash >= 0) {
    const l = strtonum(text.slice(slash + 1), 0, 64);
    if (typeof l !== 'number') return l;
    length = l;
  }
  const groups = parseIPv6(addrText);
  // getaddrinfo(AI_NUMERICHOST) fails with EAI_NONAME on anything but a numeric address.
  if (groups === null) return 'Name or service not known';
  const masked = maskIPv6(groups, length);
  if (masked.some((g, i) => g !== groups[i])) return 'bad mask';
  return { address: formatIPv6(groups), length };
}
