// Tests for the rtnetlink path of vmd/net/links (tapCreate's move, linkConfigure of a bridged tap): the same links
// and the same error words as ip(8) gave. Everything happens in namespaces vmdnl-<pid>-* that this test makes and removes.

import t, { type Test } from 'tap';
import { execa } from 'execa';
import { readlinkSync } from 'node:fs';
import { closeFd, linkSet } from '../../../vmd/native.js';
import { VmdError } from '../../../share/errors.js';
import { linkConfigure, netnsEnsure, tapCreate } from '../../../vmd/net/links.js';
import { bridgeEnsure } from '../../../vmd/net/bridges.js';
import { ipMessage } from '../../../vmd/net/ip.js';

const tag = `vmdnl-${process.pid}`;
const short = String(process.pid % 100000);

async function ipRun(args: string[]): Promise<{ ok: boolean; stdout: string; stderr: string }> {
  const r = await execa('ip', args, { reject: false, stdin: 'ignore' });
  return { ok: r.exitCode === 0, stdout: String(r.stdout), stderr: String(r.stderr) };
}

async function link(netns: string, name: string): Promise<Record<string, any> | undefined> {
  const r = await ipRun(['-n', netns, '-j', '-d', 'link', 'show', 'dev', name]);
  return r.ok ? (JSON.parse(r.stdout) as Record<string, any>[])[0] : undefined;
}

/** The message linkConfigure/tapCreate gave, or the test fails. */
async function failure(t: Test, f: () => unknown): Promise<string> {
  try {
    await f();
  } catch (err) {
    t.ok(err instanceof VmdError, 'a VmdError');
    t.equal((err as VmdError).code, 'ERR_INTERNAL');
    return (err as Error).message;
  }
  t.fail('did not fail');
  return '';
}

/** ip's own words for the same failure, worded as the old ip(8) path worded them. */
async function ipWords(args: string[]): Promise<string> {
  const r = await ipRun(args);
  if (r.ok) throw new Error(`ip ${args.join(' ')}: succeeded`);
  return ipMessage(r.stderr);
}

