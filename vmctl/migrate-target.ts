// How `vmctl migrate` reaches the target host's vmd: one small module, so the transport can change (a socket path
// today; an ssh relay to the remote socket, as `vmctl -H`, later) without touching the migration itself.

import { validMigrateHost } from '../share/migrate.js';
import { ControlClient } from './client.js';
import { CliError } from './errors.js';

/** Where the guest goes: the address its state travels to, and how to reach that host's vmd. */
export interface MigrateTarget {
  /** The host part of `[user@]host`: what the source's QEMU connects to. */
  readonly host: string;
  /** The user part, for a transport that logs in; unused by the socket transport. */
  readonly user: string | null;
  /** The target vmd's control socket, when reachable as a path from here (`-s socket`). */
  readonly socket: string | null;
}

/** Parses `[user@]host`; an IPv6 address goes in brackets, as in QEMU's tcp: URIs. */
export function migrateTargetParse(word: string, socket: string | null): MigrateTarget {
  const at = word.lastIndexOf('@');
  const user = at < 0 ? null : word.slice(0, at);
  const host = word.slice(at + 1);
  if (user !== null && !/^[A-Za-z0-9._-]{1,32}$/.test(user)) throw new CliError(`migrate: invalid user: ${user}`);
  if (!validMigrateHost(host)) throw new CliError(`migrate: invalid host: ${host}: give a host name, an IPv4 address or [an IPv6 address]`);
  return { host, user, socket };
}

/** Connects to the target's vmd; the caller owns the connection. */
export async function migrateTargetConnect(target: MigrateTarget): Promise<ControlClient> {
  if (target.socket === null) {
    throw new CliError(`migrate: ${target.host}: no way to reach its vmd: give its socket with -s socket`);
  }
  return ControlClient.connect(target.socket);
}
