// End to end: `display vnc` on a real guest. A VNC viewer's handshake over `vmctl display`'s port for the VM's owner,
// refused for another user (by vmd, and by the socket's permissions); the socket's owner and mode; inspect prints it.

import t from 'tap';
import { execa, type ResultPromise } from 'execa';
import { existsSync, lstatSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { vmctlEntry } from '../../share/paths.js';
import { getgrnam, getpwnam } from '../../share/users.js';
import { ensureUsers } from '../lib/users.js';
import { guestInitrd, guestKernel, VmdHarness } from '../lib/vmd-harness.js';

const vm = (name: string, extra: string): string =>
  `vm "${name}" {\n  memory 256M\n  boot "${guestKernel}"\n  initrd "${guestInitrd}"\n`
  + `  cmdline "console=ttyS0 quiet panic=-1 vmd.hostname=${name}"\n${extra}}\n`;

/** Reads exactly n bytes from a socket, or fails after ms. */
function readBytes(socket: Socket, n: number, ms = 20_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0);
    const timer = setTimeout(() => { cleanup(); reject(new Error(`timed out with ${got.length} of ${n} bytes: ${JSON.stringify(got.toString('latin1'))}`)); }, ms);
    const onData = (c: Buffer): void => {
      got = Buffer.concat([got, c]);
      if (got.length < n) return;
      cleanup();
      socket.pause();
      // Anything past n goes back for the next read.
      if (got.length > n) socket.unshift(got.subarray(n));
      resolve(got.subarray(0, n));
    };
    const onEnd = (): void => { cleanup(); reject(new Error(`closed after ${got.length} of ${n} bytes`)); };
    const cleanup = (): void => { clearTimeout(timer); socket.off('data', onData); socket.off('close', onEnd); };
    socket.on('data', onData);
    socket.once('close', onEnd);
    socket.resume();
  });
}

/** `vmctl display ARGS` as a user, in the background; resolves the port from its line on stdout. */
function display(h: VmdHarness, args: string[], who: { uid: number; gid: number }): { proc: ResultPromise; port: Promise<number> } {
  const proc = execa('/usr/bin/env', ['-i', ...Object.entries(h.env).map(([k, v]) => `${k}=${v}`), process.execPath, vmctlEntry, 'display', ...args], {
    env: h.env, extendEnv: false, reject: false, cwd: '/', stdin: 'ignore', timeout: 120_000, uid: who.uid, gid: who.gid,
  });
  let out = '';
  const port = new Promise<number>((resolve, reject) => {
    proc.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /connect with: vncviewer 127\.0\.0\.1::(\d+)\n/.exec(out);
      if (m !== null) resolve(Number(m[1]));
    });
    void proc.then((r) => reject(new Error(`vmctl display exited ${r.exitCode}: ${String(r.stderr)}`)));
  });
  return { proc, port };
}

