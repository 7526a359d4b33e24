// End to end: a rootless vmd (an ordinary user, its own namespace) gives its guests passt instead of QEMU's
// slirp when passt is installed: the passt runs as that user, the guest gets 10.0.2.15, and a forward works.

import t from 'tap';
import { execa } from 'execa';
import { chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { vmctlEntry, vmdEntry } from '../../share/paths.js';
import { guestInitrd, guestKernel } from '../lib/vmd-harness.js';

const NOBODY = 65534;

t.test('rootless: passt carries the guest, a forward works, links shows it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-passt-rootless-'));
  chmodSync(dir, 0o755);
  chownSync(dir, NOBODY, NOBODY);
  const netns = `vmdpr-${process.pid}`;
  // Registered first: a failure while the namespace is being built must not leave it behind.
  let stopDaemon = async (): Promise<void> => {};
  t.teardown(async () => {
    await stopDaemon();
    await execa('ip', ['netns', 'del', netns], { reject: false });
    rmSync(dir, { recursive: true, force: true });
  });
  await execa('ip', ['netns', 'add', netns]);
  await execa('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
  // passt takes its addresses from the interface of the default route: give the namespace one.
  await execa('ip', ['-n', netns, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up0p']);
  await execa('ip', ['-n', netns, 'link', 'set', 'up0p', 'up']);
  await execa('ip', ['-n', netns, 'address', 'add', '10.97.0.5/24', 'dev', 'up0']);
  await execa('ip', ['-n', netns, 'link', 'set', 'up0', 'up']);
  await execa('ip', ['-n', netns, 'route', 'add', 'default', 'via', '10.97.0.1']);
  const conf = join(dir, 'vm.conf');
  writeFileSync(conf, `vm "u" {\n  memory 256M\n  boot "${guestKernel}"\n  initrd "${guestInitrd}"\n`
    + '  cmdline "console=ttyS0 quiet panic=-1 vmd.hostname=u"\n  interface { forward tcp 8090 to 80 }\n}\n');
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', VMD_SOCKET: join(dir, 'vmd.sock'), VMD_STATE_DIR: join(dir, 'state') };
  const inNs = (cmd: string[]) => ['netns', 'exec', netns, 'setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '/usr/bin/env', '-i',
    ...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...cmd];
  const daemon = execa('ip', inNs([vmdEntry, '-d', '-f', conf]), { reject: false, all: true, cwd: dir });
  let log = '';
  daemon.all?.on('data', (c: Buffer) => { log += c.toString(); });
  stopDaemon = async () => {
    daemon.kill('SIGTERM');
    await daemon.catch(() => undefined);
    for (const line of (await execa('ps', ['-eo', 'pid,args'])).stdout.split('\n')) {
      if (line.includes(dir) && !line.includes('tap')) { try { process.kill(Number(line.trim().split(/\s+/)[0]), 'SIGKILL'); } catch { /* gone */ } }
    }
  };
  const vmctl = async (args: string[], input?: string): Promise<string> =>
    String((await execa('ip', inNs([process.execPath, vmctlEntry, ...args]), { reject: false, ...(input === undefined ? { stdin: 'ignore' as const } : { input }) })).stdout);

  let body = '';
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline && body !== 'u') {
    const r = await execa('ip', ['netns', 'exec', netns, process.execPath, '-e',
      "fetch('http://127.0.0.1:8090/', { signal: AbortSignal.timeout(2000) }).then((r) => r.text()).then(console.log, () => {})"], { reject: false });
    body = String(r.stdout).trim();
    if (body !== 'u') await new Promise((r) => setTimeout(r, 500));
  }
  t.equal(body, 'u', 'the guest answers on 127.0.0.1:8090 through its forward');
  const ps = await execa('ps', ['-eo', 'user:12,args']);
  const passt = ps.stdout.split('\n').filter((l) => /\bpasst(\.avx2)? /.test(l) && l.includes(dir));
  t.equal(passt.length, 1, 'one passt serves the guest', { log });
  t.match(passt[0] ?? '', /^nobody\s/, 'running as the rootless user');
  t.notOk(ps.stdout.split('\n').some((l) => l.includes(dir) && l.includes('qemu') && l.includes('-netdev user')), 'no slirp NIC');
  const lease = await vmctl(['console', '-t', '2', 'u'], '\n');
  t.match(lease, /vmd-guest: lease eth0 10\.0\.2\.15\/24/, 'qemu-style address');
  t.match(await vmctl(['links']), /u\s+0\s+passt\/\d+\s+\S+\s+\(passt\)\s+10\.0\.2\.15\/24\s+tcp 8090>80/, 'links shows the passt NIC');
});
