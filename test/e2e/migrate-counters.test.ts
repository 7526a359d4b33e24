// End to end: a migrated guest's firewall counters go with it. The guest's rule counts the page requests the test
// makes on the source; on the target the same rule shows at least that much and goes on counting from there.

import t from 'tap';
import type { FirewallResponse } from '../../share/protocol.js';
import { nftCounters } from '../../vmd/net/nft-apply.js';
import { httpGet } from '../lib/netns.js';
import { HOST_ADDRS, twoHostsStart } from '../lib/two-hosts.js';
import { guestInitrd, guestKernel, type VmdHarness } from '../lib/vmd-harness.js';

const CONF = `vm "counted" {\n  memory 256M\n  boot "${guestKernel}"\n  initrd "${guestInitrd}"\n`
  + '  cmdline "console=ttyS0 quiet panic=-1 vmd.hostname=counted"\n'
  + '  local interface {\n    forward tcp 8080 to 80\n    block in proto icmp\n    pass in proto tcp to port 80\n  }\n}\n';
const FORWARD = "vm 'counted' forward tcp/8080";

/** The packets and bytes of the guest's `pass in proto tcp to port 80` rule. */
async function passCount(h: VmdHarness): Promise<{ packets: number; bytes: number }> {
  const r = await h.vmctl(['firewall', '--json', 'counted']);
  const fw = JSON.parse(r.stdout) as FirewallResponse;
  const rule = fw.interfaces[0]!.rules.find((x) => x.text === 'pass in proto tcp to port 80');
  if (rule?.count == null) throw new Error(`no counted pass rule: ${r.stdout} ${r.stderr}`);
  return rule.count;
}

t.test('the firewall counters move with a migrated guest and go on counting there', async (t) => {
  const [a, b] = await twoHostsStart({ config: CONF });
  t.teardown(async () => {
    await a.teardown();
    await b.teardown();
  });
  const row = await a.waitState('counted', 'running', 40_000);
  const id = Number(row.trim().split(/\s+/)[0]);
  await a.console('counted', '\n', new RegExp(`vmd-guest: lease eth0 100\\.64\\.${id}\\.3/31`), 90);
  for (let i = 0; i < 3; i++) t.equal((await httpGet(a.netns, `100.64.${id}.3`, 80)).trim(), 'counted', 'the page passes on the source');
  for (let i = 0; i < 2; i++) t.equal((await httpGet(a.netns, '127.0.0.1', 8080)).trim(), 'counted', 'and through the forward');
  const source = await passCount(a);
  const forwarded = (await nftCounters(a.netns)).get(FORWARD)?.packets ?? 0;
  t.ok(forwarded >= 2, `the forward counted its connections (${forwarded})`);
  t.ok(source.packets >= 3, `the rule counted the requests' first packets on the source (${source.packets} packets)`);

  const m = await a.vmctl(['migrate', '-s', b.socket, 'counted', HOST_ADDRS[1]], { timeoutMs: 180_000 });
  t.equal(m.exitCode, 0, `migrate: ${m.stderr}\n${a.daemonLog}\n${b.daemonLog}`);
  await b.waitState('counted', 'running', 10_000);
  // The target adds them once the guest runs there, without holding vmctl's answer for it: a moment later.
  let moved = await passCount(b);
  for (let i = 0; i < 100 && moved.packets < source.packets; i++) {
    await new Promise((r) => setTimeout(r, 100));
    moved = await passCount(b);
  }
  t.ok(moved.packets >= source.packets, `the target's rule starts from the source's count (${moved.packets} >= ${source.packets} packets)`);
  t.ok(moved.bytes >= source.bytes, `and bytes (${moved.bytes} >= ${source.bytes})`);
  const forwardedThere = (await nftCounters(b.netns)).get(FORWARD)?.packets ?? 0;
  t.ok(forwardedThere >= forwarded, `the forward's counter moved too (${forwardedThere} >= ${forwarded})`);

  t.equal((await httpGet(b.netns, `100.64.${id}.3`, 80)).trim(), 'counted', 'the page passes on the target');
  const later = await passCount(b);
  t.ok(later.packets > moved.packets, `the target counts on from there (${later.packets} > ${moved.packets})`);
  t.equal((await b.vmctl(['stop', '-f', '-w', 'counted'])).exitCode, 0, 'the guest stops on the target');
  t.same(a.guestPids(), [], 'no guest left on the source');
});
