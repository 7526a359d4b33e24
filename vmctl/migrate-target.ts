// How `vmctl migrate` reaches the target host's vmd: a socket path given with -s, else ssh to a relay on the target
// (as `vmctl -H`), so the target's vmd checks the ssh user; one small module, apart from the migration itself.

import { validMigrateHost } from '../share/migrate.js';
import { ControlClient } from './client.js';
import type { Context } from './command.js';
import { CliError } from './errors.js';

/** Where the guest goes: the address its state travels to, and how to reach that host's vmd. */
export interface MigrateTarget {
  /** The host part of `[user@]host`: what the source's QEMU connects to. */
  readonly host: string;
  /** The user part: whom ssh logs in as; unused by the socket transport. */
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

/** Connects to the target's vmd (its socket, or ssh to `[user@]host` and its relay); the caller owns the connection. */
export async function migrateTargetConnect(target: MigrateTarget, ctx: Pick<Context, 'env' | 'stderr' | 'verbose'>): Promise<ControlClient> {
  if (target.socket !== null) return ControlClient.connect(target.socket);
  const { sshConnect } = await import('./ssh.js');
  const client = await sshConnect(`${target.user === null ? '' : `${target.user}@`}${target.host}`, ctx.env, ctx.stderr, ctx.verbose);
  // ssh fails only once it is read from: one round trip says now, before the source is asked, that the target answers.
  try {
    await client.request({ type: 'vm.status.request', running: true });
  } catch (err) {
    client.close();
    throw err;
  }
  return client;
}
