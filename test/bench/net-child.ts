// The timed part of net.bench.ts, run inside the bench's own namespace (never the host's): a Network with one
// dhcp switch, guests added up to 1,000 links, and at each size the start and stop of one more guest timed.

import { mkdtempSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfigText } from '../../grammar/parse.js';
import { StateDb } from '../../vmd/db.js';
import { closeFd } from '../../vmd/native.js';
import { Network } from '../../vmd/network.js';
import { readFileSync } from 'node:fs';
import { median, nowMs } from './daemon-lib.js';

/** CPU milliseconds of this process and its reaped children (ip, nft): on a loaded machine wall time mostly measures the queue. */
function cpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14-17 of stat(5) (utime, stime, cutime, cstime) are 11-14 after the state field; clock ticks of 10 ms.
  const ticks = Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  return ticks * 10;
}

const SIZES = (process.env.VMD_BENCH_NET_SIZES ?? "1,100,1000").split(",").map(Number);
const RUNS = Number(process.env.VMD_BENCH_NET_RUNS ?? 15);

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-net-bench-'));
  chmodSync(dir, 0o755);
  process.env.VMD_NFT_DIR = mkdtempSync(join(tmpdir(), 'vmd-net-bench-nft-'));
  const vms = SIZES.at(-1)! + 1;
  const lines = ['switch "lan" {', '\tinterface vmdbr0', '\taddress 10.80.0.1/16', '\tdhcp', '\tnat', '}'];
  for (let i = 1; i <= vms; i++) lines.push(`vm "g${i}" {`, '\tdisable', '\tmemory 64M', '\tinterface { switch "lan" }', '}');
  const r = parseConfigText(`${lines.join('\n')}\n`, 'vm.conf');
  if (r.config === null) throw new Error(r.diagnostics.map((d) => d.message).join('; '));
  const config = r.config;
  const db = new StateDb(dir);
  const net = new Network(config, db, dir, true);
  const fds: number[] = [];
  const rows: Array<{ links: number; up: number; down: number; cpu: number }> = [];
  try {
    await net.switchesUp();
    const probe = config.vms[0]!;
    let have = 0;
    for (const size of SIZES) {
      for (; have < size; have++) {
        const vm = config.vms[have + 1]!;
        fds.push(...(await net.vmUp(have + 2, vm)).fds);
      }
      const up: number[] = [];
      const down: number[] = [];
      const cpu0 = cpuMs();
      for (let run = 0; run < RUNS; run++) {
        const t0 = nowMs();
        const got = await net.vmUp(1, probe);
        const t1 = nowMs();
        for (const fd of got.fds) closeFd(fd);
        const t2 = nowMs();
        await net.vmDown(1);
        const t3 = nowMs();
        up.push(t1 - t0);
        down.push(t3 - t2);
      }
      rows.push({ links: size, up: median(up), down: median(down), cpu: (cpuMs() - cpu0) / RUNS });
    }
  } finally {
    for (const fd of fds) closeFd(fd);
    await net.shutdown();
    await net.reset(true);
    db.close();
    rmSync(dir, { recursive: true, force: true });
    rmSync(process.env.VMD_NFT_DIR!, { recursive: true, force: true });
  }
  process.stdout.write(`${JSON.stringify(rows)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
});
