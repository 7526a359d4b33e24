// getpwnam/getgrnam equivalents, which Node lacks: through NSS (getent) for the host, over passwd/group text in tests.
// Used by the vm.conf parser (owner names are resolved at parse time, as OpenBSD) and by the daemon.

import { execFile, execFileSync } from 'node:child_process';
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

/** How long a name service answer is fresh: the daemon lives long, and a listing looks up every VM's owner. */
const NSS_TTL_MS = 5_000;
/** An older answer is still served (and refreshed in the background) up to this age, so a known key never waits. */
const NSS_STALE_MS = 60_000;
/** How long a miss is remembered: short, so a user made a moment ago (useradd, then vmctl reload) is found soon. */
const NSS_NEGATIVE_MS = 1_000;
/** A name service that takes longer than this has failed: the lookup counts as a miss. */
const GETENT_TIMEOUT_MS = 5_000;

/** getent's output for one key, or null when the key is unknown (exit 2) or getent cannot run. */
export type Getent = (args: readonly string[]) => string | null;
export type GetentAsync = (args: readonly string[]) => Promise<string | null>;

interface NssAnswer {
  readonly at: number;
  /** Empty: a miss. */
  readonly lines: readonly string[];
}

/**
 * The host's users and groups through the name service switch (`getent`, glibc's NSS client), so users from
 * LDAP or SSSD can own VMs: /etc/passwd and /etc/group hold only the local ones. Every lookup is by key, as
 * getpwnam(3) is, never an enumeration (directories often refuse those).
 *
 * The lookups are synchronous, as the parser and the permission checks that use them are; so that a slow LDAP or
 * SSSD server does not stall the process that asks, answers are cached (fresh for 5 s, then served while getent
 * runs again in the background, up to a minute), misses for a second, and prefetchUid() resolves a requester
 * asynchronously (execFile) before the daemon looks at its request. Only a key nobody asked for before waits.
 */
export class NssUserDb extends UserDb {
  readonly #cache = new Map<string, NssAnswer>();
  readonly #inflight = new Map<string, Promise<readonly string[]>>();
  readonly #getent: Getent;
  readonly #getentAsync: GetentAsync;
  readonly #now: () => number;

  constructor(opts: { getent?: Getent; getentAsync?: GetentAsync; now?: () => number } = {}) {
    super('', '');
    this.#getent = opts.getent ?? runGetent;
    this.#getentAsync = opts.getentAsync ?? runGetentAsync;
    this.#now = opts.now ?? Date.now;
  }

  /** The cached answer for a key while it may still be used as it is, else undefined. */
  #fresh(k: string): NssAnswer | undefined {
    const hit = this.#cache.get(k);
    if (hit === undefined) return undefined;
    const age = this.#now() - hit.at;
    return age < (hit.lines.length > 0 ? NSS_TTL_MS : NSS_NEGATIVE_MS) ? hit : undefined;
  }

  #store(k: string, out: string | null): readonly string[] {
    const lines = out === null ? [] : out.split('\n').filter((l) => l.length > 0);
    this.#cache.set(k, { at: this.#now(), lines });
    return lines;
  }

  /** Asks getent asynchronously (one question per key at a time) and caches the answer. */
  #refresh(db: string, key: string): Promise<readonly string[]> {
    const k = `${db}\0${key}`;
    const running = this.#inflight.get(k);
    if (running !== undefined) return running;
    // `--` first: a name from vm.conf that starts with '-' is a key, not an option.
    const p = this.#getentAsync([db, '--', key]).catch(() => null).then((out) => this.#store(k, out)).finally(() => this.#inflight.delete(k));
    this.#inflight.set(k, p);
    return p;
  }

  /** The answer for one key: cached, stale while it is refreshed, or (never asked) from getent now. */
  #lookup(db: string, key: string): readonly string[] {
    const k = `${db}\0${key}`;
    const fresh = this.#fresh(k);
    if (fresh !== undefined) return fresh.lines;
    const hit = this.#cache.get(k);
    if (hit !== undefined && hit.lines.length > 0 && this.#now() - hit.at < NSS_STALE_MS) {
      void this.#refresh(db, key);
      return hit.lines;
    }
    return this.#store(k, this.#getent([db, '--', key]));
  }

  /** A key's answer made fresh asynchronously, unless it is. */
  async #ensure(db: string, key: string): Promise<readonly string[]> {
    return this.#fresh(`${db}\0${key}`)?.lines ?? this.#refresh(db, key);
  }

  /** Drops the remembered misses (or every answer): whoever reads a configuration again wants users made since found. */
  forgetMisses(all = false): void {
    for (const [k, v] of this.#cache) if (all || v.lines.length === 0) this.#cache.delete(k);
  }

  /** Resolves what the permission checks ask about a requester (its entry, name, groups) without blocking. */
  async prefetchUid(uid: number): Promise<void> {
    const lines = await this.#ensure('passwd', String(uid));
    const user = new UserDb(lines.join('\n'), '').getpwuid(uid);
    if (user === null) return;
    await Promise.all([this.#ensure('passwd', user.name), this.#ensure('initgroups', user.name)]);
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

function runGetent(args: readonly string[]): string | null {
  try {
    return execFileSync('getent', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: GETENT_TIMEOUT_MS });
  } catch {
    return null;
  }
}

function runGetentAsync(args: readonly string[]): Promise<string | null> {
  return new Promise((resolve) => {
    execFile('getent', args, { encoding: 'utf8', timeout: GETENT_TIMEOUT_MS }, (err, stdout) => resolve(err === null ? stdout : null));
  });
}

let nss: NssUserDb | null = null;

/** The host's databases through NSS; one object per process, whose answers are a few seconds fresh. */
export function systemUserDb(): UserDb {
  nss ??= new NssUserDb();
  return nss;
}

/** Resolves requester `uid` in the background so the synchronous lookups that follow find it cached. */
export function usersPrefetch(uid: number): Promise<void> {
  const db = systemUserDb();
  return db instanceof NssUserDb ? db.prefetchUid(uid) : Promise.resolve();
}

/** Forgets the name service's remembered misses (a configuration is read again; users were just made). */
export function usersForgetMisses(): void {
  const db = systemUserDb();
  if (db instanceof NssUserDb) db.forgetMisses();
}

/** Forgets every cached answer: for a process that has just added or removed users itself. */
export function usersForget(): void {
  const db = systemUserDb();
  if (db instanceof NssUserDb) db.forgetMisses(true);
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
