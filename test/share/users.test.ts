// Tests for share/users: passwd/group parsing and lookups, as getpwnam(3)/getgrnam(3) would answer.
import t from 'tap';
import { NssUserDb, UserDb, getpwnam, getgrnam, getpwuid, systemUserDb } from '../../share/users.js';

const passwd = [
  '# comment',
  'root:x:0:0:root:/root:/bin/bash',
  'alice:x:1000:1000:Alice A,,,:/home/alice:/bin/sh',
  'alice:x:2000:2000:shadowed duplicate:/:/bin/sh',
  'broken:x:notanumber:1:::',
  'short:x:1',
  '',
].join('\n');
const group = ['root:x:0:', 'wheel:x:10:root,alice', 'alice:x:1000:', 'bad:x:zz:', ''].join('\n');

t.test('lookups by name and id', async (t) => {
  const db = new UserDb(passwd, group);
  t.same(db.getpwnam('alice'), { name: 'alice', uid: 1000, gid: 1000, gecos: 'Alice A,,,', home: '/home/alice', shell: '/bin/sh' });
  t.equal(db.getpwnam('nobody-here'), null);
  t.equal(db.getpwnam('broken'), null, 'malformed uid skipped');
  t.equal(db.getpwnam('short'), null, 'short line skipped');
  t.equal(db.getpwuid(0)?.name, 'root');
  t.same(db.getgrnam('wheel'), { name: 'wheel', gid: 10, members: ['root', 'alice'] });
  t.equal(db.getgrgid(1000)?.name, 'alice');
  t.equal(db.getgrnam('bad'), null);
});

t.test('first entry wins, as a sequential scan', async (t) => {
  t.equal(new UserDb(passwd, group).getpwnam('alice')?.uid, 1000);
});

t.test('the host databases', async (t) => {
  t.equal(getpwnam('root')?.uid, 0);
  t.equal(getpwuid(0)?.name, 'root');
  t.equal(getgrnam('root')?.gid, 0);
  t.equal(systemUserDb(), systemUserDb(), 'one name-service view per process');
  t.equal(UserDb.load('/nonexistent/passwd', '/nonexistent/group').getpwnam('root'), null);
});

t.test('the host lookups go through the name service by key, never by enumeration', async (t) => {
  // A directory user: known to NSS (as LDAP or SSSD would answer), absent from /etc/passwd.
  const asked: string[][] = [];
  const answers: Record<string, string> = {
    'passwd -- ldapuser': 'ldapuser:*:70001:70001:LDAP User:/home/ldapuser:/bin/sh\n',
    'passwd -- 70001': 'ldapuser:*:70001:70001:LDAP User:/home/ldapuser:/bin/sh\n',
    'group -- vmusers': 'vmusers:*:70100:ldapuser\n',
    'initgroups -- ldapuser': 'ldapuser              70001 70100\n',
    // getent reads a numeric key as an id: the entry's name differs, so getpwnam("0") is no one.
    'passwd -- 0': 'root:x:0:0:root:/root:/bin/bash\n',
  };
  let now = 1_000_000;
  const db = new NssUserDb({ getent: (args) => { asked.push([...args]); return answers[args.join(' ')] ?? null; }, now: () => now });
  t.equal(db.getpwnam('ldapuser')?.uid, 70001);
  t.equal(db.getpwuid(70001)?.name, 'ldapuser');
  t.same(db.getgrnam('vmusers'), { name: 'vmusers', gid: 70100, members: ['ldapuser'] });
  t.same(db.memberGids('ldapuser'), [70100], 'supplementary groups from initgroups, primary left out');
  t.equal(db.getpwnam('0'), null, 'a numeric name is not a uid');
  t.equal(db.getpwnam('-x'), null);
  t.ok(asked.some((a) => a.join(' ') === 'passwd -- -x'), 'a name starting with - is passed after --');
  const before = asked.length;
  db.getpwnam('ldapuser');
  t.equal(asked.length, before, 'answers are cached');
  // A name unknown a moment ago (useradd since) is asked again after a second, not remembered as missing for long.
  t.equal(db.getpwnam('newuser'), null);
  answers['passwd -- newuser'] = 'newuser:*:70002:70002::/:/bin/sh\n';
  const asks = asked.length;
  t.equal(db.getpwnam('newuser'), null, 'a miss is remembered for a moment');
  t.equal(asked.length, asks, 'without asking again');
  now += 1_000;
  t.equal(db.getpwnam('newuser')?.uid, 70002, 'and asked again after it');
  t.equal(db.getpwnam('laterx'), null);
  answers['passwd -- laterx'] = 'laterx:*:70004:70004::/:/bin/sh\n';
  db.forgetMisses();
  t.equal(db.getpwnam('laterx')?.uid, 70004, 'a reload forgets the misses at once');
  t.ok(asked.every((a) => a.length === 3), 'every call names one key');
});

