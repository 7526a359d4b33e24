// Tests for the frames of a live migration's source connection: what vmm accepts from the client before it hands
// QEMU a tcp: URI, and what vmctl accepts as progress.

import t from 'tap';
import { migrateUri, readDiskSizes, readMigrateClientFrame, readMigrateProgress, validMigrateHost } from '../../share/migrate.js';
import { ProtocolError } from '../../share/protocol.js';

t.test('go, commit and abort are read; the URI is tcp:HOST:PORT', async (t) => {
  t.same(readMigrateClientFrame({ type: 'vm.migrate.go', host: '10.0.0.2', port: 4444 }), { type: 'vm.migrate.go', host: '10.0.0.2', port: 4444 });
  t.same(readMigrateClientFrame({ type: 'vm.migrate.commit' }), { type: 'vm.migrate.commit' });
  t.same(readMigrateClientFrame({ type: 'vm.migrate.abort' }), { type: 'vm.migrate.abort' });
  t.equal(migrateUri('host2.example', 5000), 'tcp:host2.example:5000');
  t.equal(migrateUri('[fd00::2]', 5000), 'tcp:[fd00::2]:5000');
});

t.test('a host that would smuggle QEMU options or another transport into the URI is refused', async (t) => {
  for (const host of ['a,b', 'h:1', 'exec:sh', 'a b', '', '-x', 'x-', 'fd00::2', '[fd00::2', 'a\nb', 'x'.repeat(254)]) {
    t.notOk(validMigrateHost(host), JSON.stringify(host));
    t.throws(() => readMigrateClientFrame({ type: 'vm.migrate.go', host, port: 1 }), ProtocolError, JSON.stringify(host));
  }
  for (const host of ['h', 'host-2.example.org', '192.0.2.7', '[fd00::2]', '[::ffff:192.0.2.7]']) t.ok(validMigrateHost(host), host);
});

t.test('ports, unknown keys and types are checked', async (t) => {
  for (const port of [0, 65536, -1, 1.5, '80']) {
    t.throws(() => readMigrateClientFrame({ type: 'vm.migrate.go', host: 'h', port }), ProtocolError, String(port));
  }
  t.throws(() => readMigrateClientFrame({ type: 'vm.migrate.commit', host: 'h' }), /unknown field "host"/);
  t.throws(() => readMigrateClientFrame({ type: 'vm.migrate.start' }), ProtocolError);
  t.throws(() => readMigrateClientFrame('vm.migrate.commit'), /not a message/);
});

t.test('--copy-storage: go carries the target\'s NBD port, checked as a port', async (t) => {
  const go = { type: 'vm.migrate.go', host: 'h', port: 4444, nbdPort: 10809 };
  t.same(readMigrateClientFrame(go), go);
  for (const nbdPort of [0, 65536, '10809', 1.5]) t.throws(() => readMigrateClientFrame({ ...go, nbdPort }), ProtocolError, String(nbdPort));
  t.same(readDiskSizes({ s: [0, 2 ** 50] }, 's', 'x'), [0, 2 ** 50]);
  t.equal(readDiskSizes({}, 's', 'x'), undefined);
  t.throws(() => readDiskSizes({ s: [2 ** 50 + 1] }, 's', 'x'), /field "s" must be a list of sizes/);
});

t.test('progress: QEMU\'s numbers, downtime only once completed', async (t) => {
  const p = { type: 'vm.migrate.progress', status: 'completed', transferred: 5, remaining: 0, total: 9, downtimeMs: 120, totalMs: 900 };
  t.same(readMigrateProgress(p), p);
  t.same(readMigrateProgress({ ...p, status: 'active', downtimeMs: null, totalMs: null }).downtimeMs, null);
  t.throws(() => readMigrateProgress({ ...p, status: 'failed' }), ProtocolError);
  t.throws(() => readMigrateProgress({ ...p, extra: 1 }), /unknown field "extra"/);
});
