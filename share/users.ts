// getpwnam/getgrnam equivalents, which Node lacks: through NSS (getent) for the host, over passwd/group text in tests.
// Used by the vm.conf parser (owner names are resolved at parse time, as OpenBSD) and by the daemon.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** One /etc/passwd line. */
export interface PasswdEntry {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  readonly gecos: string;
  readonly home: string;
  readonly shell: string;
}

/** One /etc/group line. */
export interface GroupEntry {
  readonly name: string;
  readonly gid: number;
  readonly members: readonly string[];
}

/** The user and group databases, indexed; build one from text in tests, or use systemUserDb(). */
export class UserDb {
  private readonly byName = new Map<string, PasswdEntry>();
  private readonly byUid = new Map<number, PasswdEntry>();
  private readonly groupsByName = new Map<string, GroupEntry>();
  private readonly groupsByGid = new Map<number, GroupEntry>();

  constructor(passwdText: string, groupText: string) {
    for (const line of passwdText.split('\n')) {
      const f = line.split(':');
      if (f.length < 7 || f[0] === '' || line.startsWith('#') || line.startsWith('+') || line.startsWith('-')) continue;
      const uid = Number(f[2]);
      const gid = Number(f[3]);
      if (!/^[0-9]+$/.test(f[2]!) || !/^[0-9]+$/.test(f[3]!)) continue;
      const entry: PasswdEntry = { name: f[0]!, uid, gid, gecos: f[4]!, home: f[5]!, shell: f.slice(6).join(':') };
      // First match wins, as getpwnam(3) scans the file in order.
      if (!this.byName.has(entry.name)) this.byName.set(entry.name, entry);
      if (!this.byUid.has(uid)) this.byUid.set(uid, entry);
    }
    for (const line of groupText.split('\n')) {
      const f = line.split(':');
      if (f.length < 4 || f[0] === '' || line.startsWith('#') || line.startsWith('+') || line.startsWith('-')) continue;
      if (!/^[0-9]+$/.test(f[2]!)) continue;
      const entry: GroupEntry = { name: f[0]!, gid: Number(f[2]), members: f[3]!.split(',').filter((m) => m !== '') };
      if (!this.groupsByName.has(entry.name)) this.groupsByName.set(entry.name, entry);
      if (!this.groupsByGid.has(entry.gid)) this.groupsByGid.set(entry.gid, entry);
    }
  }

  /** Read the two files now (missing files count as empty). */
  static load(passwdPath = '/etc/passwd', groupPath = '/etc/group'): UserDb {
    return new UserDb(readOrEmpty(passwdPath), readOrEmpty(groupPath));
  }

  getpwnam(name: string): PasswdEntry | null {
    return this.byName.get(name) ?? null;
  }

  getpwuid(uid: number): PasswdEntry | null {
    return this.byUid.get(uid) ?? null;
  }

  getgrnam(name: string): GroupEntry | null {
    return this.groupsByName.get(name) ?? null;
  }

  getgrgid(gid: number): GroupEntry | null {
    return this.groupsByGid.get(gid) ?? null;
  }

  /** getgrouplist(3) without the primary group: every group that lists the user as a member. */
  memberGids(user: string): number[] {
    return [...this.groupsByGid.values()].filter((g) => g.members.includes(user)).map((g) => g.gid);
  }
}

function readOrEmpty(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** How long a name service answer is kept: the daemon lives long, and a listing looks up every VM's owner. */
const NSS_TTL_MS = 5_000;

/**
 * The host's users and groups through the name service switch (`getent`, glibc's NSS client), so users from
 * LDAP or SSSD can own VMs: /etc/passwd and /etc/group hold only the local ones. Answers are cached for a few
 * seconds (unknown keys are asked again each time); every lookup is by key, as getpwnam(3) is, never an enumeration (directories often refuse those).
 */
export class NssUserDb extends UserDb {
  readonly #cache = new Map<string, { at: number; lines: string[] }>();

  constructor(private readonly getent: (args: readonly string[]) => string | null = runGetent) {
    super('', '');
  }

  #lookup(db: string, key: string): string[] {
    const k = `${db}\0${key}`;
    const hit = this.#cache.get(k);
    if (hit !== undefined && Date.now() - hit.at < NSS_TTL_MS) return hit.lines;
    // `--` first: a name from vm.conf that starts with '-' is a key, not an option.
    const out = this.getent([db, '--', key]);
    const lines = out === null ? [] : out.split('\n').filter((l) => l.length > 0);
    // Only answers are kept: a user or group made a moment ago (useradd, then vmctl reload) is found at once.
    if (lines.length > 0) this.#cache.set(k, { at: Date.now(), lines });
    return lines;
  }

  override getpwnam(name: string): PasswdEntry | null {
    // getent reads an all-digit key as a uid: the entry must carry the name asked for.
    const e = new UserDb(this.#lookup('passwd', name).join('\n'), '').getpwnam(name);
    return e?.name === name ? e : null;
  }

  override getpwuid(uid: number): PasswdEntry | null {
    return new UserDb(this.#lookup('passwd', String(uid)).join('\n'), '').getpwuid(uid);
  }

  override getgrnam(name: string): GroupEntry | null {
    const g = new UserDb('', this.#lookup('group', name).join('\n')).getgrnam(name);
    return g?.name === name ? g : null;
  }

  override getgrgid(gid: number): GroupEntry | null {
    return new UserDb('', this.#lookup('group', String(gid)).join('\n')).getgrgid(gid);
  }

  /** getgrouplist(3) as `getent initgroups USER` answers it (`user gid gid …`), without the primary group. */
  override memberGids(user: string): number[] {
    const line = this.#lookup('initgroups', user)[0];
    if (line === undefined) return [];
    const primary = this.getpwnam(user)?.gid;
    return line.trim().split(/\s+/).slice(1).filter((g) => /^[0-9]+$/.test(g)).map(Number).filter((g) => g !== primary);
  }
}

/** getent's output, or null when the key is unknown (exit 2) or getent cannot run. */
function runGetent(args: readonly string[]): string | null {
  try {
    return execFileSync('getent', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5_000 });
  } catch {
    return null;
  }
}

let nss: NssUserDb | null = null;

/** The host's databases through NSS; one object per process, whose answers are a few seconds fresh. */
export function systemUserDb(): UserDb {
  nss ??= new NssUserDb();
  return nss;
}

/** getpwnam(3) against the host's name service. */
export function getpwnam(name: string): PasswdEntry | null {
  return systemUserDb().getpwnam(name);
}

/** getpwuid(3) against the host's name service. */
export function getpwuid(uid: number): PasswdEntry | null {
  return systemUserDb().getpwuid(uid);
}

/** getgrnam(3) against the host's name service. */
export function getgrnam(name: string): GroupEntry | null {
  return systemUserDb().getgrnam(name);
}

/** getgrgid(3) against the host's name service. */
export function getgrgid(gid: number): GroupEntry | null {
  return systemUserDb().getgrgid(gid);
}
