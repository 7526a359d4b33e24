// Tests for vmd/accel: the payload is correct (it completes under TCG), the probe is bounded, picks TCG
// on these hosts (nested KVM hangs once the guest leaves real mode), and its answer is remembered while its key holds.

import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { accelPayloadBios, commandPath, kvmDeviceUsable, probeAccelCached, probeAccelDetailed, probeKey, removeStaleProbeDirs, runAccelPayload } from '../../vmd/accel.js';

t.test('payload image: 64 KiB with a far jump at the reset vector', async (t) => {
  const bios = accelPayloadBios();
  t.equal(bios.length, 0x10000);
  t.equal(bios.subarray(0xfff0, 0xfff5).toString('hex'), 'ea000000f0');
  t.equal(bios[0], 0xfa, 'starts with cli');
});

t.test('the payload runs to completion under TCG', async (t) => {
  const result = await runAccelPayload('tcg', { timeoutMs: 3000 });
  t.ok(result.ok, result.reason);
  t.ok(result.ms < 3000);
});

t.test('a missing qemu binary or device is a failure, not a throw', async (t) => {
  const result = await runAccelPayload('tcg', { qemu: '/nonexistent/qemu' });
  t.notOk(result.ok);
  t.match(result.reason, /cannot run qemu/);
  t.match(await kvmDeviceUsable('/nonexistent/kvm'), { ok: false, reason: /ENOENT/ });
  t.match(await probeAccelDetailed({ kvmDevice: '/nonexistent/kvm' }), { accel: 'tcg', reason: /ENOENT/ });
});

t.test('probe on this host: tcg, within the bound, no QEMU left behind', async (t) => {
  const started = Date.now();
  const detailed = await probeAccelDetailed({ timeoutMs: 2500 });
  const elapsed = Date.now() - started;
  t.equal(detailed.accel, 'tcg', `chose tcg: ${detailed.reason}`);
  t.ok(elapsed <= 3000, `bounded: ${elapsed} ms`);
  t.equal(await countPayloadQemus(), 0, 'the timed-out QEMU was killed');
});

t.test('probeAccelCached: probes once, then answers from the file while the key holds', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-accel-cache-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'accel.json');
  const first = await probeAccelCached(file);
  t.match(first, { accel: 'tcg', cached: false });
  const saved = JSON.parse(readFileSync(file, 'utf8')) as { key: string; accel: string; reason: string };
  t.same({ accel: saved.accel, reason: saved.reason }, { accel: first.accel, reason: first.reason }, 'the file holds the answer');
  t.equal(saved.key, await probeKey(), 'under the current key');

  const started = Date.now();
  t.match(await probeAccelCached(file), { accel: 'tcg', reason: first.reason, cached: true });
  t.ok(Date.now() - started < 500, 'no probe the second time');

  // Another KVM device (as after reloading the modules) or another QEMU binary: the key differs, probe again.
  t.match(await probeAccelCached(file, { kvmDevice: '/nonexistent/kvm' }), { accel: 'tcg', reason: /ENOENT/, cached: false });
  t.not(await probeKey({ qemu: '/bin/true' }), await probeKey(), 'the QEMU binary is part of the key');

  // A foreign or broken file is not trusted; a QEMU that cannot run is not remembered.
  writeFileSync(file, '{"key": 1, "accel": "kvm"');
  t.match(await probeAccelCached(file, { kvmDevice: '/nonexistent/kvm' }), { cached: false });
  rmSync(file);
  t.match(await probeAccelCached(file, { qemu: '/nonexistent/qemu' }), { accel: 'tcg', reason: /cannot run qemu/, cached: false });
  t.notOk(existsSync(file), 'not written');
});

t.test('commandPath finds a command as execvp would', async (t) => {
  t.equal(await commandPath('sh', '/nonexistent:/bin'), '/bin/sh');
  t.equal(await commandPath('no-such-command-here', '/bin:/usr/bin'), null);
  t.equal(await commandPath('/opt/x/qemu'), '/opt/x/qemu', 'a path is taken as it is');
});

/** QEMUs of this process still running the payload (children of ours whose argv names the probe's BIOS). */
async function countPayloadQemus(): Promise<number> {
  const out = await new Promise<string>((resolve) => {
    const ps = spawn('ps', ['-eo', 'ppid=,args='], { stdio: ['ignore', 'pipe', 'ignore'] });
    let text = '';
    ps.stdout.on('data', (d: Buffer) => (text += d.toString()));
    ps.on('close', () => resolve(text));
  });
  return out.split('\n').filter((l) => l.trim().startsWith(`${process.pid} `) && l.includes('qemu-system') && l.includes('vmd-accel-')).length;
}

t.test('a probe directory left by a vmd killed mid-probe goes at the next probe; a live one stays', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'vmd-accel-test-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  // A pid above the kernel's pid_max cannot be alive.
  const dead = join(base, 'vmd-accel-4194305-AbC123');
  const live = join(base, `vmd-accel-${process.pid}-XyZ789`);
  const other = join(base, 'vmd-accel-notapid');
  for (const d of [dead, live, other]) mkdirSync(d);
  t.same(await removeStaleProbeDirs(base), ['vmd-accel-4194305-AbC123']);
  t.notOk(existsSync(dead), 'the dead vmd\'s directory is gone');
  t.ok(existsSync(live), 'a running vmd\'s probe is left alone');
  t.ok(existsSync(other), 'names vmd does not make are not touched');
});
