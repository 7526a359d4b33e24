// ip(8) for vmd's networking: name checks, running ip with argument arrays (batched through `ip -batch -`),
// reading its JSON, and the ownership alias that marks the switch links vmd made.

import { execa } from 'execa';
import { VmdError } from '../../share/errors.js';
import { ifNameError, netnsNameError } from '../../share/names.js';

// ---- names and ownership ----

/**
 * The ifalias prefix that marks a switch link vmd created (a bridge or a VXLAN port), which vmd may delete. It lives on
 * the link itself, so it survives a vmd crash: reconciliation and bridgeRemove() read it back instead of trusting
 * memory. Adopted bridges never get it (vmd does not change their alias), so bridgeRemove() cannot delete one by mistake.
 */
export const OWNED_BRIDGE_ALIAS_PREFIX = 'vmd:';

/** Tokens that can go into an `ip -batch` line unquoted (batch lines are split on blanks, `"` and `\` are special). */
const BATCH_SAFE = /^[A-Za-z0-9_.:/@+,=-]+$/;

/** Why a name is refused before ip(8) sees it: an interface name of at most 15 characters, no blanks or slashes. */
export function checkLinkName(name: string, what = 'link'): void {
  if (ifNameError(name) !== null) {
    throw new VmdError('ERR_INVALID', `${what} ${JSON.stringify(name)}: invalid interface name`, {
      hint: 'use 1 to 15 letters, digits, ".", "-" or "_", not starting with "." or "-"',
    });
  }
}

/** Why a namespace name is refused before ip(8) sees it. */
export function checkNetnsName(name: string): void {
  if (netnsNameError(name) !== null) {
    throw new VmdError('ERR_INVALID', `netns ${JSON.stringify(name)}: invalid namespace name`, {
      hint: 'use 1 to 63 letters, digits, ".", "-" or "_", not starting with "." or "-"',
    });
  }
}

// ---- running ip(8) ----

/** `what` of an error message: `link tap0`, or `link tap0 in netns r5` for a link inside a namespace. */
export function where(what: string, netns: string | null): string {
  return netns === null ? what : `${what} in netns ${netns}`;
}

/** ip's stderr as the `why` part: the first real line, prefixes dropped, lowercase first letter, no final period. */
export function ipMessage(stderr: string): string {
  const line = stderr
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l.length > 0 && !/^Command failed /.test(l)) ?? 'failed';
  const text = line.replace(/^RTNETLINK answers: /, '').replace(/^Error: /, '').replace(/\.$/, '');
  return text.charAt(0).toLowerCase() + text.slice(1);
}

export interface IpResult {
  readonly ok: boolean;
  readonly stdout: string;
  readonly stderr: string;
}

