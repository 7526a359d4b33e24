// Tests for vmd/accel: the payload is correct (it completes under TCG), the probe is bounded and picks TCG
// on these hosts (nested KVM hangs once the guest leaves real mode), and `accel` from vm.conf is honoured.
import t from 'tap';
import { spawn } from 'node:child_process';
import { accelPayloadBios, kvmDeviceUsable, probeAccel, probeAccelDetailed, probeAccelReset, removeStaleProbeDirs, resolveAccel, runAccelPayload } from '../../vmd/accel.js';

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
  probeAccelReset();
  const started = Date.now();
  const detailed = await probeAccelDetailed({ timeoutMs: 2500 });
  const elapsed = Date.now() - started;
  t.equal(detailed.accel, 'tcg', `chose tcg: ${detailed.reason}`);
  t.ok(elapsed <= 3000, `bounded: ${elapsed} ms`);
  t.equal(await countPayloadQemus(), 0, 'the timed-out QEMU was killed');
});

t.test('probeAccel caches per process', async (t) => {
  probeAccelReset();
  const first = probeAccel();
  const second = probeAccel();
  t.equal(await first, 'tcg');
  t.equal(await second, 'tcg');
  const started = Date.now();
  t.equal(await probeAccel(), 'tcg');
  t.ok(Date.now() - started < 50, 'answered from the cache');
});

t.test('resolveAccel: kvm and tcg are forced, auto and unset probe', async (t) => {
  let probes = 0;
  const probe = async () => {
    probes += 1;
    return 'kvm' as const;
  };
  t.equal(await resolveAccel('kvm', probe), 'kvm');
  t.equal(await resolveAccel('tcg', probe), 'tcg');
  t.equal(probes, 0, 'forced values do not probe');
  t.equal(await resolveAccel('auto', probe), 'kvm');
  t.equal(await resolveAccel(null, probe), 'kvm');
  t.equal(probes, 2);
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
  const { mkdirSync, mkdtempSync, existsSync, rmSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
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
