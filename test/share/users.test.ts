// Tests for share/users: passwd/group parsing and lookups, as getpwnam(3)/getgrnam(3) would answer.
import t from 'tap';
import { UserDb, getpwnam, getgrnam, getpwuid, systemUserDb } from '../../share/users.js';

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
  t.equal(systemUserDb(), systemUserDb(), 'cached while the files are unchanged');
  t.equal(UserDb.load('/nonexistent/passwd', '/nonexistent/group').getpwnam('root'), null);
});
