// dnsmasq's command line for vmd's two uses of it (a switch's bridge, one local interface), built by a pure
// function from a spec: one interface only, DHCP authoritative, no ping, no config files.

import { VmdError } from '../../share/errors.js';
import { formatIPv4, formatIPv6, maskOf, parseIPv4, parseIPv6 } from './addr.js';
import { ifNameError } from '../../share/names.js';

/** DNS on the link: false = off (`--port=0`); otherwise forward to `servers`, or to the resolvers in `resolvFile` (default /etc/resolv.conf). */
export type DnsmasqDns = boolean | { readonly servers?: readonly string[]; readonly resolvFile?: string };

/** What every instance needs: the interface, the host's address on it, and where dnsmasq keeps its files. */
export interface DnsmasqCommon {
  /** For messages only, e.g. `switch-uplink` or the link name. */
  readonly name: string;
  /** The bridge (switch) or tap (local interface); dnsmasq binds to nothing else. */
  readonly interface: string;
  /** The host's address on the interface, CIDR (`10.99.0.1/24`, `100.64.1.2/31`): router and DNS server for the guests. */
  readonly address: string;
  readonly leaseFile: string;
  readonly pidFile: string;
  readonly logFile: string;
  /** Default true: DNS forwarding on the host address, advertised to the guests. */
  readonly dns?: DnsmasqDns;
  /** DHCP option 26 (VXLAN switches need 1450). */
  readonly mtu?: number;
  /** dnsmasq drops to this user and group after binding (default nobody / nogroup). */
  readonly user?: string;
  readonly group?: string;
  /** `--log-dhcp`: every option of every packet in the log. */
  readonly verbose?: boolean;
}

/** A fixed address for one MAC on a switch (`--dhcp-host`). */
export interface DhcpReservation {
  readonly mac: string;
  readonly address: string;
  readonly hostname?: string;
}

/** dnsmasq on a switch's bridge: a range from the switch address's subnet, plus reservations. */
export interface DnsmasqSwitchSpec extends DnsmasqCommon {
  readonly kind: 'switch';
  /** Default: .100–.199 for /24 and larger subnets, else the upper half; the host address is always left out. */
  readonly range?: { readonly start: string; readonly end: string };
  readonly hosts?: readonly DhcpReservation[];
  /**
   * `--dhcp-hostsdir`: reservations that change while dnsmasq runs (vmd's fixed leases for guests on the switch),
   * one file each as hostsEntryWrite makes them. New files are read by inotify; records of changed or removed ones
   * stay until SIGHUP (DnsmasqInstance.reload). dnsmasq reads them as nobody.
   */
  readonly hostsDir?: string;
  /** dnsmasq lease time (`1h`, `12h`, `infinite`, seconds); default 1h. */
  readonly leaseTime?: string;
}

/** dnsmasq on one local interface: exactly one guest (`mac`) gets exactly the other half of the /31. */
export interface DnsmasqLocalSpec extends DnsmasqCommon {
  readonly kind: 'local';
  readonly guest: string;
  readonly mac: string;
  readonly hostname?: string;
  /**
   * `local inet6`: the /96 of the link (host ::1 side on the interface already, guest ::2). dnsmasq then sends
   * router advertisements for the /96 (on-link, not autonomous: SLAAC needs a /64) with the managed flag, and
   * DHCPv6 hands the guest exactly its address; guests without a DHCPv6 client take prefix::2 themselves.
   */
  readonly inet6?: { readonly host: string; readonly guest: string };
}

/** Either use of dnsmasq. */
export type DnsmasqSpec = DnsmasqSwitchSpec | DnsmasqLocalSpec;

export const MAC_RE = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/i;

export function invalid(spec: { name: string }, why: string): VmdError {
  return new VmdError('ERR_INVALID', `dhcp ${spec.name}: ${why}`);
}

function parseCidr(spec: DnsmasqSpec): { addr: number; len: number } {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(spec.address);
  const len = m ? Number(m[2]) : NaN;
  if (!m || len > 32) throw invalid(spec, `address ${spec.address} is not IPv4 CIDR`);
  let addr: number;
  try {
    addr = parseIPv4(m[1]!);
  } catch {
    throw invalid(spec, `address ${spec.address} is not IPv4 CIDR`);
  }
  return { addr, len };
}

// The default dynamic range of a subnet: .100–.199 of a /24 or larger, else the upper half.
export function defaultRange(net: number, bcast: number, len: number): [number, number] {
  if (len <= 24) return [net + 100, net + 199];
  return [net + (bcast - net + 1) / 2, bcast - 1];
}

