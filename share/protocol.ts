// The control-socket protocol between vmctl (or any client) and vmd: every message type, declared once.
// The types are the vocabulary (the vmd.h of the protocol); the readers live in read-request.ts and read-response.ts.

import type { VmdErrorData } from './errors.js';
import { MAX_NICS, type DisplayKind, type Machine } from './config.js';
import type { StreamConfig } from './stream.js';

/** Bumped on any incompatible change; a client with another version gets ERR_VERSION. */
export const PROTOCOL_VERSION = 1;

export const MAX_NAME = 63;
export const MAX_PATH = 1023;
export const MAX_STRING = 4096;

export type VmState = 'running' | 'stopped' | 'paused' | 'waiting' | 'stopping' | 'starting';

/** Every VmState, for readers that check one. */
export const VM_STATES: readonly VmState[] = ['running', 'stopped', 'paused', 'waiting', 'stopping', 'starting'];

/** What `vmctl events` reports, as `virsh event --loop` names lifecycle events, plus links, transfers and reloads. */
export const VM_EVENT_KINDS = [
  'started', 'stopped', 'rebooted', 'paused', 'unpaused', 'start-failed', 'sent', 'received', 'reloaded', 'link-up', 'link-down',
] as const;

/** One event (reader and line form in share/events.ts); `vmId` and `vm` are null for the daemon's own (`reloaded`). */
export interface VmEvent {
  /** ISO time the parent saw it happen. */
  readonly time: string;
  readonly event: typeof VM_EVENT_KINDS[number];
  readonly vmId: number | null;
  readonly vm: string | null;
  /** Why: QEMU's shutdown cause for `stopped`, the error for `start-failed`. */
  readonly reason?: string;
  /** The host link of `link-up` and `link-down`. */
  readonly link?: string;
}

/** One row of `vmctl status`; the same object `--json` prints. */
export interface VmInfo {
  readonly id: number;
  readonly name: string;
  readonly pid: number | null;
  readonly vcpus: number;
  /** Bytes. */
  readonly maxmem: number;
  /** Resident memory of the QEMU process in bytes, null when not running. */
  readonly curmem: number | null;
  /** Console the guest is attached to (a path), null when not running. */
  readonly tty: string | null;
  /** `user[:group]` as OpenBSD prints it. */
  readonly owner: string;
  readonly uid: number;
  readonly gid: number | null;
  readonly state: VmState;
  /** ISO time the guest last started, null when not running. */
  readonly started: string | null;
  /** Where the VM was defined: the config file, `vmctl start`, `vmctl load`, or as an instance. */
  readonly origin: 'config' | 'adhoc' | 'load' | 'instance';
  /** Why the last start failed; present while the VM is stopped after that failure, until its next start. */
  readonly failure?: string;
}

/** One row of `vmctl links`: a running guest's NIC as a host link, with the host side's counters. */
export interface LinkInfo extends LinkCounters {
  readonly vmId: number;
  readonly vm: string;
  /** The NIC's index in the VM (`if0` is 0). */
  readonly index: number;
  /** The host link (tap) name. */
  readonly link: string;
  /** The guest's MAC. */
  readonly lladdr: string;
  /** The switch the link is a port of, null for local and unattached NICs. */
  readonly switch: string | null;
  readonly local: boolean;
  /** The guest's DHCP lease or local address, CIDR; null when none is known. */
  readonly address: string | null;
  /** Packets the hypervisor dropped because their source MAC or IP was not the guest's (locked lladdr, local). */
  readonly spoofDropped: number;
  /** Packets the interface's filter rules blocked (and VLAN-tagged frames on a filtered link). */
  readonly blocked: number;
  /** `passt`: carried by a passt process (`link` is `passt/PID`), which keeps no counters; absent = a tap. */
  readonly kind?: 'passt';
  /** The NIC's forwards as `tcp 8080>80`; absent or empty = none. */
  readonly forwards?: readonly string[];
}

