// Test users and their group, made if missing and removed again afterwards if made here (e2e tests that act as
// non-root users need real accounts: vmd decides on the uid the kernel reports).

import { execa } from 'execa';
import { getgrnam, getpwnam, usersForget } from '../../share/users.js';

/**
 * Makes `group` and each of `users` that does not exist; with `primary`, the group is the users' primary group
 * (`useradd -g`), otherwise a supplementary one (`-G`); with `login`, a shell and an unlocked (but unusable) password,
 * so that sshd lets them in by key. Resolves with the cleanup that removes what was made.
 */
export async function ensureUsers(
  users: readonly string[], group: string, opts: { primary?: boolean; login?: boolean } = {},
): Promise<() => Promise<void>> {
  // Answers cached in this process may be of users an earlier test removed.
  usersForget();
  const made: string[] = [];
  const madeGroup = getgrnam(group) === null;
  if (madeGroup) await execa('groupadd', ['--system', group]);
  for (const u of users) {
    if (getpwnam(u) !== null) continue;
    const shell = opts.login === true ? '/bin/sh' : '/usr/sbin/nologin';
    await execa('useradd', ['--system', '--no-create-home', '--shell', shell, opts.primary === true ? '-g' : '-G', group, u]);
    made.push(u);
  }
  // `!` (useradd's locked password) makes sshd refuse even a key; `*` matches no password and locks nothing.
  if (opts.login === true) for (const u of users) await execa('usermod', ['-s', '/bin/sh', '-p', '*', u]);
  // The lookups above missed what was made just now: the name service's cache would remember that for a second.
  usersForget();
  return async () => {
    for (const u of made) await execa('userdel', [u], { reject: false });
    if (madeGroup) await execa('groupdel', [group], { reject: false });
    usersForget();
  };
}