t.test('a requester is resolved asynchronously; a known key never waits for the name service', async (t) => {
  const passwd = 'slow:*:70010:70010::/:/bin/sh\n';
  const answers: Record<string, string> = { 'passwd -- 70010': passwd, 'passwd -- slow': passwd, 'initgroups -- slow': 'slow 70010 70200\n' };
  const syncAsked: string[] = [];
  const asyncAsked: string[] = [];
  let now = 5_000_000;
  // The asynchronous getent of a slow directory: each answer comes when the test releases it.
  const pending: Array<() => void> = [];
  const db = new NssUserDb({
    now: () => now,
    getent: (args) => { syncAsked.push(args.join(' ')); return answers[args.join(' ')] ?? null; },
    getentAsync: (args) => new Promise((resolve) => {
      asyncAsked.push(args.join(' '));
      pending.push(() => resolve(answers[args.join(' ')] ?? null));
    }),
  });
  const release = async (): Promise<void> => {
    while (pending.length > 0) {
      pending.shift()!();
      await new Promise((r) => setImmediate(r));
    }
  };
  const prefetched = db.prefetchUid(70010);
  await release();
  await prefetched;
  t.same(asyncAsked.sort(), ['initgroups -- slow', 'passwd -- 70010', 'passwd -- slow'], 'uid, name and groups, asynchronously');
  t.same([db.getpwuid(70010)?.name, db.memberGids('slow')], ['slow', [70200]], 'then the permission checks find them');
  t.same(syncAsked, [], 'without a synchronous getent');

  now += 10_000;
  answers['initgroups -- slow'] = 'slow 70010\n';
  t.same(db.memberGids('slow'), [70200], 'an old answer is served at once');
  t.same(syncAsked, [], 'still no synchronous getent');
  await release();
  t.same(db.memberGids('slow'), [], 'while the background refresh brings the new one');
  now += 120_000;
  t.equal(db.getpwnam('slow')?.uid, 70010, 'an answer too old is asked for again');
  t.same(syncAsked, ['passwd -- slow'], 'synchronously, as a key never asked for');

  const missing = db.prefetchUid(70099);
  await release();
  await missing;
  t.equal(db.getpwuid(70099), null, 'an unknown uid');
  t.same(syncAsked, ['passwd -- slow'], 'is a remembered miss, not asked again at once');
});

t.test('the real getent answers for the host', async (t) => {
  const db = new NssUserDb();
  t.equal(db.getpwnam('root')?.uid, 0);
  t.equal(db.getgrgid(0)?.name, 'root');
  t.equal(db.getpwnam('no-such-user-vmd-test'), null);
  const asyncOnly = new NssUserDb({ getent: () => { throw new Error('a synchronous getent'); } });
  await asyncOnly.prefetchUid(0);
  t.equal(asyncOnly.getpwuid(0)?.name, 'root', 'the real getent, asynchronously (execFile)');
});