/** A packet and byte count of nftables. */
export interface Count {
  readonly packets: number;
  readonly bytes: number;
}

/** One filter rule of `vmctl firewall`: as written in vm.conf (after macros), with what it decided. */
export interface FirewallRuleInfo {
  /** 1-based position in its interface block. */
  readonly n: number;
  readonly text: string;
  readonly action: 'pass' | 'block';
  /** `file:line` it was written at. */
  readonly source: string;
  /** Packets and bytes this rule decided; null when the VM is not running (no compiled rules). */
  readonly count: Count | null;
}

/** One interface of `vmctl firewall`: its rules and the hypervisor's spoofing drops. */
export interface FirewallInfo {
  readonly vmId: number;
  readonly vm: string;
  readonly index: number;
  /** The host link, null when the VM is not running. */
  readonly link: string | null;
  readonly switch: string | null;
  readonly local: boolean;
  /** `locked lladdr` in effect (always on local interfaces). */
  readonly lockedLladdr: boolean;
  /** The only source IPv4 the guest may use, null when not locked. */
  readonly lockedIp: string | null;
  readonly rules: readonly FirewallRuleInfo[];
  readonly macSpoof: Count | null;
  readonly ipSpoof: Count | null;
  readonly vlan: Count | null;
  /** What the guest may not offer on this link (vm.conf.5, `allow`), and the packets dropped for it. */
  readonly guarded: readonly ('dhcp' | 'router')[];
  readonly guard: Count | null;
}

/** A host link's counters as the kernel keeps them (the host side: the guest's TX is the link's RX). */
export interface LinkCounters {
  readonly rxPackets: number;
  readonly rxBytes: number;
  readonly rxDropped: number;
  readonly txPackets: number;
  readonly txBytes: number;
  readonly txDropped: number;
}

/** A NIC asked for on the command line, in order: `-L` (local), `-n SWITCH` or `--passt real|nat`. */
export type StartNet =
  | { readonly kind: 'local' }
  | { readonly kind: 'switch'; readonly switch: string }
  | { readonly kind: 'passt'; readonly style: 'real' | 'nat' };

export interface StartForward {
  readonly proto: 'tcp' | 'udp';
  readonly hostPort: number;
  readonly guestPort: number;
}

/** `vmctl start` options; paths are absolute (vmctl resolves them against its cwd). */
export interface StartOptions {
  readonly memory?: number;
  readonly interfaces?: number;
  readonly nets?: readonly StartNet[];
  /** `[bus:][format:]/abs/path`: `nvme:qcow2:/vm/disk.qcow2`, `ide:/vm/disk.img`, `/vm/disk.img`. */
  readonly disks?: readonly string[];
  readonly boot?: string;
  readonly initrd?: string;
  readonly cmdline?: string;
  readonly cdrom?: string;
  readonly bootDevice?: 'cdrom' | 'disk' | 'net';
  /** `--machine`: q35 (the default), pc or microvm. */
  readonly machine?: Machine;
  /** `--display vnc|none`: vm.conf's `display`. */
  readonly display?: DisplayKind;
  readonly instanceOf?: string;
  readonly forwards?: readonly StartForward[];
  /** `--firmware`, `--secure-boot` (implies uefi). */
  readonly firmware?: 'bios' | 'uefi';
  readonly secureBoot?: boolean;
  /** `--user`, `--ssh-key FILE` (vmctl sends the key, read as the caller): a cloud-init seed for the VM. */
  readonly cloudInit?: { readonly hostname?: string; readonly user?: string; readonly sshKeys?: readonly string[] };
}

export interface Base {
  readonly v: number;
  /** Request id chosen by the client; echoed in the response. */
  readonly id: number;
}

