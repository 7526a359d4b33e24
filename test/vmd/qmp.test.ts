// Tests for vmd/qmp: against a real QEMU 7.2 (status, stop/cont events, errors, quit) and against a scripted
// fake server for what QEMU will not do on demand (split chunks, oversized lines, silence, late sockets).
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VmdError } from '../../share/errors.js';
import { QmpClient, QmpError, type QmpEvent } from '../../vmd/qmp.js';

const dir = mkdtempSync(join(tmpdir(), 'vmd-qmp-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let seq = 0;
const sockPath = () => join(dir, `s${++seq}.sock`);

/** A real QEMU, paused, with nothing but a QMP socket; killed at teardown. */
function startQemu(t: Test, path: string) {
  const child = spawn('qemu-system-x86_64', [
    '-accel', 'tcg', '-nodefaults', '-no-user-config', '-display', 'none', '-S', '-m', '32',
    '-qmp', `unix:${path},server=on,wait=off`,
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { child, exited };
}

function nextEvent(qmp: QmpClient, name: string): Promise<QmpEvent> {
  return new Promise((resolve) => qmp.once(name, resolve));
}

t.test('real qemu: greeting, status, stop/cont events, errors, quit', async (t) => {
  const path = sockPath();
  // Connect right after spawn: the socket does not exist yet, the client retries.
  const { exited } = startQemu(t, path);
  const qmp = await QmpClient.connect(path, { timeoutMs: 5000 });
  t.teardown(() => qmp.destroy());
  t.equal(qmp.greeting.version.qemu.major, 7, 'greeting read');

  t.same(await qmp.execute('query-status'), { status: 'prelaunch', singlestep: false, running: false });

  const events: string[] = [];
  qmp.on('event', (name: string, data: unknown, ev: QmpEvent) => {
    events.push(name);
    t.type(data, 'object');
    t.equal(ev.event, name);
  });
  const resumed = nextEvent(qmp, 'RESUME');
  await qmp.execute('cont');
  t.ok((await resumed).timestamp, 'RESUME with a timestamp');
  t.match(await qmp.execute('query-status'), { status: 'running', running: true });
  const stopped = nextEvent(qmp, 'STOP');
  await qmp.execute('stop');
  await stopped;
  t.match(await qmp.execute('query-status'), { status: 'paused', running: false });
  t.same(events, ['RESUME', 'STOP'], 'events in order');

  // Concurrent commands are matched to their replies by id.
  const [name, kvm, status] = await Promise.all([
    qmp.execute('query-name'), qmp.execute('query-kvm'), qmp.execute('query-status'),
  ]);
  t.same(name, {});
  t.match(kvm, { enabled: false });
  t.match(status, { status: 'paused' });

  const err = await qmp.execute('no-such-command').catch((e: unknown) => e);
  t.ok(err instanceof QmpError && err instanceof VmdError, 'error reply rejects with a QmpError');
  t.equal((err as QmpError).code, 'ERR_QEMU');
  t.equal((err as QmpError).qmpClass, 'CommandNotFound');
  t.match((err as QmpError).message, /^qmp no-such-command: The command no-such-command has not been found/);
  const bad = await qmp.execute('migrate', { uri: 'file:/tmp/x' }).catch((e: unknown) => e);
  t.match((bad as Error).message, /expects a valid migration protocol/, "QMP's desc is carried");

  const closed = new Promise<Error | null>((resolve) => qmp.once('close', resolve));
  const shutdown = nextEvent(qmp, 'SHUTDOWN');
  t.same(await qmp.execute('quit'), {}, 'quit resolves even though QEMU resets the socket');
  t.same((await shutdown).data, { guest: false, reason: 'host-qmp-quit' });
  t.equal(await closed, null, 'close without an error');
  t.ok(qmp.closed);
  t.equal(await exited, 0);
  await t.rejects(qmp.execute('query-status'), { code: 'ERR_QEMU', message: /connection closed/ });
});

t.test('real qemu: QEMU killed under a pending command', async (t) => {
  const path = sockPath();
  const { child } = startQemu(t, path);
  const qmp = await QmpClient.connect(path);
  const closed = new Promise<Error | null>((resolve) => qmp.once('close', resolve));
  // query-qmp-schema is large; kill QEMU while it is being answered or right before.
  const pending = qmp.execute('query-qmp-schema').then(() => 'answered', (e: VmdError) => e.code);
  child.kill('SIGKILL');
  t.match(await pending, /^(answered|ERR_QEMU)$/, 'the pending command settles');
  await closed;
  t.ok(qmp.closed, 'close emitted, no unhandled error');
});

/** A scripted stand-in for QEMU: greeting, then `onCommand` decides what to send for each request. */
async function fakeServer(t: Test, path: string, onCommand: (sock: Socket, msg: { execute: string; id: number }) => void, greeting = true): Promise<Server> {
  const server = createServer((sock) => {
    sock.on('error', () => undefined);
    if (greeting) sock.write('{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}\r\n');
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString();
      for (let nl = buf.indexOf('\n'); nl !== -1; nl = buf.indexOf('\n')) {
        const msg = JSON.parse(buf.slice(0, nl)) as { execute: string; id: number };
        buf = buf.slice(nl + 1);
        if (msg.execute === 'qmp_capabilities') sock.write(`{"return": {}, "id": ${msg.id}}\r\n`);
        else onCommand(sock, msg);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return server;
}

t.test('replies and events split across chunks, multibyte characters split too', async (t) => {
  const path = sockPath();
  await fakeServer(t, path, (sock, msg) => {
    const text = `{"event": "RESET", "data": {"guest": true}, "timestamp": {"seconds": 1, "microseconds": 2}}\n{"return": {"name": "g\u00e9\u00e9"}, "id": ${msg.id}}\n`;
    const bytes = Buffer.from(text);
    // One byte at a time, so every boundary (including inside UTF-8 sequences) is exercised.
    let i = 0;
    const tick = () => {
      if (i < bytes.length) {
        sock.write(bytes.subarray(i, i + 1));
        i += 1;
        setImmediate(tick);
      }
    };
    tick();
  });
  const qmp = await QmpClient.connect(path);
  t.teardown(() => qmp.destroy());
  const reset = nextEvent(qmp, 'RESET');
  t.same(await qmp.execute('query-name'), { name: 'g\u00e9\u00e9' });
  t.same(await reset, { event: 'RESET', data: { guest: true }, timestamp: { seconds: 1, microseconds: 2 } });
});

t.test('a command without a reply times out; a late reply is ignored', async (t) => {
  const path = sockPath();
  const held: Array<() => void> = [];
  await fakeServer(t, path, (sock, msg) => {
    if (msg.execute === 'slow') held.push(() => sock.write(`{"return": {}, "id": ${msg.id}}\n`));
    else sock.write(`{"return": {"ok": true}, "id": ${msg.id}}\n`);
  });
  const qmp = await QmpClient.connect(path, { commandTimeoutMs: 5000 });
  t.teardown(() => qmp.destroy());
  await t.rejects(qmp.execute('slow', undefined, { timeoutMs: 50 }), { code: 'ERR_QEMU', message: 'qmp slow: no reply within 50 ms' });
  held.forEach((send) => send());
  t.same(await qmp.execute('fast'), { ok: true }, 'still usable after the late reply');
});

t.test('an oversized line closes the connection with a protocol error', async (t) => {
  const path = sockPath();
  await fakeServer(t, path, (sock) => sock.write(`{"return": "${'x'.repeat(5000)}`));
  const qmp = await QmpClient.connect(path, { maxLineBytes: 1024 });
  const closed = new Promise<Error | null>((resolve) => qmp.once('close', resolve));
  await t.rejects(qmp.execute('big'), { code: 'ERR_QEMU', message: /connection closed/ });
  t.match(await closed, { code: 'ERR_PROTOCOL', message: /line longer than 1024 bytes/ });
});

t.test('malformed json closes the connection with a protocol error', async (t) => {
  const path = sockPath();
  await fakeServer(t, path, (sock) => sock.write('{not json}\n'));
  const qmp = await QmpClient.connect(path);
  const closed = new Promise<Error | null>((resolve) => qmp.once('close', resolve));
  await t.rejects(qmp.execute('x'), { code: 'ERR_QEMU' });
  t.match(await closed, { code: 'ERR_PROTOCOL', message: 'qmp: malformed json' });
});

t.test('the peer hanging up rejects pending commands', async (t) => {
  const path = sockPath();
  await fakeServer(t, path, (sock) => sock.destroy());
  const qmp = await QmpClient.connect(path);
  await t.rejects(qmp.execute('query-status'), { code: 'ERR_QEMU', message: 'qmp query-status: connection closed' });
});

t.test('connect: retries until the socket appears, bounded otherwise', async (t) => {
  const late = sockPath();
  setTimeout(() => void fakeServer(t, late, () => undefined), 150);
  const qmp = await QmpClient.connect(late, { timeoutMs: 3000 });
  t.ok(qmp.greeting, 'connected once the socket existed');
  await qmp.close();
  t.ok(qmp.closed, 'close() ends the session');

  const started = Date.now();
  await t.rejects(QmpClient.connect(sockPath(), { timeoutMs: 200 }), { code: 'ERR_QEMU', message: /cannot connect to .*: ENOENT/ });
  t.ok(Date.now() - started < 1000, 'gave up in time');

  const silent = sockPath();
  await fakeServer(t, silent, () => undefined, false);
  await t.rejects(QmpClient.connect(silent, { timeoutMs: 200 }), { code: 'ERR_QEMU', message: 'qmp: no greeting in time' });
});

t.test('connecting stops waiting once QEMU is gone: its socket will never appear', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-qmp-alive-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const began = Date.now();
  await t.rejects(QmpClient.connect(join(dir, 'qmp.sock'), { timeoutMs: 10_000, alive: () => false }),
    { code: 'ERR_QEMU', message: /qmp: .*qmp\.sock: qemu exited before it accepted connections/ });
  t.ok(Date.now() - began < 2000, `not after the 10 s timeout (${Date.now() - began} ms)`);
});
