// Tests for vmd/native: peer credentials from the kernel for real clients of other uids, and taps on an fd.
// Taps are only ever made inside a network namespace this test creates and removes.

import t, { type Test } from 'tap';
import { once } from 'node:events';
import { chmodSync, closeSync, constants as fsc, fstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { closeFd, openAs, peerCred, tunOpen } from '../../vmd/native.js';
import { packageRoot } from '../../share/paths.js';
import { getgrgid, getpwuid } from '../../share/users.js';

const nativeModule = pathToFileURL(join(packageRoot, 'dist', 'vmd', 'native.js')).href;
const isRoot = process.getuid?.() === 0;

// A unix socket anyone may connect to, in a directory uid 65534 can reach.
async function listenForClients(t: Test): Promise<{ path: string; accepted: () => Promise<Socket> }> {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-native-'));
  chmodSync(dir, 0o755);
  const path = join(dir, 'control.sock');
  const server = createServer();
  server.listen(path);
  await once(server, 'listening');
  chmodSync(path, 0o777);
  t.teardown(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { path, accepted: async () => ((await once(server, 'connection')) as [Socket])[0] };
}

// A client process that connects, then waits for the server to hang up, so its pid is still live when checked.
const clientScript = `
  const s = require('node:net').connect(process.argv[1]);
  s.on('connect', () => s.write(JSON.stringify({ uid: process.getuid(), gid: process.getgid(), pid: process.pid })));
  s.on('data', () => {});
  s.on('error', (e) => { console.error(e.message); process.exit(2); });
`;

t.test('peerCred reports the uid the kernel saw, for root and for nobody', { skip: !isRoot && 'needs root' }, async (t) => {
  const { path, accepted } = await listenForClients(t);
  for (const id of [0, 65534]) {
    const connection = accepted();
    // Both uid and gid: uid alone would leave the child's gid at 0 (HOST-FACTS §8).
    const child = execa(process.execPath, ['-e', clientScript, path], { uid: id, gid: id, reject: false });
    const socket = await connection;
    const [said] = (await once(socket, 'data')) as [Buffer];
    const cred = peerCred(socket);
    t.same(cred, { pid: child.pid, uid: id, gid: id }, `client running as ${id}`);
    t.same(JSON.parse(said.toString()), cred, 'what the client says about itself agrees');
    socket.end();
    const result = await child;
    t.equal(result.exitCode, 0, result.stderr);
  }
});

t.test('peerCred from the connecting side names the listener', async (t) => {
  const { path, accepted } = await listenForClients(t);
  const connection = accepted();
  const client = connect(path);
  await once(client, 'connect');
  const server = await connection;
  t.same(peerCred(client), { pid: process.pid, uid: process.getuid?.(), gid: process.getgid?.() });
  client.destroy();
  server.destroy();
  t.throws(() => peerCred(client), { code: 'EBADF' }, 'a closed socket has no peer');
});

t.test('peerCred refuses sockets that are not unix sockets', async (t) => {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const client = connect(address.port, '127.0.0.1');
  await once(client, 'connect');
  const [peer] = await accepted;
  // Over TCP the kernel would answer uid -1, which must never be read as a uid.
  t.throws(() => peerCred(client), { code: 'EAFNOSUPPORT', syscall: 'getsockopt' });
  client.destroy();
  peer.destroy();
  server.close();
});

t.test('argument checks happen before any system call', async (t) => {
  t.throws(() => tunOpen('x'.repeat(16), { vnetHdr: true }), { code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => tunOpen('a\u0000b', { vnetHdr: true }), { code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => tunOpen('x', { vnetHdr: 1 as unknown as boolean }), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => tunOpen('x', { vnetHdr: true, owner: -1 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => tunOpen('x', { vnetHdr: true, group: 2 ** 32 - 1 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => tunOpen('x', { vnetHdr: true, owner: 1.5 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => closeFd(2), { code: 'ERR_OUT_OF_RANGE' }, 'stdio is never closed by mistake');
  t.throws(() => closeFd(0x7ffffff0), { code: 'EBADF', syscall: 'close', errno: -9 });
});

// Runs an ES module in the namespace: the addon acts on the calling process's netns, so the caller must be inside.
async function inNetns(netns: string, source: string): Promise<Record<string, unknown>> {
  const result = await execa('ip', ['netns', 'exec', netns, process.execPath, '--input-type=module', '-e', source], {
    reject: false,
  });
  if (result.exitCode !== 0) throw new Error(`netns child failed (${result.exitCode}): ${result.stderr}`);
  return JSON.parse(result.stdout) as Record<string, unknown>;
}

interface IpLink {
  ifname: string;
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> };
}

async function links(netns: string): Promise<IpLink[]> {
  const { stdout } = await execa('ip', ['-n', netns, '-j', '-d', 'link', 'show']);
  return JSON.parse(stdout) as IpLink[];
}

t.test('tunOpen inside a test network namespace', { skip: !isRoot && 'needs root' }, async (t) => {
  const netns = `vmdtest-native-${process.pid}`;
  await execa('ip', ['netns', 'add', netns]);
  t.teardown(async () => {
    await execa('ip', ['netns', 'del', netns], { reject: false });
  });

  await t.test('a persistent tap owned by nobody, with vnet headers', async (t) => {
    const out = await inNetns(netns, `
      import { tunOpen, closeFd } from ${JSON.stringify(nativeModule)};
      const tap = tunOpen('vmdt0', { vnetHdr: true, persist: true, owner: 65534, group: 65534 });
      closeFd(tap.fd);
      console.log(JSON.stringify(tap));
    `);
    t.equal(out.name, 'vmdt0');
    t.ok(Number.isInteger(out.fd) && (out.fd as number) > 2);
    const tap = (await links(netns)).find((l) => l.ifname === 'vmdt0');
    t.ok(tap, 'the tap outlives its fd');
    t.equal(tap?.linkinfo?.info_kind, 'tun');
    // ip(8) names uid and gid 65534 as the host's passwd and group files do (Debian: nobody and nogroup).
    const user = getpwuid(65534)?.name ?? '65534';
    const group = getgrgid(65534)?.name ?? '65534';
    t.match(tap?.linkinfo?.info_data, { type: 'tap', pi: false, vnet_hdr: true, persist: true, user, group });

    // Attaching again to the existing tap works and persist:false lets it go with the last fd.
    const again = await inNetns(netns, `
      import { tunOpen, closeFd } from ${JSON.stringify(nativeModule)};
      const tap = tunOpen('vmdt0', { vnetHdr: true, persist: false });
      closeFd(tap.fd);
      console.log(JSON.stringify(tap));
    `);
    t.equal(again.name, 'vmdt0');
    t.notOk((await links(netns)).some((l) => l.ifname === 'vmdt0'), 'gone once unpersisted and closed');
  });

  await t.test('a kernel-named tap lives exactly as long as its fd, which a child inherits', async (t) => {
    const out = await inNetns(netns, `
      import { tunOpen, closeFd } from ${JSON.stringify(nativeModule)};
      import { spawnSync } from 'node:child_process';
      const tap = tunOpen('', { vnetHdr: false });
      const show = () => spawnSync('ip', ['-j', '-d', 'link', 'show'], { encoding: 'utf8' }).stdout;
      const whileOpen = JSON.parse(show()).find((l) => l.ifname === tap.name);
      // As QEMU will get it: through spawn's stdio array, as fd 3 of a process running as nobody.
      const child = spawnSync('cat', ['/proc/self/fdinfo/3'], {
        uid: 65534, gid: 65534, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe', tap.fd],
      });
      closeFd(tap.fd);
      const afterClose = JSON.parse(show()).some((l) => l.ifname === tap.name);
      console.log(JSON.stringify({ name: tap.name, whileOpen, fdinfo: child.stdout, afterClose }));
    `);
    t.match(out.name, /^tap\d+$/, 'the kernel picked the name');
    t.match(out.whileOpen, { linkinfo: { info_data: { type: 'tap', vnet_hdr: false, persist: false } } });
    t.match(out.fdinfo, new RegExp(`iff:\\s+${out.name as string}\\n`), 'the inherited fd 3 is attached to the tap');
    t.equal(out.afterClose, false, 'closing the only fd removes a non-persistent tap');
  });

  await t.test('kernel errors come back with their code', async (t) => {
    const out = await inNetns(netns, `
      import { tunOpen } from ${JSON.stringify(nativeModule)};
      const codes = {};
      for (const name of ['bad/name', 'bad name', '.', '..']) {
        try { tunOpen(name, { vnetHdr: true }); codes[name] = 'opened'; }
        catch (e) { codes[name] = { code: e.code, errno: e.errno, syscall: e.syscall, message: e.message }; }
      }
      console.log(JSON.stringify(codes));
    `);
    t.match(out['bad/name'], { code: 'EINVAL', errno: -22, syscall: 'ioctl', message: /^EINVAL: .*TUNSETIFF/ });
    t.match(out['bad name'], { code: 'EINVAL' });
    t.match(out['.'], { code: 'EINVAL' });
    t.match(out['..'], { code: 'EINVAL' });
  });

  await t.test('without privileges tunOpen fails with the kernel\'s code', async (t) => {
    // ip netns exec itself needs root, so the child enters the namespace as root and drops to nobody first.
    const out = await inNetns(netns, `
      import { tunOpen } from ${JSON.stringify(nativeModule)};
      process.setgroups([]); process.setgid(65534); process.setuid(65534);
      try { tunOpen('vmdt9', { vnetHdr: true }); console.log('"opened"'); }
      catch (e) { console.log(JSON.stringify({ code: e.code, syscall: e.syscall, message: e.message })); }
    `);
    // /dev/net/tun is 0600 on these hosts (EACCES at open); where it is 0666, TUNSETIFF refuses with EPERM.
    t.match(out, { code: /^(EACCES|EPERM)$/ });
  });

  await t.test('the host namespace was never touched', async (t) => {
    const { stdout } = await execa('ip', ['-j', 'link', 'show']);
    const names = (JSON.parse(stdout) as IpLink[]).map((l) => l.ifname);
    t.notOk(names.includes('vmdt0'));
    t.notOk(names.includes('vmdt9'));
  });
});

// Uid/Gid (real, effective, saved, fs), Groups and capabilities of every thread of pid, by thread id.
function threadCreds(pid: number | string): Map<string, string> {
  const out = new Map<string, string>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      out.set(tid, status.split('\n').filter((l) => /^(Uid|Gid|Groups|CapEff|CapPrm):/.test(l)).join('\n'));
    } catch { /* thread gone */ }
  }
  return out;
}

t.test('openAs opens with the given credentials and puts the thread back', { skip: !isRoot && 'needs root' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-openas-'));
  chmodSync(dir, 0o755);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const secret = join(dir, 'secret');
  writeFileSync(secret, 'x', { mode: 0o600 });
  const open = join(dir, 'open');
  writeFileSync(open, 'x', { mode: 0o644 });
  const grouped = join(dir, 'grouped');
  writeFileSync(grouped, 'x', { mode: 0o640 });
  const { chownSync } = await import('node:fs');
  chownSync(grouped, 0, 4242);
  mkdirSync(join(dir, 'closed'), { mode: 0o700 });
  writeFileSync(join(dir, 'closed', 'file'), 'x', { mode: 0o666 });
  const nobody = { uid: 65534, gid: 65534, groups: [] };
  const before = threadCreds('self');

  t.throws(() => openAs(secret, fsc.O_RDONLY, nobody), { code: 'EACCES', syscall: 'open', message: /EACCES: Permission denied, open '.*secret'/ });
  t.throws(() => openAs(join(dir, 'closed', 'file'), fsc.O_RDONLY, nobody), { code: 'EACCES' }, 'directory search permission counts');
  t.throws(() => openAs(open, fsc.O_RDWR, nobody), { code: 'EACCES' }, 'write permission counts');
  t.throws(() => openAs(grouped, fsc.O_RDONLY, nobody), { code: 'EACCES' });
  const viaGroup = openAs(grouped, fsc.O_RDONLY, { ...nobody, groups: [4242] });
  t.ok(fstatSync(viaGroup).isFile(), 'a supplementary group grants what its mode bits say');
  closeSync(viaGroup);
  const fd = openAs(secret, fsc.O_RDWR, { uid: 0, gid: 0, groups: [] });
  t.equal(readFileSync(fd, 'utf8'), 'x', 'as root, root\'s rights');
  closeSync(fd);
  t.same(threadCreds('self'), before, 'every thread has the credentials and capabilities it had');
});

t.test('openAs changes only the calling thread, and only while it opens', { skip: !isRoot && 'needs root' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-openas-'));
  chmodSync(dir, 0o755);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const fifo = join(dir, 'fifo');
  await execa('mkfifo', ['-m', '0666', fifo]);
  // The child blocks in open(2) of the FIFO (no O_NONBLOCK) with nobody's credentials, so they can be looked at.
  const child = execa(process.execPath, ['--input-type=module', '-e', `
    import { openAs } from ${JSON.stringify(nativeModule)};
    import { readFileSync } from 'node:fs';
    const creds = () => readFileSync('/proc/thread-self/status', 'utf8').split('\\n').filter((l) => /^(Uid|Gid|Groups|Cap...):/.test(l));
    const before = creds();
    const fd = openAs(process.argv[1], 0, { uid: 65534, gid: 65534, groups: [4242, 4243] });
    console.log(JSON.stringify({ fd, before, after: creds() }));
  `, fifo], { reject: false });
  t.teardown(() => { child.kill('SIGKILL'); });
  const pid = String(child.pid);
  let during = new Map<string, string>();
  for (let i = 0; i < 200; i++) {
    during = threadCreds(pid);
    if ((during.get(pid) ?? '').includes('\t65534\n')) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  t.match(during.get(pid), /^Uid:\t0\t0\t0\t65534\nGid:\t0\t0\t0\t65534\nGroups:\t4242 4243 \n/, 'the opening thread: fsuid and fsgid of nobody, its groups');
  t.notMatch(during.get(pid), /CapEff:\t\w*[13579bdf]\w\n/, 'and no CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH (bits 1, 2) in effect');
  const others = [...during.entries()].filter(([tid]) => tid !== pid);
  t.ok(others.length >= 2, `node's other threads are there (${others.length})`);
  for (const [tid, creds] of others) t.match(creds, /^Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n/, `thread ${tid} keeps root`);
  closeSync(openSync(fifo, fsc.O_WRONLY));
  const r = await child;
  t.equal(r.exitCode, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { fd: number; before: string[]; after: string[] };
  t.ok(out.fd > 2);
  t.equal(out.before[0], 'Uid:\t0\t0\t0\t0');
  t.same(out.after, out.before, 'ids, groups and capabilities restored after the open');
});

t.test('openAs refuses bad arguments before any system call', async (t) => {
  const nobody = { uid: 65534, gid: 65534, groups: [] };
  t.throws(() => openAs('/x', fsc.O_RDWR | fsc.O_CREAT, nobody), { code: 'ERR_INVALID_ARG_VALUE' }, 'it never creates files');
  t.throws(() => openAs('/x', fsc.O_RDWR | fsc.O_TRUNC, nobody), { code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => openAs('a\u0000b', 0, nobody), { code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => openAs('', 0, nobody), { code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => openAs('/x', 0, { ...nobody, uid: -1 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => openAs('/x', 0, { ...nobody, gid: 2 ** 32 - 1 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => openAs('/x', 0, { ...nobody, groups: 'a' as unknown as number[] }), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => openAs('/x', 0, { ...nobody, groups: [1.5] }), { code: 'ERR_OUT_OF_RANGE' });
});

t.test('openAs without CAP_SETUID/CAP_SETGID fails with EPERM and leaves the caller as it was', { skip: !isRoot && 'needs root to drop' }, async (t) => {
  const r = await execa(process.execPath, ['--input-type=module', '-e', `
    import { openAs } from ${JSON.stringify(nativeModule)};
    process.setgroups([]); process.setgid(65534); process.setuid(65534);
    try { openAs('/etc/passwd', 0, { uid: 0, gid: 0, groups: [] }); console.log('opened'); } catch (e) { console.log(e.code, e.syscall); }
    console.log(process.getuid(), process.getgid(), JSON.stringify(process.getgroups()));
  `], { reject: false });
  t.equal(r.stdout, 'EPERM setfsuid\n65534 65534 [65534]', 'an unprivileged process cannot take other credentials');
});