export interface StatusRequest extends Base { readonly type: 'vm.status.request'; readonly target?: string; readonly running?: boolean }
export interface StartRequest extends Base { readonly type: 'vm.start.request'; readonly target: string; readonly options: StartOptions }
export interface StopRequest extends Base { readonly type: 'vm.stop.request'; readonly target: string; readonly force: boolean; readonly wait: boolean }
export interface WaitRequest extends Base { readonly type: 'vm.wait.request'; readonly target: string }
export interface PauseRequest extends Base { readonly type: 'vm.pause.request'; readonly target: string }
export interface UnpauseRequest extends Base { readonly type: 'vm.unpause.request'; readonly target: string }
export interface ConsoleRequest extends Base { readonly type: 'vm.console.request'; readonly target: string }
export interface LoadRequest extends Base { readonly type: 'config.load.request'; readonly path: string }
export interface ReloadRequest extends Base { readonly type: 'config.reload.request' }
export interface ResetRequest extends Base { readonly type: 'config.reset.request'; readonly mode: 'all' | 'vms' | 'switches' }
export interface VerboseRequest extends Base { readonly type: 'log.verbose.request'; readonly level: number }
export interface LinksRequest extends Base { readonly type: 'vm.links.request'; readonly target?: string }
export interface FirewallRequest extends Base { readonly type: 'vm.firewall.request'; readonly target: string; readonly index?: number }
/** `vmctl capture`: tcpdump on the host link of NIC `interface`; after the reply the connection carries pcap bytes. */
export interface CaptureRequest extends Base {
  readonly type: 'vm.capture.request';
  readonly target: string;
  readonly interface: number;
  /** Stop after this many packets (tcpdump -c). */
  readonly count?: number;
  /** Bytes kept of each packet (tcpdump -s). */
  readonly snaplen?: number;
  /** A tcpdump filter expression, passed to tcpdump as one argument after `--`. */
  readonly filter?: string;
}
/** The connection then carries the send stream (share/stream.ts) from vmd to the client. */
export interface SendRequest extends Base { readonly type: 'vm.send.request'; readonly target: string }
/** `config` is the stream's header, read by the client; after the `ready` reply the client sends the stream's body. */
export interface ReceiveRequest extends Base {
  readonly type: 'vm.receive.request'; readonly target: string; readonly config: StreamConfig;
  /** A live migration's target: QEMU listens on a TCP port (in the `ready` reply) instead of reading the body. */
  readonly live?: boolean;
  /** `migrate --copy-storage`: each disk's virtual size in bytes, in config order; the target creates them. */
  readonly copyStorage?: readonly number[];
  /** A live receive's TLS pre-shared key (share/migrate.ts), the same vmctl gives the source; required with `live`. */
  readonly tlsKey?: string;
}
/** `vmctl migrate`'s source: the `ready` reply carries the configuration, then share/migrate.ts's frames follow. */
export interface MigrateRequest extends Base {
  readonly type: 'vm.migrate.request'; readonly target: string; readonly downtimeMs?: number;
  /** `--copy-storage`: the `ready` reply says each disk's size, and the disks are mirrored to the target first. */
  readonly copyStorage?: boolean;
  /** The TLS pre-shared key of this migration's streams, fresh from vmctl; the target's receive has the same. */
  readonly tlsKey: string;
}

/** `vmctl log VM`: the VM's QEMU log, kept in the state directory across starts. */
export interface QemuLogRequest extends Base { readonly type: 'vm.log.request'; readonly target: string }
/** `vmctl inspect VM`: its effective configuration, as vm.conf text and as the model. */
export interface InspectRequest extends Base { readonly type: 'vm.inspect.request'; readonly target: string }

/** `vmctl grow -s SIZE DISK` of a disk a running guest holds: QEMU grows it (block_resize); `disk` is absolute. */
export interface GrowRequest extends Base { readonly type: 'vm.grow.request'; readonly disk: string; readonly size: number }

/** `vmctl display VM`: after the response the connection carries the guest's VNC (RFB) stream, relayed by vmd. */
export interface DisplayRequest extends Base { readonly type: 'vm.display.request'; readonly target: string }

/** `vmctl events [id]`: after the response, the connection carries one vm.event frame per event until it closes. */
export interface EventsRequest extends Base { readonly type: 'vm.events.request'; readonly target?: string }

