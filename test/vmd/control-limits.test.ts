// Tests for vmd/control/limits: whom control refuses, evicts, sheds or times out when users flood the socket.
// Root and the socket owner must always get in; no user may hold more than its share of connections or memory.

import t from 'tap';
import {
  ControlLimits, controlLimitsFrom, DEFAULT_CONTROL_LIMITS, limitMessage, openFilesLimit, type ControlLimitSettings,
} from '../../vmd/control/limits.js';

const small: ControlLimitSettings = {
  maxConnections: 10, maxConnectionsPerUid: 4, maxHeldBytes: 1000, maxHeldBytesPerUid: 400, requestTimeoutMs: 5000, idleTimeoutMs: 50_000,
};

t.test('a user gets at most its share of connections; others and root still get in', async (t) => {
  const l = new ControlLimits(small, []);
  for (let id = 1; id <= 4; id++) t.same(l.admit(id, 1000, 0), { admitted: true, evict: [] });
  t.same(l.admit(5, 1000, 0), { admitted: false, evict: [] }, 'the fifth connection of uid 1000 is refused');
  t.ok(l.admit(6, 1001, 0).admitted, 'another user is served');
  t.ok(l.admit(7, 0, 0).admitted, 'root is served');
  l.remove(1);
  t.ok(l.admit(8, 1000, 0).admitted, 'a closed connection gives its place back');
  l.remove(1);
  t.equal(l.connections, 6, 'removing twice counts once');
});

t.test('root at the global cap takes the place of the longest idle user connection', async (t) => {
  const l = new ControlLimits(small, []);
  let id = 0;
  for (let uid = 1000; uid < 1003; uid++) for (let i = 0; i < 3; i++) l.admit(++id, uid, id * 10);
  l.admit(++id, 0, 1000);
  t.equal(l.connections, 10);
  // Connection 1 is the oldest, but it waits for an answer (`vmctl wait`): the oldest idle one goes instead.
  l.requestStarted(1);
  t.same(l.admit(11, 1003, 2000), { admitted: false, evict: [] }, 'a user is refused at the cap');
  t.same(l.admit(12, 0, 2000), { admitted: true, evict: [2] }, 'root evicts the oldest idle user connection');
  t.equal(l.connections, 10);
  // Only busy user connections left to evict: the first of them goes.
  for (const other of [3, 4, 5, 6, 7, 8, 9]) l.requestStarted(other);
  t.same(l.admit(13, 0, 3000).evict, [1]);
});

t.test('the socket owner is served like root; at a cap of privileged peers only, nobody is evicted', async (t) => {
  const l = new ControlLimits({ ...small, maxConnections: 3, maxConnectionsPerUid: 1 }, []);
  l.privilege(1500);
  t.ok(l.isPrivileged(0) && l.isPrivileged(1500) && !l.isPrivileged(1000));
  for (let id = 1; id <= 3; id++) t.ok(l.admit(id, 1500, 0).admitted, 'the owner is not held to the per-user cap');
  t.same(l.admit(4, 0, 0), { admitted: false, evict: [] }, 'a privileged peer never evicts another');
  const owned = new ControlLimits({ ...small, maxConnections: 1 }, [1500]);
  owned.admit(1, 1000, 0);
  t.same(owned.admit(2, 1500, 0), { admitted: true, evict: [1] }, 'privileged uids can be given up front');
});

t.test('memory for unfinished requests: per user, then for everyone, biggest first', async (t) => {
  const l = new ControlLimits(small, []);
  for (let id = 1; id <= 3; id++) l.admit(id, 1000, 0);
  for (let id = 4; id <= 6; id++) l.admit(id, 1001, 0);
  for (let id = 7; id <= 9; id++) l.admit(id, 1002, 0);
  l.admit(10, 0, 0);
  t.same(l.hold(1, 150), []);
  t.same(l.hold(2, 200), []);
  t.same(l.hold(3, 100), [2], 'over the per-user budget: that user\'s biggest partial request goes');
  t.equal(l.heldBytes, 250);
  t.same(l.hold(4, 300), []);
  t.same(l.hold(5, 50), []);
  t.same(l.hold(7, 300), []);
  t.same(l.hold(8, 50), []);
  t.same(l.hold(10, 1_000_000), [], 'root\'s bytes are neither counted nor shed');
  t.same(l.hold(9, 50), [], 'exactly at both budgets');
  t.equal(l.heldBytes, 1000);
  // 1,050 > 1,000 with every user within its own share: the biggest goes, the oldest on a tie (4 before 7).
  t.same(l.hold(6, 50), [4]);
  t.equal(l.heldBytes, 750);
  t.same(l.hold(1, 0), [], 'a finished request gives its bytes back');
  t.equal(l.heldBytes, 600);
  l.remove(5);
  t.equal(l.heldBytes, 550, 'a closed connection gives its bytes back');
  t.same(l.hold(99, 5000), [], 'an unknown connection holds nothing');
});

