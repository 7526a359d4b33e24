// Tests for the parent's record of control's connections: control may act only for a connection the parent handed
// it, with the uid and gid the kernel gave for that connection.

import t from 'tap';
import { ControlPeers } from '../../../vmd/parent/peers.js';

const creds = (uid: number, gid: number) => ({ uid, gid });
const peers = (): ControlPeers => new ControlPeers();
const request = { v: 1, id: 1, type: 'vm.status.request' } as const;

t.test('a message for a connection is believed only with that connection\'s uid and gid', async (t) => {
  const p = peers();
  const a = p.register(creds(1000, 100));
  const b = p.register(creds(0, 0));
  t.same([a.peer, b.peer], [1, 2], 'the parent numbers the connections');
  t.ok(p.check({ type: 'control.request', peer: a.peer, uid: 1000, gid: 100, request }));
  t.throws(() => p.check({ type: 'control.request', peer: a.peer, uid: 0, gid: 0, request }), /connection 1 is uid 1000 gid 100, not uid 0 gid 0/);
  t.throws(() => p.check({ type: 'control.request', peer: a.peer, uid: 1000, gid: 0, request }), /not uid 1000 gid 0/);
  t.throws(() => p.check({ type: 'control.request', peer: 77, uid: 0, gid: 0, request }), /connection 77 was never handed to control/);
});

t.test('a connection is forgotten when it closes or leaves control with its socket; all of them with control', async (t) => {
  const p = peers();
  const a = p.register(creds(1000, 100));
  const b = p.register(creds(1000, 100));
  p.check({ type: 'control.closed', peer: a.peer });
  t.throws(() => p.check({ type: 'control.request', peer: a.peer, uid: 1000, gid: 100, request }), /never handed/);
  p.check({ type: 'control.console', peer: b.peer, uid: 1000, gid: 100, request: { v: 1, id: 2, type: 'vm.console.request', target: 'x' }, remainder: '' });
  t.throws(() => p.check({ type: 'control.request', peer: b.peer, uid: 1000, gid: 100, request }), /never handed/, 'the console took the socket');
  p.register(creds(0, 0));
  t.equal(p.size, 1);
  p.clear();
  t.equal(p.size, 0);
});
