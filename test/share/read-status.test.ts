// The listing's reply reader (share/read-status.ts) reads a status reply and an error exactly as the whole reader
// (read-response.ts) does, and refuses anything else, so `vmctl status` behaves the same from either bundle.

import t from 'tap';
import { ProtocolError } from '../../share/protocol.js';
import { readResponse } from '../../share/read-response.js';
import { readListingResponse } from '../../share/read-status.js';

const vm = {
  id: 3, name: 'web1', pid: 4242, vcpus: 2, maxmem: 512 << 20, curmem: 300 << 20, tty: '/dev/pts/4', owner: 'joe:wheel',
  uid: 1000, gid: 0, state: 'running', started: '2026-12-07T10:00:00Z', origin: 'config', extra: 'a newer vmd\'s column',
};

t.test('a status reply and an error read as readResponse reads them', async (t) => {
  const replies: unknown[] = [
    { type: 'vm.status.response', id: 1, vms: [vm, { ...vm, id: 4, name: 'db', state: 'stopped', pid: null, failure: 'no disk' }], warnings: ['w'] },
    { type: 'vm.status.response', id: 1, vms: [] },
    { type: 'error', id: 0, error: { code: 'ERR_VM_NOT_FOUND', message: 'vm "x": not found', hint: 'vmctl status' } },
    { type: 'error', id: 1, error: { code: 'ERR_PERMISSION', message: 'status: permission denied' } },
  ];
  for (const r of replies) t.same(readListingResponse(r), readResponse(r));
});

t.test('what readResponse refuses, the listing reader refuses', async (t) => {
  const bad: unknown[] = [
    null, [], 'x', { id: 1 }, { type: 'vm.status.response' }, { type: 'vm.status.response', id: -1, vms: [] },
    { type: 'vm.status.response', id: 1, vms: 'none' }, { type: 'vm.status.response', id: 1, vms: [{ ...vm, state: 'dancing' }] },
    { type: 'vm.status.response', id: 1, vms: [], warnings: [{ toString: 1 }] },
    { type: 'error', id: 1, error: { code: 'ERR_NOPE', message: 'x' } }, { type: 'error', id: 1, error: 'x' },
  ];
  for (const r of bad) {
    t.throws(() => readResponse(r), ProtocolError);
    t.throws(() => readListingResponse(r), ProtocolError, JSON.stringify(r));
  }
});

t.test('any other reply is unexpected for a listing', async (t) => {
  const other = { type: 'ok.response', id: 1 };
  t.same(readResponse(other), other, 'readResponse reads it');
  t.throws(() => readListingResponse(other), { message: 'reply: unexpected type "ok.response" for a listing' });
});
