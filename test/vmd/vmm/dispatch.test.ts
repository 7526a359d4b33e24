// Tests for vmm's handling of the parent's messages without a guest: the replies the parent waits for, what a
// client connection handed over with a message receives, and that a guest leaves the table once, reported once.

import t, { type Test } from 'tap';
import { createServer, connect, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeFrame } from '../../../share/frame.js';
import type { VmmToParent } from '../../../share/ipc.js';
import { vmmDispatchParent } from '../../../vmd/vmm/dispatch.js';
import { Guest, guestFinish, vmmCreate } from '../../../vmd/vmm/guests.js';

/** A vmm whose messages to the parent are collected. */
function vmmCollecting(): { vmm: ReturnType<typeof vmmCreate>; sent: VmmToParent[] } {
  const sent: VmmToParent[] = [];
  return { vmm: vmmCreate((m) => sent.push(m)), sent };
}

/** Both ends of a real unix socket connection: `server` as vmm gets it, `client` as vmctl holds it. */
async function socketPair(t: Test): Promise<{ server: Socket; client: Socket; received: () => Promise<Buffer> }> {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-vmm-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 's.sock');
  const listener = createServer();
  await new Promise<void>((r) => listener.listen(path, r));
  const accepted = new Promise<Socket>((r) => listener.once('connection', r));
  const client = connect(path);
  const server = await accepted;
  listener.close();
  t.teardown(() => { client.destroy(); server.destroy(); });
  const chunks: Buffer[] = [];
  client.on('data', (c: Buffer) => chunks.push(c));
  const ended = new Promise<void>((r) => client.once('end', r));
  return { server, client, received: async () => { await ended; return Buffer.concat(chunks); } };
}

t.test('requests about a VM vmm does not run are answered ERR_VM_NOT_RUNNING', async (t) => {
  const { vmm, sent } = vmmCollecting();
  await vmmDispatchParent(vmm, { type: 'vm.stop', req: 1, vmId: 9, force: false }, undefined);
  await vmmDispatchParent(vmm, { type: 'vm.pause', req: 2, vmId: 9 }, undefined);
  await vmmDispatchParent(vmm, { type: 'vm.unpause', req: 3, vmId: 9 }, undefined);
  t.same(sent, [1, 2, 3].map((req) => ({ type: 'vm.result', req, error: { code: 'ERR_VM_NOT_RUNNING', message: 'vm 9: not running' } })));
});

t.test('vmm.config sets the graceful stop timeout; vm.forget of an unknown VM says nothing', async (t) => {
  const { vmm, sent } = vmmCollecting();
  await vmmDispatchParent(vmm, { type: 'vmm.config', verbose: 0, stopTimeoutMs: 1234, metrics: null }, undefined);
  t.equal(vmm.stopTimeoutMs, 1234);
  await vmmDispatchParent(vmm, { type: 'vm.forget', vmId: 5 }, undefined);
  t.same(sent, []);
});

t.test('a send without its connection is an internal error; one for a stopped VM tells the client too', async (t) => {
  const { vmm, sent } = vmmCollecting();
  const response = { type: 'vm.send.response' as const, id: 44, vmId: 9, name: 'web' };
  await vmmDispatchParent(vmm, { type: 'vm.send', req: 7, vmId: 9, response: response as never, header: '' }, undefined);
  t.same(sent, [{ type: 'vm.result', req: 7, error: { code: 'ERR_INTERNAL', message: 'vm 9: vm.send: no connection' } }]);
  const { server, received } = await socketPair(t);
  await vmmDispatchParent(vmm, { type: 'vm.send', req: 8, vmId: 9, response: response as never, header: '' }, server);
  const error = { code: 'ERR_VM_NOT_RUNNING', message: 'vm 9: not running' };
  t.same(sent[1], { type: 'vm.result', req: 8, error });
  t.same(await received(), encodeFrame({ type: 'error', id: 44, error }), 'the client gets the error under its request id');
});

t.test('a receive connection is kept until the parent sends its last reply', async (t) => {
  const { vmm, sent } = vmmCollecting();
  const { server, received } = await socketPair(t);
  await vmmDispatchParent(vmm, { type: 'vm.receive', req: 3, vmId: 2, response: {} as never, remainder: '' }, server);
  t.same(sent, [{ type: 'vm.result', req: 3, error: { code: 'ERR_VM_NOT_RUNNING', message: 'vm 2: not running' } }]);
  t.equal(vmm.receivers.get(2), server, 'held for the parent');
  const last = { type: 'error', id: 6, error: { code: 'ERR_VM_NOT_RUNNING', message: 'vm "x": not running' } };
  await vmmDispatchParent(vmm, { type: 'vm.stream.reply', vmId: 2, response: last as never }, undefined);
  t.equal(vmm.receivers.size, 0, 'let go');
  t.same(await received(), encodeFrame(last), 'the parent\'s words, then the end');
});

t.test('a guest is finished once: removed, its waiters woken, the parent told once', async (t) => {
  const { vmm, sent } = vmmCollecting();
  const g = new Guest({ vmId: 4, name: 'web', pid: 4242, qmpSocket: '/nonexistent/q', consoleSocket: '/nonexistent/c', adopted: false });
  vmm.guests.set(4, g);
  let woken = 0;
  g.consoleWaiters.push(() => woken++);
  guestFinish(vmm, g, 'shutdown', true);
  guestFinish(vmm, g, 'killed', true);
  t.equal(vmm.guests.size, 0);
  t.equal(woken, 1);
  t.same(sent, [{ type: 'vm.exited', vmId: 4, pid: 4242, reason: 'shutdown' }]);
  const quiet = new Guest({ vmId: 5, name: 'db', pid: 4343, qmpSocket: '/nonexistent/q', consoleSocket: '/nonexistent/c', adopted: false });
  vmm.guests.set(5, quiet);
  guestFinish(vmm, quiet, 'forgotten', false);
  t.equal(sent.length, 1, 'a forgotten guest is not reported');
});