// The default range: .100–.199 of a /24 or larger, the upper half of a smaller subnet; split around the host address.
function switchRanges(spec: DnsmasqSwitchSpec, addr: number, len: number): Array<[number, number]> {
  if (len > 30) throw invalid(spec, `subnet of ${spec.address} is too small for a dhcp range`);
  const mask = maskOf(len);
  const net = (addr & mask) >>> 0;
  const bcast = (net | (~mask >>> 0)) >>> 0;
  const inSubnet = (n: number) => ((n & mask) >>> 0) === net && n !== net && n !== bcast;
  let start: number;
  let end: number;
  if (spec.range !== undefined) {
    try {
      start = parseIPv4(spec.range.start);
      end = parseIPv4(spec.range.end);
    } catch {
      throw invalid(spec, `range ${spec.range.start}-${spec.range.end} is not two IPv4 addresses`);
    }
    if (!inSubnet(start) || !inSubnet(end) || end < start) {
      throw invalid(spec, `range ${spec.range.start}-${spec.range.end} is not inside ${formatIPv4(net)}/${len}`);
    }
  } else {
    [start, end] = defaultRange(net, bcast, len);
  }
  if (addr < start || addr > end) return [[start, end]];
  const out: Array<[number, number]> = [];
  if (addr > start) out.push([start, addr - 1]);
  if (addr < end) out.push([addr + 1, end]);
  if (out.length === 0) throw invalid(spec, `range ${formatIPv4(start)}-${formatIPv4(end)} holds only the host address`);
  return out;
}

/** The whole dnsmasq command line for a spec (pure): one interface only, DHCP authoritative, no ping, no config files. */
export function dnsmasqArgs(spec: DnsmasqSpec): string[] {
  checkInstancePaths(spec);
  const { addr, len } = parseCidr(spec);
  const host = formatIPv4(addr);
  const netmask = formatIPv4(maskOf(len));
  const dns = spec.dns ?? true;
  const args = commonArgs(spec);
  pushDnsArgs(args, dns);
  if (spec.kind === 'switch') pushSwitchArgs(args, spec, addr, len, netmask);
  else pushLocalArgs(args, spec, addr, len, netmask);
  pushDhcpOptions(args, spec, host, dns);
  return args;
}

/** The interface and the files dnsmasq writes: a bad name or a relative path would be taken from its cwd. */
function checkInstancePaths(spec: DnsmasqSpec): void {
  if (ifNameError(spec.interface) !== null) throw invalid(spec, `bad interface name ${JSON.stringify(spec.interface)}`);
  for (const f of [spec.leaseFile, spec.pidFile, spec.logFile]) {
    if (!f.startsWith('/')) throw invalid(spec, `file ${f} is not an absolute path`);
  }
}

/** What every instance runs with: no config, dropped privileges, its own files, bound to its one interface. */
function commonArgs(spec: DnsmasqSpec): string[] {
  return [
    '--keep-in-foreground',
    '--conf-file=/dev/null',
    '--no-hosts',
    `--user=${spec.user ?? 'nobody'}`,
    `--group=${spec.group ?? 'nogroup'}`,
    `--pid-file=${spec.pidFile}`,
    `--log-facility=${spec.logFile}`,
    `--dhcp-leasefile=${spec.leaseFile}`,
    // bind-dynamic, not bind-interfaces: it checks each DNS packet's arrival interface (no "may accept requests via
    // other interfaces" warning) and binds addresses that appear later. DHCP is SO_BINDTODEVICE'd in both modes,
    // but only if the interface exists at start: start() insists on the "bound exclusively" log line.
    `--interface=${spec.interface}`,
    '--except-interface=lo',
    '--bind-dynamic',
  ];
}

/** DNS off, forwarded to given servers, or to a resolv.conf: dnsmasq's default resolv.conf needs no argument. */
function pushDnsArgs(args: string[], dns: DnsmasqDns): void {
  if (dns === false) {
    args.push('--port=0');
  } else if (typeof dns === 'object' && dns.servers !== undefined && dns.servers.length > 0) {
    args.push('--no-resolv', ...dns.servers.map((s) => `--server=${s}`));
  } else if (typeof dns === 'object' && dns.resolvFile !== undefined) {
    args.push(`--resolv-file=${dns.resolvFile}`);
  }
}