/** `vmctl snapshot`: take (`create`), list, revert to or delete a snapshot of every disk of a VM (qcow2 only). */
export interface SnapshotRequest extends Base {
  readonly type: 'vm.snapshot.request'; readonly target: string; readonly op: 'create' | 'list' | 'revert' | 'delete'; readonly name?: string;
}

/** Everything a client may send. */
export type ControlRequest =
  | StatusRequest | StartRequest | StopRequest | WaitRequest | PauseRequest | UnpauseRequest
  | ConsoleRequest | LoadRequest | ReloadRequest | ResetRequest | VerboseRequest | LinksRequest | FirewallRequest | CaptureRequest
  | SendRequest | ReceiveRequest | MigrateRequest
  | QemuLogRequest | InspectRequest | EventsRequest | SnapshotRequest | DisplayRequest | GrowRequest;

export type RequestType = ControlRequest['type'];

export interface StatusResponse { readonly type: 'vm.status.response'; readonly id: number; readonly vms: readonly VmInfo[]; readonly warnings: readonly string[] }
export interface StartResponse { readonly type: 'vm.start.response'; readonly id: number; readonly vm: VmInfo; readonly warnings: readonly string[] }
export interface StopResponse { readonly type: 'vm.stop.response'; readonly id: number; readonly vmId: number; readonly name: string; readonly result: 'requested' | 'terminated' }
export interface WaitResponse { readonly type: 'vm.wait.response'; readonly id: number; readonly vmId: number; readonly name: string }
export interface PauseResponse { readonly type: 'vm.pause.response' | 'vm.unpause.response'; readonly id: number; readonly vmId: number; readonly name: string }
export interface ConsoleResponse { readonly type: 'vm.console.response'; readonly id: number; readonly vmId: number; readonly name: string }
export interface LinksResponse { readonly type: 'vm.links.response'; readonly id: number; readonly links: readonly LinkInfo[] }
export interface FirewallResponse { readonly type: 'vm.firewall.response'; readonly id: number; readonly interfaces: readonly FirewallInfo[] }
/** The capture runs: pcap bytes follow on the same connection until it ends. */
export interface CaptureResponse {
  readonly type: 'vm.capture.response'; readonly id: number; readonly vmId: number; readonly name: string;
  readonly interface: number; readonly link: string;
}
export interface SendResponse { readonly type: 'vm.send.response'; readonly id: number; readonly vmId: number; readonly name: string }
/** `ready`: send the body now; `done`: the guest runs. */
export interface ReceiveResponse {
  readonly type: 'vm.receive.response'; readonly id: number; readonly phase: 'ready' | 'done'; readonly vm: VmInfo;
  /** A live receive's `ready`: the TCP port the guest's QEMU waits on for the source's migration. */
  readonly port?: number;
  /** A copy-storage receive's `ready`: the TCP port of QEMU's NBD server exporting the new disks. */
  readonly nbdPort?: number;
}
/** `ready`: the guest's configuration (for the target), then the migration's frames; `done`: the guest left. */
export interface MigrateResponse {
  readonly type: 'vm.migrate.response'; readonly id: number; readonly vmId: number; readonly name: string;
  readonly phase: 'ready' | 'done'; readonly config?: StreamConfig;
  /** With --copy-storage, in the `ready` reply: each disk's virtual size in bytes, in config order. */
  readonly diskSizes?: readonly number[];
}
export interface QemuLogResponse { readonly type: 'vm.log.response'; readonly id: number; readonly vmId: number; readonly name: string; readonly lines: readonly string[] }
/** `text` is vm.conf that `vmd -n` accepts; `config` the same as share/config.ts's VmConfig (for --json readers). */
export interface InspectResponse {
  readonly type: 'vm.inspect.response'; readonly id: number; readonly vmId: number; readonly name: string;
  readonly text: string; readonly config: Readonly<Record<string, unknown>>;
}
/** One snapshot of one disk, as qemu-img lists it. */
export interface SnapshotInfo {
  readonly disk: string;
  readonly name: string;
  /** Bytes of saved RAM and device state; 0 for a disk-only snapshot (taken while the VM was stopped). */
  readonly vmStateBytes: number;
  /** ISO time it was taken. */
  readonly date: string;
}
/** `name`: the snapshot acted on (empty for a listing); `snapshots`: the VM's snapshots after the operation. */
export interface SnapshotResponse {
  readonly type: 'vm.snapshot.response'; readonly id: number; readonly vmId: number; readonly vm: string;
  readonly op: SnapshotRequest['op']; readonly name: string; readonly snapshots: readonly SnapshotInfo[];
}
/** The running guest `name` now has disk `disk` at `size` bytes. */
export interface GrowResponse { readonly type: 'vm.grow.response'; readonly id: number; readonly vmId: number; readonly name: string; readonly disk: string; readonly size: number }
/** The connection now carries the guest's VNC stream: the server's `RFB 003.008` greeting comes first. */
export interface DisplayResponse { readonly type: 'vm.display.response'; readonly id: number; readonly vmId: number; readonly name: string }
export interface EventsResponse { readonly type: 'vm.events.response'; readonly id: number }
/** One event of an events subscription; `id` is the subscribing request's. */
export interface EventMessage { readonly type: 'vm.event'; readonly id: number; readonly event: VmEvent }
export interface OkResponse { readonly type: 'ok.response'; readonly id: number }
export interface ErrorResponse { readonly type: 'error'; readonly id: number; readonly error: VmdErrorData }

