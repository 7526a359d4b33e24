// Throughput of one TCP stream from the host into a guest, through passt and through a local interface (tap, the
// host's routing), in one run: guests under TCG, so compare rows. (QEMU's user-mode NAT is not a row: under a root
// vmd, as here, a plain interface is an unattached tap, as OpenBSD makes it.)

import { execa } from 'execa';
import { guestInitrd, guestKernel, VmdHarness } from '../lib/vmd-harness.js';
import type { BenchSection, Measurement } from './bench.js';
import { median } from './daemon-lib.js';

const MB = 16;
const ROUNDS = 3;
const SINK_PORT = 9000;
const GUESTS = ['passt', 'tap'];

const vm = (name: string, iface: string): string =>
  `vm "${name}" {\n  disable\n  memory 256M\n  boot "${guestKernel}"\n  initrd "${guestInitrd}"\n` +
  `  cmdline "console=ttyS0 quiet panic=-1 vmd.hostname=${name}"\n  ${iface}\n}\n`;

const config =
  vm('passt', `passt interface { nat\n forward tcp 9101 to ${SINK_PORT} }`) +
  vm('tap', 'local interface');

/**
 * A sink in the guest: each connection is read to its end, then answered `sunk` (busybox nc runs the script per
 * connection), so the host times the whole stream into the guest, not just its own socket buffer.
 */
const SINK = `printf '#!/bin/sh\\ncat >/dev/null\\necho sunk\\n' >/tmp/sink; chmod +x /tmp/sink; (nc -ll -p ${SINK_PORT} -e /tmp/sink &); echo sink-$((6*7))\n`;

/** Sends MB megabytes from inside the namespace to host:port; resolves with MB/s once the guest says `sunk`. */
async function streamOnce(netns: string, host: string, port: number): Promise<number> {
  const r = await execa('ip', ['netns', 'exec', netns, process.execPath, '-e', `
    const s = require('net').connect(${port}, ${JSON.stringify(host)});
    const chunk = Buffer.alloc(1 << 20, 120); let sent = 0; const t0 = process.hrtime.bigint();
    const pump = () => { while (sent < ${MB}) { sent++; if (!s.write(chunk)) return s.once('drain', pump); } s.end(); };
    s.on('connect', pump);
    s.on('data', (d) => { if (String(d).includes('sunk')) { console.log(Number(process.hrtime.bigint() - t0) / 1e6); process.exit(0); } });
    s.on('error', (e) => { console.log('error ' + e.code); process.exit(1); });
    setTimeout(() => { console.log('timeout'); process.exit(1); }, 120000);`], { reject: false, timeout: 130_000 });
  const ms = Number(r.stdout.trim());
  if (!Number.isFinite(ms)) throw new Error(`stream to ${host}:${port}: ${r.stdout}${r.stderr}`);
  return MB / (ms / 1000);
}

/** streamOnce, tried again after a pause when a connection fails (the guest's nc re-listens between connections). */
async function streamRetried(netns: string, host: string, port: number): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await streamOnce(netns, host, port);
    } catch (err) {
      if (attempt === 3) throw err;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

export const throughputBench: BenchSection = {
  name: 'throughput',
  async run(): Promise<readonly Measurement[]> {
    const h = await VmdHarness.start({ config });
    try {
      // passt needs an outward interface with a default route, as any host it runs on has.
      await execa('ip', ['-n', h.netns, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up0p']);
      await execa('ip', ['-n', h.netns, 'link', 'set', 'up0p', 'up']);
      await execa('ip', ['-n', h.netns, 'address', 'add', '10.98.0.5/24', 'dev', 'up0']);
      await execa('ip', ['-n', h.netns, 'link', 'set', 'up0', 'up']);
      await execa('ip', ['-n', h.netns, 'route', 'add', 'default', 'via', '10.98.0.1']);
      for (const n of GUESTS) {
        const r = await h.vmctl(['start', n]);
        if (r.exitCode !== 0) throw new Error(`start ${n}: ${r.stderr}`);
      }
      for (const n of GUESTS) await h.waitState(n, 'running', 60_000);
      for (const n of GUESTS) await h.console(n, SINK, /sink-42/, 120);
      const lease = await h.console('tap', '\n', /vmd-guest: lease eth0 (100\.64\.\d+\.\d+)\//, 60);
      const tapAddr = /vmd-guest: lease eth0 (100\.64\.\d+\.\d+)\//.exec(lease)![1]!;
      const paths: Array<[string, string, number]> = [
        ['passt (qemu style, forward from loopback)', '127.0.0.1', 9101],
        ['local interface (tap, routed)', tapAddr, SINK_PORT],
      ];
      const out: Measurement[] = [];
      for (const [name, host, port] of paths) {
        const rates: number[] = [];
        for (let i = 0; i < ROUNDS; i++) rates.push(await streamRetried(h.netns, host, port));
        out.push({ name: `host→guest TCP, ${MB} MB, ${name} (median)`, value: Math.round(median(rates) * 10) / 10, unit: 'MB/s' });
      }
      return out;
    } finally {
      for (const n of GUESTS) await h.vmctl(['stop', '-f', '-w', n]).catch(() => undefined);
      await h.teardown();
    }
  },
};