t.test('a connection must send a complete request within the deadline, unless one is in flight', async (t) => {
  const l = new ControlLimits(small, []);
  l.admit(1, 1000, 0);
  l.admit(2, 1000, 1000);
  l.admit(3, 0, 0);
  t.same(l.expired(4999), []);
  t.same(l.expired(5000), [1, 3], 'idle since accept: root is held to it too');
  l.requestStarted(1);
  t.same(l.expired(60_000), [2, 3], 'a request in flight (wait, stop -w) keeps a connection however long');
  l.requestStarted(1);
  l.requestAnswered(1, 70_000);
  t.same(l.expired(80_000), [2, 3], 'one of two requests still in flight');
  l.requestAnswered(1, 90_000);
  t.same(l.expired(139_999), [2, 3], 'answered, it may idle between requests');
  t.same(l.expired(140_000), [1, 2, 3], 'the idle deadline counts from the last answer');
  l.requestAnswered(3, 140_000);
  t.same(l.expired(140_000), [1, 2], 'a request answered at once (status) restarts it');
});

t.test('an unfinished request has the short deadline, also on a connection that may idle', async (t) => {
  const l = new ControlLimits(small, []);
  l.admit(1, 1000, 0);
  l.requestStarted(1);
  l.requestAnswered(1, 1000);
  t.same(l.hold(1, 10, 2000), []);
  t.same(l.expired(6999), []);
  t.same(l.expired(7000), [1], 'a request begun 5 s ago and not finished');
  l.hold(1, 0, 7000);
  t.same(l.expired(7000), [], 'finished: back to the idle deadline');
  t.same(l.expired(51_000), [1]);
});

t.test('settings come from the defaults, VMD_REQUEST_TIMEOUT and the descriptor limit', async (t) => {
  t.same(controlLimitsFrom({}, null), DEFAULT_CONTROL_LIMITS);
  t.equal(controlLimitsFrom({ VMD_REQUEST_TIMEOUT: '2.5' }, null).requestTimeoutMs, 2500);
  for (const bad of ['', '0', '-1', 'soon']) {
    t.equal(controlLimitsFrom({ VMD_REQUEST_TIMEOUT: bad }, null).requestTimeoutMs, 10_000, `"${bad}" is ignored`);
  }
  t.equal(controlLimitsFrom({}, 20_000).maxConnections, 1024);
  t.equal(controlLimitsFrom({}, 1024).maxConnections, 960, 'descriptors for the process itself are kept back');
  t.equal(controlLimitsFrom({}, 10).maxConnections, 1);
  const limits = 'Limit                     Soft Limit           Hard Limit           Units     \n' +
    'Max open files            1024                 524288               files     \n';
  t.equal(openFilesLimit(limits), 1024, 'the soft limit counts');
  t.equal(openFilesLimit(limits.replace('1024 ', 'unlimited')), Number.MAX_SAFE_INTEGER);
  t.equal(openFilesLimit('nothing here'), null);
  t.ok((openFilesLimit() ?? 0) > 0, 'this process\'s own limit is read');
});

t.test('verdicts are worded with their limits', async (t) => {
  t.equal(limitMessage('connections', small), 'too many connections (at most 4 per user, 10 in all)');
  t.equal(limitMessage('memory', DEFAULT_CONTROL_LIMITS), 'too much unfinished request data (at most 4 MiB per user, 32 MiB in all)');
  t.equal(limitMessage('timeout', small), 'no complete request within 5 s (50 s idle between requests)');
  t.match(limitMessage('evicted', small), /root or the socket owner/);
});
