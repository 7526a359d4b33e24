// End-to-end test of the test guest itself: boots the real build/guest with QEMU TCG (no vmd) and checks
// the console markers, a shell round trip, DHCP + httpd through a user-mode host forward, vmd.ip=, probe hook, ACPI power-off.
import t from 'tap';
import { execFile, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import {
  ADDRESS_RE, INIT_MARKER, LEASE_RE, READY_MARKER,
  guestBuildScript, guestCmdline, guestDir, guestFiles,
} from '../../share/guest/guest.js';
import { DirectGuest, freePort } from '../lib/qemu-direct.js';

const BOOT_TIMEOUT = 60_000;

function httpGet(port: number, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = get({ host: '127.0.0.1', port, path: '/', timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('http timeout')));
    req.on('error', reject);
  });
}

async function httpGetRetry(port: number, attempts: number): Promise<{ status: number; body: string }> {
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      return await httpGet(port, 5_000);
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 300));
    }
  }
  throw last;
}

// An initrd with a second cpio archive appended that adds /probe.sh (HOST-FACTS §1).
function initrdWithProbe(base: string, dir: string, script: string): string {
  const src = join(dir, 'probe');
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, 'probe.sh'), script);
  chmodSync(join(src, 'probe.sh'), 0o755);
  const cpio = spawnSync('cpio', ['-o', '-H', 'newc', '-R', '0:0', '--quiet'], { cwd: src, input: 'probe.sh\n' });
  if (cpio.status !== 0) throw new Error(`cpio failed: ${cpio.stderr}`);
  const out = join(dir, 'initrd-probe.img');
  writeFileSync(out, Buffer.concat([readFileSync(base), gzipSync(cpio.stdout)]));
  return out;
}

const qemu = spawnSync('qemu-system-x86_64', ['--version'], { encoding: 'utf8' });
if (qemu.status !== 0) {
  t.plan(0, 'qemu-system-x86_64 is not installed');
} else {
  const files = guestFiles(guestDir());

  t.before(async () => {
    // Idempotent: a fast stamp check when the guest is already built.
    await new Promise<void>((resolve, reject) => {
      execFile(guestBuildScript, [guestDir()], { timeout: 300_000 }, (err, _stdout, stderr) =>
        err ? reject(new Error(`share/guest/build failed: ${stderr}`)) : resolve());
    });
  });

  t.test('q35 + bzImage: ready, console shell, DHCP lease, httpd via host forward, ACPI power-off', async (t) => {
    const port = await freePort();
    const g = await DirectGuest.boot({
      kernel: files.kernel,
      initrd: files.initrd,
      machine: 'q35',
      append: guestCmdline({ hostname: 'guest-one' }),
      args: [
        '-netdev', `user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:${port}-:80`,
        '-device', 'virtio-net-pci,netdev=n0,romfile=',
      ],
    });
    t.teardown(() => g.destroy());

    await g.waitFor(INIT_MARKER, BOOT_TIMEOUT);
    await g.waitFor(READY_MARKER, BOOT_TIMEOUT);
    t.comment(`${READY_MARKER} after ${Date.now() - g.spawnedAt} ms`);

    const lease = await g.waitFor(LEASE_RE, 30_000);
    t.same(lease.slice(1), ['eth0', '10.0.2.15', '24'], 'vmd-guest: lease eth0 10.0.2.15/24');

    const out = await g.run('echo hello-$((6*7))');
    t.match(out, /(^|\n)hello-42\r?\n/, 'shell round trip over the serial console');

    const res = await httpGetRetry(port, 10);
    t.equal(res.status, 200);
    t.equal(res.body, 'guest-one\n', 'httpd serves the hostname from vmd.hostname=');

    t.match(await g.run('hostname'), /(^|\n)guest-one\r?\n/);

    const started = Date.now();
    await g.qmp('system_powerdown');
    const exit = await g.waitExit(20_000);
    t.ok(exit, `QEMU exits by itself after system_powerdown (${Date.now() - started} ms)`);
    t.equal(exit?.code, 0, 'exit status 0');
    t.ok(g.events.some((e) => e.event === 'SHUTDOWN' && (e.data as { guest?: boolean })?.guest === true),
      'SHUTDOWN event came from the guest');
  });

  t.test('pc + PVH vmlinux: vmd.ip= static address, no DHCP on it, probe hook, shell restarts', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'vmd-guest-test-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const initrd = initrdWithProbe(files.initrd, dir, '#!/bin/sh\necho "vmd-probe: ran on $(hostname)"\n');
    const g = await DirectGuest.boot({
      kernel: files.vmlinux,
      initrd,
      machine: 'pc',
      append: guestCmdline({ hostname: 'guest-two', ips: [{ iface: 'eth0', cidr: '10.9.9.9/24', gateway: '10.9.9.1' }] }),
      args: ['-netdev', 'user,id=n0,restrict=on', '-device', 'virtio-net-pci,netdev=n0,romfile='],
    });
    t.teardown(() => g.destroy());

    const addr = await g.waitFor(ADDRESS_RE, BOOT_TIMEOUT);
    t.same(addr.slice(1), ['eth0', '10.9.9.9', '24'], 'vmd-guest: address eth0 10.9.9.9/24');
    await g.waitFor(READY_MARKER, BOOT_TIMEOUT);
    t.comment(`${READY_MARKER} after ${Date.now() - g.spawnedAt} ms`);
    await g.waitFor('vmd-probe: ran on guest-two', 10_000);

    const ip = await g.run('ip addr show dev eth0; ip route');
    t.match(ip, /inet 10\.9\.9\.9\/24 /, 'ip addr shows the vmd.ip= address');
    t.match(ip, /default via 10\.9\.9\.1 dev eth0/, 'default route via the vmd.ip= gateway');
    t.match(await g.run('pidof udhcpc || echo no-$((1))-dhcp'), /no-1-dhcp/, 'no DHCP client on a static NIC');
    t.notMatch(g.console, LEASE_RE, 'no lease line');

    // Leaving the shell starts a new one instead of panicking the kernel (PID 1 would exit).
    const from = g.console.length;
    g.write('exit\n');
    await g.waitFor('built-in shell', 10_000, from);
    t.match(await g.run('echo again-$((1+1))'), /(^|\n)again-2\r?\n/, 'shell restarted after exit');
    t.ok(g.running, 'QEMU still running');
  });
}