/** A switch: dynamic ranges around the host address, plus reservations from the spec and the hosts directory. */
function pushSwitchArgs(args: string[], spec: DnsmasqSwitchSpec, addr: number, len: number, netmask: string): void {
  const lease = spec.leaseTime ?? '1h';
  for (const [s, e] of switchRanges(spec, addr, len)) args.push(`--dhcp-range=${formatIPv4(s)},${formatIPv4(e)},${netmask},${lease}`);
  const mask = maskOf(len);
  if (spec.hostsDir !== undefined) {
    if (!spec.hostsDir.startsWith('/')) throw invalid(spec, `directory ${spec.hostsDir} is not an absolute path`);
    args.push(`--dhcp-hostsdir=${spec.hostsDir}`);
  }
  for (const h of spec.hosts ?? []) {
    if (!MAC_RE.test(h.mac)) throw invalid(spec, `bad MAC ${h.mac}`);
    let a: number;
    try {
      a = parseIPv4(h.address);
    } catch {
      throw invalid(spec, `reservation ${h.address} is not an IPv4 address`);
    }
    if (((a & mask) >>> 0) !== ((addr & mask) >>> 0) || a === addr) throw invalid(spec, `reservation ${h.address} is not a guest address of ${spec.address}`);
    args.push(`--dhcp-host=${h.mac.toLowerCase()},${h.address}${h.hostname ? `,${h.hostname}` : ''}`);
  }
}

/** A local interface: the one guest gets the other half of the /31 (and its IPv6 address) and nothing else does. */
function pushLocalArgs(args: string[], spec: DnsmasqLocalSpec, addr: number, len: number, netmask: string): void {
  if (len !== 31) throw invalid(spec, `local interface address ${spec.address} is not a /31`);
  if (!MAC_RE.test(spec.mac)) throw invalid(spec, `bad MAC ${spec.mac}`);
  let g: number;
  try {
    g = parseIPv4(spec.guest);
  } catch {
    throw invalid(spec, `guest address ${spec.guest} is not IPv4`);
  }
  if ((g ^ addr) !== 1) throw invalid(spec, `guest ${spec.guest} is not the other half of ${spec.address}`);
  // A static range hands out nothing by itself: only the dhcp-host (the VM's MAC) gets the address, for ever,
  // as OpenBSD's vmd does (lease time 0xffffffff).
  args.push(`--dhcp-range=${spec.guest},static,${netmask},infinite`);
  let guest6 = '';
  if (spec.inet6 !== undefined) {
    const g6 = parseInet6Guest(spec, spec.inet6);
    args.push(`--dhcp-range=${g6},${g6},96,infinite`, '--enable-ra');
    guest6 = `,[${g6}]`;
  }
  args.push(`--dhcp-host=${spec.mac.toLowerCase()},${spec.guest}${guest6}${spec.hostname ? `,${spec.hostname}` : ''}`);
}

/** `local inet6`: both addresses must parse and share the /96, on different sides; returns the guest's, formatted. */
function parseInet6Guest(spec: DnsmasqLocalSpec, inet6: { readonly host: string; readonly guest: string }): string {
  let h: Uint8Array;
  let g: Uint8Array;
  try {
    h = parseIPv6(inet6.host);
    g = parseIPv6(inet6.guest);
  } catch {
    throw invalid(spec, `inet6 ${inet6.host} / ${inet6.guest} are not IPv6 addresses`);
  }
  if (h.subarray(0, 12).some((b, i) => b !== g[i]) || h[15] === g[15]) throw invalid(spec, `inet6 ${inet6.guest} is not in the /96 of ${inet6.host}`);
  return formatIPv6(g);
}

/** The DHCP options and policy after the ranges: router, DNS server, MTU, authoritative. */
function pushDhcpOptions(args: string[], spec: DnsmasqSpec, host: string, dns: DnsmasqDns): void {
  args.push(`--dhcp-option=option:router,${host}`);
  if (dns !== false) args.push(`--dhcp-option=option:dns-server,${host}`);
  if (dns !== false && spec.kind === 'local' && spec.inet6 !== undefined) args.push(`--dhcp-option=option6:dns-server,[${formatIPv6(parseIPv6(spec.inet6.host))}]`);
  if (spec.mtu !== undefined) {
    if (!Number.isInteger(spec.mtu) || spec.mtu < 576 || spec.mtu > 65535) throw invalid(spec, `mtu ${spec.mtu} is not from 576 to 65535`);
    args.push(`--dhcp-option=option:mtu,${spec.mtu}`);
  }
  args.push('--dhcp-authoritative', '--no-ping');
  if (spec.verbose) args.push('--log-dhcp');
}