/** One ip(8) run; never throws for ip's own failures (the caller words them), only when ip cannot be run at all. */
export async function ipRaw(args: readonly string[], input?: string): Promise<IpResult> {
  const r = await execa('ip', args, {
    reject: false,
    stripFinalNewline: false,
    timeout: 30_000,
    env: { LC_ALL: 'C' },
    extendEnv: true,
    ...(input === undefined ? { stdin: 'ignore' as const } : { input }),
  });
  if (r.failed && r.exitCode === undefined) {
    const missing = (r.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
    throw new VmdError('ERR_INTERNAL', missing ? 'ip: command not found' : `ip: ${r.shortMessage}`, {
      ...(missing ? { hint: 'install iproute2' } : {}),
      cause: r.cause,
    });
  }
  return { ok: r.exitCode === 0, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** `-n NS` in front of the command when the object lives in a namespace. */
export function nsArgs(netns: string | null): string[] {
  return netns === null ? [] : ['-n', netns];
}

/** Runs ip(8) commands in a namespace, batched into one process when they can be; throws VmdError(`what: why`). */
export async function ip(netns: string | null, what: string, commands: readonly (readonly string[])[]): Promise<string> {
  if (commands.length === 0) return '';
  const batchable = commands.length > 1 && commands.every((c) => c.every((w) => BATCH_SAFE.test(w)));
  if (batchable) {
    const r = await ipRaw([...nsArgs(netns), '-batch', '-'], `${commands.map((c) => c.join(' ')).join('\n')}\n`);
    if (!r.ok) throw new VmdError('ERR_INTERNAL', `${where(what, netns)}: ${ipMessage(r.stderr)}`);
    return r.stdout;
  }
  let out = '';
  for (const c of commands) {
    const r = await ipRaw([...nsArgs(netns), ...c]);
    if (!r.ok) throw new VmdError('ERR_INTERNAL', `${where(what, netns)}: ${ipMessage(r.stderr)}`);
    out += r.stdout;
  }
  return out;
}

/** The subset of `ip -j -s -d link show` that vmd reads. */
export interface IpLink {
  readonly ifname: string;
  readonly address?: string;
  readonly ifalias?: string;
  readonly master?: string;
  readonly operstate?: string;
  readonly mtu?: number;
  readonly flags?: readonly string[];
  readonly link_type?: string;
  readonly linkinfo?: { readonly info_kind?: string; readonly info_data?: Record<string, unknown> };
  readonly stats64?: IpStats;
  readonly stats?: IpStats;
}

export interface IpStats {
  readonly rx?: { readonly packets?: number; readonly bytes?: number; readonly dropped?: number };
  readonly tx?: { readonly packets?: number; readonly bytes?: number; readonly dropped?: number };
}

export function parseLinks(stdout: string, what: string): IpLink[] {
  try {
    const v: unknown = JSON.parse(stdout.trim() === '' ? '[]' : stdout);
    if (!Array.isArray(v)) throw new Error('not a list');
    return v.filter((l): l is IpLink => typeof l === 'object' && l !== null && typeof (l as IpLink).ifname === 'string');
  } catch (err) {
    throw new VmdError('ERR_INTERNAL', `${what}: cannot read ip's JSON output: ${(err as Error).message}`, { cause: err });
  }
}

/** One link's details, or undefined when there is no such link (a missing namespace is an error). */
export async function showLink(name: string, netns: string | null, what: string): Promise<IpLink | undefined> {
  const r = await ipRaw([...nsArgs(netns), '-j', '-d', 'link', 'show', 'dev', name]);
  if (!r.ok) {
    if (/does not exist|Cannot find device/.test(r.stderr)) return undefined;
    throw new VmdError('ERR_INTERNAL', `${where(what, netns)}: ${ipMessage(r.stderr)}`);
  }
  return parseLinks(r.stdout, where(what, netns))[0];
}

/** Every link of a namespace, with statistics and details. */
export async function showLinks(netns: string | null, what: string): Promise<IpLink[]> {
  const r = await ipRaw([...nsArgs(netns), '-j', '-s', '-d', 'link', 'show']);
  if (!r.ok) throw new VmdError('ERR_INTERNAL', `${what}: ${ipMessage(r.stderr)}`);
  return parseLinks(r.stdout, what);
}

/** ip(8) words for the global addresses of a link becoming exactly `addresses` (inet6 without DAD, usable at once). */
export function exactAddresses(name: string, addresses: readonly string[]): string[][] {
  return [
    ['address', 'flush', 'dev', name, 'scope', 'global'],
    ...addresses.map((a) => ['address', 'add', a, 'dev', name, ...(a.includes(':') ? ['nodad'] : [])]),
  ];
}

/** A CIDR or a list of them as a list. */
export function addressList(address: string | readonly string[] | null): readonly string[] {
  if (address === null) return [];
  return typeof address === 'string' ? [address] : address;
}

export function checkCidr(a: string, what: string): void {
  if (!/^[0-9A-Fa-f.:]+\/\d{1,3}$/.test(a)) throw new VmdError('ERR_INVALID', `${what}: invalid address ${JSON.stringify(a)}: want address/prefix`);
}

export function checkMac(mac: string, what: string): void {
  if (!/^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/i.test(mac)) throw new VmdError('ERR_INVALID', `${what}: invalid lladdr ${JSON.stringify(mac)}`);
  if ((parseInt(mac.slice(0, 2), 16) & 1) === 1) throw new VmdError('ERR_INVALID', `${what}: lladdr ${mac} is a multicast address`);
}

export function checkMtu(mtu: number | undefined, what: string): void {
  if (mtu !== undefined && (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535)) throw new VmdError('ERR_INVALID', `${what}: invalid mtu ${mtu}`);
}

export function isOwnedAlias(alias: string | undefined): boolean {
  return alias !== undefined && alias.startsWith(OWNED_BRIDGE_ALIAS_PREFIX);
}

/** A bridge or VXLAN port that carries vmd's ownership alias. */
export function isOwnedLink(l: IpLink): boolean {
  const kind = l.linkinfo?.info_kind;
  return (kind === 'bridge' || kind === 'vxlan') && isOwnedAlias(l.ifalias);
}
