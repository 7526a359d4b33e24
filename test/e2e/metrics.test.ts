// End to end: vm.conf `metrics` served by vmm (not root) during a real guest's run; two scrapes show its vCPU time,
// link bytes and disk reads growing, and the text passes promtool's parser.

import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { guestInitrd, guestKernel, VmdHarness } from '../lib/vmd-harness.js';
import { sh } from '../lib/guest-tools.js';

const PORT = 9470;

t.before(() => {
  if (!existsSync(guestKernel)) throw new Error(`test guest missing: run share/guest/build (${guestKernel})`);
});

/** GET /metrics inside the daemon's namespace (where vmm listens on its loopback). */
async function scrape(h: VmdHarness, path = '/metrics'): Promise<{ status: number; body: string }> {
  const js = `fetch('http://127.0.0.1:${PORT}${path}').then(async (r) => process.stdout.write(JSON.stringify({ status: r.status, body: await r.text() })))`;
  const r = await execa('ip', ['netns', 'exec', h.netns, process.execPath, '-e', js], { env: {}, extendEnv: false });
  return JSON.parse(r.stdout) as { status: number; body: string };
}

/** The value of the sample whose line starts with `prefix` (name and labels). */
function value(text: string, prefix: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${prefix} `));
  if (line === undefined) throw new Error(`no sample ${prefix} in:\n${text}`);
  return Number(line.slice(prefix.length + 1));
}

t.test('a running guest\'s metrics grow between scrapes and parse', async (t) => {
  const h = await VmdHarness.start();
  t.teardown(() => h.teardown());
  const disk = join(h.dir, 'data.raw');
  await writeFile(disk, Buffer.alloc(8 * 1024 * 1024, 7));
  await writeFile(h.configPath, `metrics port ${PORT}\nvm "mx" {\n  disable\n  memory 256M\n  boot "${guestKernel}"\n  initrd "${guestInitrd}"\n  disk "${disk}"\n  local interface\n}\n`);
  t.equal((await h.vmctl(['reload'])).exitCode, 0);
  t.equal((await h.vmctl(['start', 'mx'])).exitCode, 0);
  await h.console('mx', '\n', /vmd-guest: ready/, 120);

  // The endpoint's listener is vmm's, an unprivileged process.
  const ss = await execa('ip', ['netns', 'exec', h.netns, 'ss', '-Hltnp', `sport = :${PORT}`]);
  const pid = Number(/pid=(\d+)/.exec(ss.stdout)?.[1]);
  t.ok(pid > 0, `a listener on port ${PORT}: ${ss.stdout}`);
  const uid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
  t.not(uid, 0, 'not root');
  t.match(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), /vmm/, 'the vmm role');

  const first = await scrape(h);
  t.equal(first.status, 200);
  const l = '{id="1",vm="mx"}';
  const link = '{id="1",vm="mx",if="0",link="vmd1i0"}';
  t.equal(value(first.body, `vmd_vm_state{id="1",vm="mx",state="running"}`), 1);
  // Work for every counter: the guest reads its disk and pings the host over its link.
  await sh(h, 'mx', 'dd if=/dev/vda of=/dev/null bs=64k 2>&1 | tail -1; ping -c 3 -W 2 100.64.1.2 | tail -2', 60);
  await new Promise((r) => setTimeout(r, 1500));
  const second = await scrape(h);
  t.ok(value(second.body, `vmd_vm_vcpu_seconds_total${l}`) > value(first.body, `vmd_vm_vcpu_seconds_total${l}`), 'vCPU time grows');
  t.ok(value(second.body, `vmd_link_receive_bytes_total${link}`) > value(first.body, `vmd_link_receive_bytes_total${link}`), 'bytes from the guest grow');
  t.ok(value(second.body, `vmd_link_transmit_bytes_total${link}`) > value(first.body, `vmd_link_transmit_bytes_total${link}`), 'bytes to the guest grow');
  t.ok(value(second.body, 'vmd_vm_block_read_bytes_total{id="1",vm="mx",device="disk0"}') >= 8 * 1024 * 1024, 'the disk was read');
  t.ok(value(second.body, `vmd_vm_memory_resident_bytes${l}`) > 0);

  for (const body of [first.body, second.body]) {
    const check = await execa('promtool', ['check', 'metrics'], { input: body, reject: false });
    t.equal(check.exitCode, 0, `promtool: ${check.stdout}${check.stderr}`);
  }
  t.equal((await scrape(h, '/')).status, 404, 'only /metrics is served');

  // A reload without `metrics` closes the endpoint.
  await h.vmctl(['stop', '-f', '-w', 'mx']);
  await writeFile(h.configPath, '# no metrics\n');
  t.equal((await h.vmctl(['reload'])).exitCode, 0);
  await new Promise((r) => setTimeout(r, 500));
  const gone = await execa('ip', ['netns', 'exec', h.netns, 'ss', '-Hltn', `sport = :${PORT}`]);
  t.equal(gone.stdout.trim(), '', 'nothing listens after the reload');
});
