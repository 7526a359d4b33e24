// The syntax tree the structural grammar (grammar/vm.conf.peggy) returns: statements and options whose
// fields are token indexes, so every node knows its file and line through the token stream.

/** A token index (`tok`) or a run of adjacent STRING tokens (`toks`, concatenated by `string`). */
export type Tok = number;
export type Toks = readonly number[];

/** Start (first token) and end (one past the last token) of a node. */
export interface Span {
  readonly start: number;
  readonly end: number;
}

export interface OwnerNode {
  readonly number: boolean;
  readonly tok: Tok;
}

export type SwitchOpt = Span & (
  | { kind: 'enable' | 'disable' | 'locked' | 'up' | 'down' | 'dhcp' | 'nat' }
  | { kind: 'group' | 'interface'; value: Toks }
  | { kind: 'rdomain' | 'address'; value: Tok }
  | { kind: 'vxlan'; id: Tok; remotes: Toks; group: Tok | null; local: Tok | null; dev: Tok | null; port: Tok | null }
);

export interface RuleTo {
  readonly addrs: Toks | null;
  readonly ports: Toks | null;
}

export type IfaceOpt = Span & (
  | { kind: 'switch' | 'group'; value: Toks }
  | { kind: 'lladdr'; locked: boolean; mac: Tok | null }
  | { kind: 'rdomain'; value: Tok }
  | { kind: 'up' | 'down' }
  | { kind: 'allow'; value: Tok }
  | { kind: 'forward'; proto: Tok; port: Tok; to: Tok | null }
  | { kind: 'dev' | 'address'; value: Tok }
  | { kind: 'nat' }
  | {
      kind: 'rule'; action: 'pass' | 'block'; direction: 'in' | 'out' | null; quick: boolean;
      protos: Toks | null; from: Toks | null; fromPorts: Toks | null; to: RuleTo | null;
    }
);

export interface InstanceFlagNode {
  readonly flag: 'boot' | 'memory' | 'interface' | 'disk' | 'cdrom' | 'instance' | 'owner';
  readonly owner?: OwnerNode;
  readonly start: number;
}

export type VmOpt = Span & (
  | { kind: 'enable' | 'disable' | 'sev' | 'seves' }
  | { kind: 'disk'; path: Toks; format: Toks | null; bus: Tok | null }
  | { kind: 'interface'; local: boolean; passt?: boolean; name: Tok | null; opts: readonly IfaceOpt[] }
  | { kind: 'bootDevice'; value: 'cdrom' | 'disk' | 'net' }
  | { kind: 'boot' | 'cdrom' | 'initrd'; path: Toks }
  | { kind: 'cmdline'; value: Toks }
  | { kind: 'interfaces' | 'cpus' | 'accel' | 'machine'; value: Tok }
  | { kind: 'display'; value: Tok }
  | { kind: 'memory'; value: Tok; number: boolean }
  | { kind: 'owner'; owner: OwnerNode }
  | { kind: 'allow'; flags: readonly InstanceFlagNode[] }
  | { kind: 'firmware'; value: Tok; flags: Toks }
  | { kind: 'cloudInit'; items: readonly { readonly key: Tok; readonly value: Toks }[] }
);

export interface SwitchNode extends Span {
  readonly kind: 'switch';
  readonly name: Toks;
  /** Index just after the name: where yacc's mid-rule action ran. */
  readonly headEnd: number;
  readonly opts: readonly SwitchOpt[];
  readonly close: Tok;
}

export interface VmNode extends Span {
  readonly kind: 'vm';
  readonly name: Toks;
  readonly instance: Toks | null;
  readonly headEnd: number;
  readonly opts: readonly VmOpt[];
  readonly close: Tok;
}

export type Statement = Span & (
  | { kind: 'empty' }
  | { kind: 'include'; path: Toks }
  | { kind: 'varset'; name: Tok; value: Tok }
  | { kind: 'localInet6'; prefix: Tok | null }
  | { kind: 'localPrefix'; value: Tok }
  | { kind: 'socketOwner'; owner: OwnerNode }
  | { kind: 'agentx'; opts: readonly (Span & { kind: 'context' | 'path'; value: Tok })[] }
  | { kind: 'staggered'; parallel: Tok; delay: Tok }
  | { kind: 'metrics'; address: Tok | null; port: Tok }
  | { kind: 'accel'; value: Tok }
  | { kind: 'qemu'; path: Toks }
) | SwitchNode | VmNode;

/** What the `Partial` rule returns for a block that has a syntax error: the part before it. */
export interface PartialBlock {
  readonly kind: 'switch' | 'vm';
  readonly name: Toks;
  readonly instance?: Toks | null;
  readonly headEnd: number;
  readonly body: { readonly items: readonly (number | SwitchOpt | VmOpt)[]; readonly close: Tok | null } | null;
}
