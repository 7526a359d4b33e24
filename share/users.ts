// getpwnam/getgrnam equivalents over /etc/passwd and /etc/group, which Node lacks.
// Used by the vm.conf parser (owner names are resolved at parse time, as OpenBSD) and by the daemon.

import { readFileSync, statSync } from 'node:fs';

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

let cached: { db: UserDb; stamp: string } | null = null;

/** The host's databases, re-read when /etc/passwd or /etc/group changed (the daemon lives long). */
export function systemUserDb(): UserDb {
  const stamp = ['/etc/passwd', '/etc/group']
    .map((p) => {
      try {
        const s = statSync(p);
        return `${s.mtimeMs}:${s.size}:${s.ino}`;
      } catch {
        return '-';
      }
    })
    .join('|');
  if (cached === null || cached.stamp !== stamp) cached = { db: UserDb.load(), stamp };
  return cached.db;
}

/** getpwnam(3) against the host's /etc/passwd. */
export function getpwnam(name: string): PasswdEntry | null {
  return systemUserDb().getpwnam(name);
}

/** getpwuid(3) against the host's /etc/passwd. */
export function getpwuid(uid: number): PasswdEntry | null {
  return systemUserDb().getpwuid(uid);
}

/** getgrnam(3) against the host's /etc/group. */
export function getgrnam(name: string): GroupEntry | null {
  return systemUserDb().getgrnam(name);
}

/** getgrgid(3) against the host's /etc/group. */
export function getgrgid(gid: number): GroupEntry | null {
  return systemUserDb().getgrgid(gid);
}
