// Two vmds whose namespaces reach each other over a veth, as two hosts on one network: for migration tests and the
// bench. The caller tears both harnesses down (the veth goes with the namespaces).

import { execa } from 'execa';
import { VmdHarness } from './vmd-harness.js';

/** The addresses of the first and second host on the veth. */
export const HOST_ADDRS = ['10.96.43.1', '10.96.43.2'] as const;

/** Starts two harnesses and joins their namespaces; the second is started even if joining fails, so both come back. */
export async function twoHostsStart(): Promise<[VmdHarness, VmdHarness]> {
  const a = await VmdHarness.start();
  let b: VmdHarness;
  try {
    b = await VmdHarness.start();
  } catch (err) {
    await a.teardown();
    throw err;
  }
  try {
    await execa('ip', ['-n', a.netns, 'link', 'add', 'mig0', 'type', 'veth', 'peer', 'name', 'mig0', 'netns', b.netns]);
    for (const [h, addr] of [[a, HOST_ADDRS[0]], [b, HOST_ADDRS[1]]] as const) {
      await execa('ip', ['-n', h.netns, 'addr', 'add', `${addr}/24`, 'dev', 'mig0']);
      await execa('ip', ['-n', h.netns, 'link', 'set', 'mig0', 'up']);
    }
  } catch (err) {
    await a.teardown();
    await b.teardown();
    throw err;
  }
  return [a, b];
}