t.test('the owner sees the guest\'s screen through vmctl display; another user does not', async (t) => {
  if (!existsSync(guestKernel)) throw new Error(`test guest missing: run share/guest/build (${guestKernel})`);
  const cleanup = await ensureUsers(['vmddsp1', 'vmddsp2'], 'vmddsp');
  t.teardown(cleanup);
  const gid = getgrnam('vmddsp')!.gid;
  const owner = { uid: getpwnam('vmddsp1')!.uid, gid };
  const other = { uid: getpwnam('vmddsp2')!.uid, gid };
  const h = await VmdHarness.start({
    config: 'socket owner root:vmddsp\n' + vm('desk', '  owner vmddsp1\n  display vnc\n') + vm('plain', '  owner vmddsp1\n'),
  });
  t.teardown(() => h.teardown());
  const id = (await h.waitState('desk', 'running', 60_000)).trim().split(/\s+/)[0]!;
  await h.waitState('plain', 'running', 60_000);
  // The table says running while the start still seals the display directory (a CI run saw it QEMU's, 0700).
  await h.waitStarted('desk', 60_000);

  const dir = join(h.stateDir, 'run', `${id}.display`);
  const sock = join(dir, 'vnc.sock');
  await t.test('the socket is the owner\'s, 0600, in a directory of root\'s', async (t) => {
    const d = lstatSync(dir);
    t.same([d.uid, d.mode & 0o7777], [0, 0o711], 'directory root 0711');
    const s = lstatSync(sock);
    t.ok(s.isSocket(), 'a socket');
    t.same([s.uid, s.mode & 0o777], [owner.uid, 0o600], 'socket owner 0600');
  });

  await t.test('another user can neither ask vmd nor open the socket', async (t) => {
    const denied = await h.vmctl(['display', 'desk'], other);
    t.equal(denied.exitCode, 1);
    // Matched by line: under tap, a non-root node child may add tap's own complaint about .tap/ on exit.
    t.match(denied.stderr, /^vmctl: display: vm "desk": permission denied$/m);
    const direct = await execa(process.execPath, ['-e',
      `require('net').connect(${JSON.stringify(sock)}).on('connect', () => { console.log('connected'); process.exit(0); }).on('error', (e) => { console.log(e.code); process.exit(0); })`,
    ], { uid: other.uid, gid: other.gid, reject: false, extendEnv: false, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
    t.equal(String(direct.stdout).trim(), 'EACCES', 'connect(2) on the socket is refused');
  });

  await t.test('a VM without display says so', async (t) => {
    const r = await h.vmctl(['display', 'plain'], owner);
    t.equal(r.exitCode, 1);
    t.match(r.stderr, /^vmctl: display: vm "plain": display: the vm has no display$/m);
    t.match(r.stderr, /^vmctl: hint: add "display vnc"/m);
  });

  await t.test('the owner\'s viewer: RFB 3.8 greeting, no-auth, and a VGA screen', async (t) => {
    const d = display(h, ['desk'], owner);
    t.teardown(() => { d.proc.kill('SIGKILL'); });
    const port = await d.port;
    const viewer = connect({ host: '127.0.0.1', port });
    t.teardown(() => viewer.destroy());
    t.equal((await readBytes(viewer, 12)).toString('latin1'), 'RFB 003.008\n', 'the server\'s protocol version');
    viewer.write('RFB 003.008\n');
    const types = await readBytes(viewer, 2);
    t.same([...types], [1, 1], 'one security type: None (the socket is the access control)');
    viewer.write(Buffer.from([1]));
    t.same([...(await readBytes(viewer, 4))], [0, 0, 0, 0], 'security result: OK');
    viewer.write(Buffer.from([1]));
    const init = await readBytes(viewer, 4);
    const [w, hgt] = [init.readUInt16BE(0), init.readUInt16BE(2)];
    t.ok(w >= 320 && hgt >= 200, `a framebuffer of a VGA card: ${w}x${hgt}`);
    viewer.destroy();

    // A second viewer on the same port gets its own relay.
    const again = connect({ host: '127.0.0.1', port });
    t.teardown(() => again.destroy());
    t.equal((await readBytes(again, 12)).toString('latin1'), 'RFB 003.008\n', 'a second viewer');
    again.destroy();
    d.proc.kill('SIGTERM');
    t.equal((await d.proc).exitCode, 0, 'vmctl display ends on SIGTERM');
  });

  await t.test('inspect prints it; stopping the VM removes the socket', async (t) => {
    const text = await h.vmctl(['inspect', 'desk'], owner);
    t.match(text.stdout, /\n\tdisplay vnc\n/);
    t.equal((await h.vmctl(['stop', '-f', '-w', 'desk'])).exitCode, 0);
    t.notOk(existsSync(dir), 'display directory gone');
    const r = await h.vmctl(['display', 'desk'], owner);
    t.match(r.stderr, /^vmctl: display: vm "desk": not running$/m);
  });
  await h.vmctl(['stop', '-f', '-w', 'plain']);

  await t.test('vmctl start --display vnc: root\'s command-line VM, root\'s viewer', async (t) => {
    const started = await h.vmctl(['start', '-b', guestKernel, '--initrd', guestInitrd, '-m', '256M', '--display', 'vnc', 'cli']);
    t.equal(started.exitCode, 0, started.stderr);
    await h.waitState('cli', 'running', 60_000);
    const d = display(h, ['cli'], { uid: 0, gid: 0 });
    t.teardown(() => { d.proc.kill('SIGKILL'); });
    const viewer = connect({ host: '127.0.0.1', port: await d.port });
    t.teardown(() => viewer.destroy());
    t.equal((await readBytes(viewer, 12)).toString('latin1'), 'RFB 003.008\n');
    viewer.destroy();
    d.proc.kill('SIGTERM');
    await d.proc;
    t.equal((await h.vmctl(['stop', '-f', '-w', 'cli'])).exitCode, 0);
  });
});
