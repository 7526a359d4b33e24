// DHCP (and DNS forwarding) for switches with `dhcp` and for local interfaces: one dnsmasq per link or bridge,
// bound to that one interface only, started and stopped by the parent, with its leases read back for `vmctl links`.

import { mkdirSync, openSync, readFileSync, readSync, closeSync, statSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { VmdError } from '../../share/errors.js';
import { ifNameError } from '../../share/names.js';
import { formatIPv4, formatIPv6, maskOf, parseIPv4, parseIPv6 } from './addr.js';
import { pidAlive } from '../pid.js';

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
   * `--dhcp-hostsfile`: reservations that change while dnsmasq runs (vmd's fixed leases for guests on the switch),
   * re-read on SIGHUP (DnsmasqInstance.reload). Lines as hostsFileText writes them; dnsmasq reads it as nobody.
   */
  readonly hostsFile?: string;
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

/** One line of a dnsmasq lease file. expiry is epoch seconds, 0 for an infinite lease; `*` fields are null. */
export interface DhcpLease {
  readonly expiry: number;
  readonly mac: string;
  readonly address: string;
  readonly hostname: string | null;
  readonly clientId: string | null;
}

const MAC_RE = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/i;

function invalid(spec: { name: string }, why: string): VmdError {
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
function defaultRange(net: number, bcast: number, len: number): [number, number] {
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
  if (ifNameError(spec.interface) !== null) throw invalid(spec, `bad interface name ${JSON.stringify(spec.interface)}`);
  for (const f of [spec.leaseFile, spec.pidFile, spec.logFile]) {
    if (!f.startsWith('/')) throw invalid(spec, `file ${f} is not an absolute path`);
  }
  const { addr, len } = parseCidr(spec);
  const host = formatIPv4(addr);
  const netmask = formatIPv4(maskOf(len));
  const dns = spec.dns ?? true;
  const args = [
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
  if (dns === false) {
    args.push('--port=0');
  } else if (typeof dns === 'object' && dns.servers !== undefined && dns.servers.length > 0) {
    args.push('--no-resolv', ...dns.servers.map((s) => `--server=${s}`));
  } else if (typeof dns === 'object' && dns.resolvFile !== undefined) {
    args.push(`--resolv-file=${dns.resolvFile}`);
  }
  if (spec.kind === 'switch') {
    const lease = spec.leaseTime ?? '1h';
    for (const [s, e] of switchRanges(spec, addr, len)) args.push(`--dhcp-range=${formatIPv4(s)},${formatIPv4(e)},${netmask},${lease}`);
    const mask = maskOf(len);
    if (spec.hostsFile !== undefined) {
      if (!spec.hostsFile.startsWith('/')) throw invalid(spec, `file ${spec.hostsFile} is not an absolute path`);
      args.push(`--dhcp-hostsfile=${spec.hostsFile}`);
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
  } else {
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
      let h: Uint8Array;
      let g: Uint8Array;
      try {
        h = parseIPv6(spec.inet6.host);
        g = parseIPv6(spec.inet6.guest);
      } catch {
        throw invalid(spec, `inet6 ${spec.inet6.host} / ${spec.inet6.guest} are not IPv6 addresses`);
      }
      if (h.subarray(0, 12).some((b, i) => b !== g[i]) || h[15] === g[15]) throw invalid(spec, `inet6 ${spec.inet6.guest} is not in the /96 of ${spec.inet6.host}`);
      guest6 = formatIPv6(g);
      args.push(`--dhcp-range=${guest6},${guest6},96,infinite`, '--enable-ra');
      guest6 = `,[${guest6}]`;
    }
    args.push(`--dhcp-host=${spec.mac.toLowerCase()},${spec.guest}${guest6}${spec.hostname ? `,${spec.hostname}` : ''}`);
  }
  args.push(`--dhcp-option=option:router,${host}`);
  if (dns !== false) args.push(`--dhcp-option=option:dns-server,${host}`);
  if (dns !== false && spec.kind === 'local' && spec.inet6 !== undefined) args.push(`--dhcp-option=option6:dns-server,[${formatIPv6(parseIPv6(spec.inet6.host))}]`);
  if (spec.mtu !== undefined) {
    if (!Number.isInteger(spec.mtu) || spec.mtu < 576 || spec.mtu > 65535) throw invalid(spec, `mtu ${spec.mtu} is not from 576 to 65535`);
    args.push(`--dhcp-option=option:mtu,${spec.mtu}`);
  }
  args.push('--dhcp-authoritative', '--no-ping');
  if (spec.verbose) args.push('--log-dhcp');
  return args;
}

/**
 * The fixed lease of NIC `index` of VM `vmId` on a switch whose host address is `address` (CIDR), as a guest
 * address the default dynamic range never hands out: the pool is the subnet minus network, broadcast, the host
 * address and the dynamic range (for a /24 with the default range: .2–.99, then .200–.254), and NIC i of VM N
 * takes slot 4(N−1)+i of it, or the next free one when `taken` (other guests' fixed leases) holds that.
 * Deterministic for a given set of running guests, and never two guests on one address.
 */
export function fixedLeaseFor(address: string, vmId: number, index: number, taken: ReadonlySet<string> = new Set()): string {
  const spec = { name: `address ${address}` };
  const m = /^([^/]+)\/(\d{1,2})$/.exec(address);
  const len = m ? Number(m[2]) : NaN;
  let addr: number;
  try {
    if (!m || len > 30) throw new Error();
    addr = parseIPv4(m[1]!);
  } catch {
    throw invalid(spec, 'not an IPv4 CIDR of a /30 or larger subnet');
  }
  if (!Number.isSafeInteger(vmId) || vmId < 1 || !Number.isInteger(index) || index < 0 || index > 3) {
    throw invalid(spec, `no fixed lease for vm id ${vmId} interface ${index}`);
  }
  const mask = maskOf(len);
  const net = (addr & mask) >>> 0;
  const bcast = (net | (~mask >>> 0)) >>> 0;
  const [ds, de] = defaultRange(net, bcast, len);
  // The pool as intervals, so a /8 is not a list of 16 million numbers.
  const segments: Array<[number, number]> = [];
  const push = (a: number, b: number): void => {
    for (const [x, y] of addr >= a && addr <= b ? [[a, addr - 1], [addr + 1, b]] : [[a, b]]) if (x! <= y!) segments.push([x!, y!]);
  };
  push(net + 1, ds - 1);
  push(de + 1, bcast - 1);
  const size = segments.reduce((n, [a, b]) => n + b - a + 1, 0);
  const nth = (k: number): number => {
    for (const [a, b] of segments) {
      if (k <= b - a) return a + k;
      k -= b - a + 1;
    }
    return -1;
  };
  const first = ((vmId - 1) * 4 + index) % Math.max(size, 1);
  for (let i = 0; i < size; i++) {
    const candidate = formatIPv4(nth((first + i) % size));
    if (!taken.has(candidate)) return candidate;
  }
  throw new VmdError('ERR_INVALID', `dhcp address range exceeded, vm id ${vmId} interface ${index}: no fixed lease left in ${formatIPv4(net)}/${len}`, {
    hint: 'give the switch a larger subnet',
  });
}

/** The `--dhcp-hostsfile` text for fixed leases: one `mac,address` line each, checked like dnsmasqArgs' hosts. */
export function hostsFileText(hosts: readonly DhcpReservation[]): string {
  return hosts.map((h) => {
    if (!MAC_RE.test(h.mac)) throw new VmdError('ERR_INVALID', `dhcp hosts: bad MAC ${h.mac}`);
    parseIPv4(h.address);
    if (h.hostname !== undefined && !/^[A-Za-z0-9][A-Za-z0-9-]{0,62}$/.test(h.hostname)) throw new VmdError('ERR_INVALID', `dhcp hosts: bad hostname ${h.hostname}`);
    return `${h.mac.toLowerCase()},${h.address}${h.hostname ? `,${h.hostname}` : ''}\n`;
  }).join('');
}

/** A hosts file's `mac,address` lines as a map from MAC to address; a missing file is empty, odd lines are skipped. */
export function readHostsFile(file: string): Map<string, string> {
  const out = new Map<string, string>();
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    const [mac, address] = line.trim().split(',');
    if (mac === undefined || address === undefined || !MAC_RE.test(mac)) continue;
    try {
      parseIPv4(address);
    } catch {
      continue;
    }
    out.set(mac.toLowerCase(), address);
  }
  return out;
}

/** The lease file's guest leases (`<expiry> <mac> <ip> <hostname|*> <client-id|*>`); a missing file is empty, partial lines are skipped. */
export function readLeases(file: string): DhcpLease[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const out: DhcpLease[] = [];
  const lines = text.split('\n');
  // The last piece has no newline after it: dnsmasq may be halfway through writing it.
  lines.pop();
  for (const line of lines) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4 || !/^\d+$/.test(f[0]!) || !MAC_RE.test(f[1]!)) continue;
    try {
      parseIPv4(f[2]!);
    } catch {
      continue;
    }
    out.push({
      expiry: Number(f[0]),
      mac: f[1]!.toLowerCase(),
      address: f[2]!,
      hostname: f[3] === '*' ? null : f[3]!,
      clientId: f[4] === undefined || f[4] === '*' ? null : f[4],
    });
  }
  return out;
}

/** How start() runs dnsmasq: in a network namespace (through `ip netns exec`), how long to wait for it to bind. */
export interface DnsmasqStartOptions {
  readonly netns?: string | null;
  /** Milliseconds to wait for the "bound" log line (default 5000). */
  readonly timeoutMs?: number;
  /** The dnsmasq binary (default `dnsmasq` from PATH). */
  readonly binary?: string;
  /**
   * true: dnsmasq is killed when this Node process exits, even by a signal (tests). Default false: it runs in its
   * own session and outlives vmd like QEMU does; the parent keeps pidFile and calls killStale() after a restart.
   */
  readonly cleanup?: boolean;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

function readFrom(path: string, offset: number): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return '';
  }
  try {
    const size = statSync(path).size;
    if (size <= offset) return '';
    const buf = Buffer.alloc(Math.min(size - offset, 1 << 20));
    const n = readSync(fd, buf, 0, buf.length, offset);
    return buf.subarray(0, n).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

// argv of a live process, or null (gone, a zombie, or unreadable).
function cmdline(pid: number): string[] | null {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (raw.length === 0) return null;
    return raw.replace(/\0$/, '').split('\0');
  } catch {
    return null;
  }
}

/** A running dnsmasq that vmd started; the parent records its pidFile so a restarted vmd can killStale() it. */
export class DnsmasqInstance {
  readonly spec: DnsmasqSpec;
  readonly args: readonly string[];
  readonly netns: string | null;
  /** Resolves when dnsmasq has exited, however that happened. */
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  private readonly child: ResultPromise;
  private exitInfo: { code: number | null; signal: string | null } | undefined;

  private constructor(spec: DnsmasqSpec, args: string[], netns: string | null, child: ResultPromise) {
    this.spec = spec;
    this.args = args;
    this.netns = netns;
    this.child = child;
    this.exited = child.then(
      (r) => ({ code: r.exitCode ?? null, signal: r.signal ?? null }),
      () => ({ code: null, signal: null }),
    );
    void this.exited.then((e) => {
      this.exitInfo = e;
    });
  }

  /** dnsmasq's pid (the same process as `ip netns exec`, which execs it). */
  get pid(): number {
    return this.child.pid ?? -1;
  }

  get leaseFile(): string {
    return this.spec.leaseFile;
  }

  get pidFile(): string {
    return this.spec.pidFile;
  }

  get logFile(): string {
    return this.spec.logFile;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** Start dnsmasq for `spec` and resolve once its DHCP socket is bound to the interface alone; else a clear error. */
  static async start(spec: DnsmasqSpec, options: DnsmasqStartOptions = {}): Promise<DnsmasqInstance> {
    const args = dnsmasqArgs(spec);
    const netns = options.netns ?? null;
    for (const f of [spec.leaseFile, spec.pidFile, spec.logFile]) mkdirSync(dirname(f), { recursive: true, mode: 0o700 });
    // A dnsmasq left by a crashed vmd holds the interface's port 67: without this the new one could not bind.
    await DnsmasqInstance.killStale(spec.pidFile, spec.leaseFile);
    const logOffset = fileSize(spec.logFile);
    const binary = options.binary ?? 'dnsmasq';
    const [file, argv] = netns === null ? [binary, args] : ['ip', ['netns', 'exec', netns, binary, ...args]];
    // Default detached: its own session, so a terminal's ^C to vmd does not reach it, and no exit hook: the parent
    // owns its lifetime (stop(), killStale() after a crash), as it does for QEMU's.
    const cleanup = options.cleanup ?? false;
    const child = execa(file, argv, {
      stdin: 'ignore', stdout: 'ignore', stderr: 'pipe', reject: false, detached: !cleanup, cleanup,
      encoding: 'utf8', stripFinalNewline: true,
    });
    const inst = new DnsmasqInstance(spec, args, netns, child);
    const what = `dhcp ${spec.name} on ${spec.interface}${netns === null ? '' : ` in ${netns}`}`;
    const bound = `DHCP, sockets bound exclusively to interface ${spec.interface}`;
    const deadline = Date.now() + (options.timeoutMs ?? 5_000);
    for (;;) {
      const log = readFrom(spec.logFile, logOffset);
      if (log.includes(bound)) return inst;
      const failed = /FAILED to start up|warning: interface \S+ does not currently exist/.exec(log);
      if (failed !== null || !inst.running) {
        await inst.stop();
        const r = await child;
        const own = String(r.stderr ?? '').trim().split('\n').filter((l) => l.length > 0).pop();
        const why = own ?? failed?.[0]?.replace(/^warning: /, '') ?? `exited with ${r.signal ?? `status ${r.exitCode}`}`;
        throw new VmdError('ERR_INTERNAL', `${what}: ${why.replace(/^dnsmasq: /, '')}`);
      }
      if (Date.now() > deadline) {
        await inst.stop();
        throw new VmdError('ERR_INTERNAL', `${what}: dnsmasq did not bind within ${options.timeoutMs ?? 5_000} ms`, {
          hint: `see ${spec.logFile}`,
        });
      }
      await sleep(20);
    }
  }

  /** SIGHUP: dnsmasq re-reads its hosts file (fixed leases); a stopped instance is left alone. */
  reload(): void {
    if (this.running) this.child.kill('SIGHUP');
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone and its pid file removed. Safe to call twice. */
  async stop(graceMs = 3_000): Promise<void> {
    if (this.running) {
      this.child.kill('SIGTERM');
      const late = await Promise.race([this.exited.then(() => false), sleep(graceMs).then(() => true)]);
      if (late) {
        this.child.kill('SIGKILL');
        await this.exited;
      }
    }
    try {
      unlinkSync(this.spec.pidFile);
    } catch {
      // Already gone.
    }
  }

  /**
   * Kill a dnsmasq a previous vmd left behind: only if `pidFile` names a live dnsmasq whose command line has this very
   * pid file (and `leaseFile`, when given). Returns whether it killed one; the pid file is removed either way.
   */
  static async killStale(pidFile: string, leaseFile?: string): Promise<boolean> {
    let pid: number;
    try {
      pid = Number(readFileSync(pidFile, 'utf8').trim());
    } catch {
      return false;
    }
    let killed = false;
    const argv = Number.isInteger(pid) && pid > 1 ? cmdline(pid) : null;
    const isDnsmasq = argv !== null && /(^|\/)dnsmasq$/.test(argv[0]!);
    const ours = isDnsmasq
      && argv.includes(`--pid-file=${pidFile}`)
      && (leaseFile === undefined || argv.includes(`--dhcp-leasefile=${leaseFile}`));
    if (ours) {
      try {
        process.kill(pid, 'SIGTERM');
        for (let i = 0; i < 150 && pidAlive(pid) && cmdline(pid) !== null; i++) await sleep(20);
        if (pidAlive(pid) && cmdline(pid) !== null) process.kill(pid, 'SIGKILL');
        for (let i = 0; i < 100 && pidAlive(pid) && cmdline(pid) !== null; i++) await sleep(20);
        killed = true;
      } catch {
        // It went away by itself.
      }
    }
    // A pid file naming a dnsmasq we may not kill (another lease file) is someone's live record: leave it.
    if (ours || !isDnsmasq) {
      try {
        unlinkSync(pidFile);
      } catch {
        // Gone already, or not ours to remove (permissions): the next start overwrites it.
      }
    }
    return killed;
  }
}