t.test('rtnetlink links', { skip: process.getuid?.() === 0 ? false : 'needs root (namespaces, taps)' }, async (t) => {
  const a = `${tag}-a`;
  t.teardown(async () => {
    await ipRun(['netns', 'del', a]);
  });
  await netnsEnsure(a);
  await bridgeEnsure({ name: 'nlbr0', netns: a, mac: '02:76:6d:64:00:20', up: true, address: null });
  await bridgeEnsure({ name: 'nlbr1', netns: a, mac: '02:76:6d:64:00:21', up: true, address: null });
  const self = readlinkSync('/proc/thread-self/ns/net');

  t.test('a tap moved and configured as ip made it: alias, mtu, master, up, owner, persistence', async (t) => {
    const name = `vnl${short}a`;
    const tap = tapCreate(name, { vnetHdr: true, netns: a, owner: 4242 });
    t.teardown(() => closeFd(tap.fd));
    t.equal(readlinkSync('/proc/thread-self/ns/net'), self, 'vmd stays in its own namespace');
    t.not((await ipRun(['link', 'show', 'dev', name])).ok, true, 'not left in the root namespace');
    await linkConfigure({ name, netns: a, alias: 'vm7-if0-web', master: 'nlbr0', up: true, address: null, mtu: 1400 });
    t.equal(readlinkSync('/proc/thread-self/ns/net'), self, 'still in its own namespace');
    const l = await link(a, name);
    t.match(l, { ifalias: 'vm7-if0-web', master: 'nlbr0', mtu: 1400 });
    t.ok((l?.flags as string[]).includes('UP'), 'up');
    t.match(l?.linkinfo?.info_data, { type: 'tap', pi: false, vnet_hdr: true, persist: false, user: 4242 });
    // Moved to another bridge, then detached and down, as `nomaster` and `down` did.
    await linkConfigure({ name, netns: a, alias: 'vm7-if0-web', master: 'nlbr1', up: true, address: null });
    t.equal((await link(a, name))?.master, 'nlbr1', 'another master');
    await linkConfigure({ name, netns: a, alias: 'vm7-if0-other', master: null, up: false, address: null });
    const d = await link(a, name);
    t.equal(d?.master, undefined, 'no master');
    t.equal(d?.ifalias, 'vm7-if0-other', 'alias replaced');
    t.notOk((d?.flags as string[]).includes('UP'), 'down');
  });

  t.test('failures carry the words ip(8) printed for them', async (t) => {
    const name = `vnl${short}b`;
    const tap = tapCreate(name, { vnetHdr: false, netns: a });
    t.teardown(() => closeFd(tap.fd));
    t.equal(
      await failure(t, () => linkConfigure({ name, netns: a, alias: 'x', master: 'nosuch0', up: true, address: null })),
      `link ${name} in netns ${a}: ${await ipWords(['-n', a, 'link', 'set', 'dev', name, 'master', 'nosuch0'])}`, 'a missing bridge');
    t.equal(
      await failure(t, () => linkConfigure({ name: `vnl${short}z`, netns: a, alias: 'x', master: null, up: true, address: null })),
      `link vnl${short}z in netns ${a}: ${await ipWords(['-n', a, 'link', 'set', 'dev', `vnl${short}z`, 'up'])}`, 'a missing link');
    t.equal(
      await failure(t, () => linkConfigure({ name, netns: `${tag}-nosuch`, alias: 'x', master: null, up: true, address: null })),
      `link ${name} in netns ${tag}-nosuch: ${await ipWords(['-n', `${tag}-nosuch`, 'link', 'set', 'dev', name, 'up'])}`, 'a missing namespace');
    t.equal(
      await failure(t, () => linkConfigure({ name, netns: a, alias: 'x', master: null, up: true, address: null, mtu: 65535 })),
      `link ${name} in netns ${a}: ${await ipWords(['-n', a, 'link', 'set', 'dev', name, 'mtu', '65535'])}`, 'an mtu the tap refuses');
    t.equal(readlinkSync('/proc/thread-self/ns/net'), self, 'vmd stays in its own namespace after failures');
  });

  t.test('a move into a missing namespace fails in ip\'s words and leaves no tap', async (t) => {
    const name = `vnl${short}c`;
    await ipRun(['tuntap', 'add', 'dev', name, 'mode', 'tap']);
    const want = `link ${name} in netns ${tag}-nosuch: ${await ipWords(['link', 'set', 'dev', name, 'netns', `${tag}-nosuch`])}`;
    await ipRun(['link', 'del', 'dev', name]);
    t.equal(await failure(t, () => tapCreate(name, { vnetHdr: false, netns: `${tag}-nosuch` })), want);
    t.notOk((await ipRun(['link', 'show', 'dev', name])).ok, 'no tap left behind');
  });

  t.test('linkSet refuses malformed arguments before any netlink', async (t) => {
    t.throws(() => linkSet(null, { name: '' }), { code: 'ERR_INVALID_ARG_TYPE' }, 'empty name');
    t.throws(() => linkSet(null, { name: 'x'.repeat(16) }), { code: 'ERR_OUT_OF_RANGE' }, 'a name longer than IFNAMSIZ');
    t.throws(() => linkSet(null, { name: 'lo', mtu: 10 }), { code: 'ERR_OUT_OF_RANGE' }, 'mtu below 68');
    t.throws(() => linkSet('', { name: 'lo' }), { code: 'ERR_OUT_OF_RANGE' }, 'empty namespace path');
    t.throws(() => linkSet(null, { name: 'lo', up: 1 as unknown as boolean }), { code: 'ERR_INVALID_ARG_TYPE' }, 'up not a boolean');
  });
});
