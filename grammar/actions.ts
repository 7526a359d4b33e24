// The semantic actions of vm.conf: what parse.y's rule actions do, in the same order, building the model.
// They print OpenBSD's diagnostics at OpenBSD's lines; a failing action throws YyError like yacc's YYERROR.
// Global statements live here; switch, vm and interface blocks have a module each.

import { isIP } from 'node:net';
import { resolve } from 'node:path';
import type { Accel, Config, MetricsListen, Owner, Prefix4, Prefix6, StaggeredStart, SwitchConfig, VmConfig } from '../share/config.js';
import { DEFAULT_LOCAL_PREFIX } from '../share/config.js';
import { ACCELS, ActionBase } from './action-base.js';
import type { PartialBlock, Statement, SwitchOpt, VmOpt } from './ast.js';
import { type SwitchDraft, switchBegin, switchEnd, switchOption } from './switch-actions.js';
import { CODE_NL } from './tokens.js';
import { parsePrefix4, parsePrefix6 } from './values.js';
import { type VmDraft, vmBegin, vmEnd, vmOption } from './vm-actions.js';

/** Runs the actions statement by statement and accumulates the model and the diagnostics. */
export class Builder extends ActionBase {
  private readonly switches: SwitchConfig[] = [];
  private readonly vms: VmConfig[] = [];
  private localPrefix: Prefix4 = DEFAULT_LOCAL_PREFIX;
  private localInet6 = false;
  private localInet6Prefix: Prefix6 | null = null;
  private socketOwner: Owner | null = null;
  private staggered: StaggeredStart | null = null;
  private accel: Accel = 'auto';
  private qemu: string | null = null;
  private metrics: MetricsListen | null = null;
  private vm: VmDraft | null = null;
  private sw: SwitchDraft | null = null;

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
      case 'agentx':
        // OpenBSD's AgentX subagent (VM-MIB) is not implemented: refused by name rather than ignored.
        this.fail(s.start, 'agentx is not supported: use metrics for Prometheus instead', la);
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
      case 'metrics':
        this.metrics = metricsOf(this, s, la);
        return;
      case 'qemu':
        this.qemu = resolve(this.options.cwd, this.concat(s.path));
        return;
      case 'switch':
        this.switchBegin(s.name, s.headEnd);
        for (const o of s.opts) switchOption(this, this.sw!, o);
        this.switchEnd(s.close);
        return;
      case 'vm':
        this.vm = vmBegin(this, s.name, s.instance, s.headEnd);
        for (const o of s.opts) vmOption(this, this.vm, o);
        this.vmEnd(s.close);
        return;
    }
  }

  /** A block with a syntax error at `errPos`: run the actions yacc ran before it detected the error. */
  partial(p: PartialBlock, errPos: number): void {
    if (errPos < p.headEnd) return;
    if (p.kind === 'vm') this.vm = vmBegin(this, p.name, p.instance ?? null, p.headEnd);
    else this.switchBegin(p.name, p.headEnd);
    if (p.body === null) return;
    const opts = p.body.items.filter((x): x is SwitchOpt | VmOpt => typeof x !== 'number');
    for (let k = 0; k < opts.length; k++) {
      const o = opts[k]!;
      if (o.end > errPos) return;
      const next = this.stream.codes[o.end];
      const complete = o.end === errPos || next === CODE_NL || next === '}' || opts[k + 1]?.start === o.end;
      if (!complete) return;
      if (p.kind === 'vm') vmOption(this, this.vm!, o as VmOpt);
      else switchOption(this, this.sw!, o as SwitchOpt);
    }
    if (p.body.close !== null && p.body.close < errPos) {
      if (p.kind === 'vm') this.vmEnd(p.body.close);
      else this.switchEnd(p.body.close);
    }
  }

  private switchBegin(name: readonly number[], headEnd: number): void {
    this.sw = switchBegin(this, name, headEnd, this.switches.filter((x) => x.enabled).length + 1);
  }

  private switchEnd(close: number): void {
    const sw = this.sw!;
    this.sw = null;
    this.switches.push(switchEnd(this, sw, close));
  }

  private vmEnd(close: number): void {
    const vm = this.vm!;
    this.vm = null;
    this.vms.push(vmEnd(this, vm, close));
  }

  /** The model; meaningful only when no error was reported. */
  config(): Config {
    return {
      global: {
        localPrefix: this.localPrefix, localInet6: this.localInet6, localInet6Prefix: this.localInet6Prefix,
        socketOwner: this.socketOwner, staggered: this.staggered, accel: this.accel,
        qemu: this.qemu, metrics: this.metrics,
      },
      switches: this.switches,
      vms: this.vms,
      files: this.stream.files,
    };
  }
}

/** `metrics [address ADDR] port N`: an IP address (a name would be resolved at each reload) and a TCP port. */
function metricsOf(b: ActionBase, s: Statement & { kind: 'metrics' }, la: number): MetricsListen {
  const address = s.address === null ? '127.0.0.1' : b.text(s.address);
  if (isIP(address) === 0) b.fail(s.address!, `invalid metrics address: ${address}`, la);
  const port = Number(b.text(s.port));
  if (!Number.isInteger(port) || port < 1 || port > 65535) b.fail(s.port, `invalid metrics port: ${port}`, la);
  return { address, port };
}
