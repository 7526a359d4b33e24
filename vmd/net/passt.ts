// passt's command line for one guest NIC, built by a pure function (tested with golden files like QEMU's), and
// the addresses a passt NIC's guest gets in either style, for `vmctl links`.

import { PASST_NAT_ADDRESS, type PasstConfig, type PortForward } from '../../share/config.js';

/** Everything one passt process is started with. */
export interface PasstSpec {
  /** Unix socket QEMU connects to (`-netdev stream`), in the VM's run directory. */
  readonly socket: string;
  readonly pidFile: string;
  readonly logFile: string;
  readonly config: PasstConfig;
  readonly forwards: readonly Pick<PortForward, 'proto' | 'hostPort' | 'guestPort'>[];
}

/** A qemu-style guest's address, prefix length and router (network + 2, QEMU's user-mode layout). */
export function passtNatOf(cidr: string): { address: string; length: number; router: string } {
  const [address = '', len = ''] = cidr.split('/');
  const length = Number(len);
  const n = address.split('.').reduce((v, o) => v * 256 + Number(o), 0);
  const net = length === 0 ? 0 : (n & (~0 << (32 - length))) >>> 0;
  const r = net + 2;
  return { address, length, router: [r >>> 24, (r >>> 16) & 255, (r >>> 8) & 255, r & 255].join('.') };
}

/** `-t 8080:80,2222:22`-style lists, one per protocol that has forwards. */
function portSpecs(forwards: PasstSpec['forwards']): string[] {
  const out: string[] = [];
  for (const proto of ['tcp', 'udp'] as const) {
    const list = forwards.filter((f) => f.proto === proto).map((f) => (f.hostPort === f.guestPort ? String(f.hostPort) : `${f.hostPort}:${f.guestPort}`));
    if (list.length > 0) out.push(proto === 'tcp' ? '-t' : '-u', list.join(','));
  }
  return out;
}

/**
 * passt's argv: in the foreground (vmd holds it like QEMU), one client only (QEMU's disconnect ends it, so it
 * never outlives its guest), logging to a file of the run directory, no host port but the forwards.
 */
export function passtArgv(spec: PasstSpec): string[] {
  const argv = ['--foreground', '--one-off', '--quiet', '--log-file', spec.logFile, '--socket', spec.socket, '--pid', spec.pidFile];
  const { dev, address } = spec.config;
  if (dev !== null) argv.push('--interface', dev);
  // Real-addr style: the guest's router is the host's router, reached as itself, not the host's loopback.
  if (address === null) argv.push('--no-map-gw');
  if (address !== null) {
    // Qemu style: the guest's own address behind the host; the router doubles as the host (passt maps the gateway
    // address to the host's loopback) and as its DNS forwarder, as QEMU's 10.0.2.2 does.
    const nat = passtNatOf(address);
    argv.push('--address', nat.address, '--netmask', String(nat.length), '--gateway', nat.router, '--dns', nat.router, '--dns-forward', nat.router);
  }
  // Without -t/-u passt forwards nothing inbound; "none" says so explicitly rather than by omission.
  const ports = portSpecs(spec.forwards);
  argv.push(...(ports.length > 0 ? ports : ['-t', 'none', '-u', 'none']));
  return argv;
}

/** The NIC of a rootless vmd's guest when passt stands in for QEMU's user-mode NAT: the same 10.0.2.15 layout. */
export const PASST_ROOTLESS: PasstConfig = { dev: null, address: PASST_NAT_ADDRESS };