/** Everything vmd answers. */
export type ControlResponse =
  | StatusResponse | StartResponse | StopResponse | WaitResponse | PauseResponse | ConsoleResponse
  | LinksResponse | FirewallResponse | CaptureResponse | SendResponse | ReceiveResponse | MigrateResponse | OkResponse | ErrorResponse
  | QemuLogResponse | InspectResponse | EventsResponse | EventMessage | SnapshotResponse | DisplayResponse | GrowResponse;

/**
 * Non-root users may only do what OpenBSD's control.c lets them (status, start, stop, wait, pause, unpause, console),
 * list links, and see the firewall of and capture on their own VMs' links and their QEMU logs and configurations (the parent checks
 * ownership, as for console); VM owners may snapshot their VMs (the parent checks, and qemu-img runs as the requester);
 * everyone may follow events, which show what `status` shows every user (OpenBSD: status has no per-owner filter).
 */
export const UNPRIVILEGED_REQUESTS: ReadonlySet<RequestType> = new Set<RequestType>([
  'vm.status.request', 'vm.start.request', 'vm.stop.request', 'vm.wait.request',
  'vm.pause.request', 'vm.unpause.request', 'vm.console.request', 'vm.links.request', 'vm.firewall.request', 'vm.capture.request',
  'vm.log.request', 'vm.inspect.request', 'vm.events.request', 'vm.snapshot.request',
  // The parent checks ownership, as for console.
  'vm.display.request',
  // The parent finds the running VM that holds the disk, checks its ownership, and opens the disk as the requester.
  'vm.grow.request',
]);

/** tcpdump's largest snapshot length (MAXIMUM_SNAPLEN): -s beyond it is refused. */
export const MAX_SNAPLEN = 262144;

/** The highest NIC index a capture may name: NICs are numbered from 0. */
export const MAX_CAPTURE_INTERFACE = MAX_NICS - 1;

/** Why a message was refused; becomes an ERR_PROTOCOL/ERR_VERSION error reply. */
export class ProtocolError extends Error {
  readonly code: 'ERR_PROTOCOL' | 'ERR_VERSION';
  constructor(message: string, code: 'ERR_PROTOCOL' | 'ERR_VERSION' = 'ERR_PROTOCOL') {
    super(message);
    this.name = 'ProtocolError';
    this.code = code;
  }
}
