// A fresh Debian root made by debootstrap, for installing vmd's package into: built once and cached outside the tree.
// Each test mounts an overlay on the cached root, so a run never changes the cache and reruns take seconds.

import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { packageRoot } from '../../share/paths.js';

/** Debian 13: its own nodejs is 20, the major vmd is pinned to (bookworm's is 18). */
export const SUITE = 'trixie';
export const CACHE_DIR = process.env.VMD_TEST_CACHE ?? '/var/cache/vmd-test';

/** The package's Depends and Recommends, without versions: what the base root has installed in advance. */
export function packageDeps(): string[] {
  const control = readFileSync(join(packageRoot, 'share', 'package', 'control'), 'utf8');
  const fields = control.split('\n').filter((l) => /^(Depends|Recommends):/.test(l));
  return fields.flatMap((l) => l.replace(/^[A-Za-z]+:/, '').split(',')).map((d) => d.trim().split(/[\s(]/)[0]!).filter((d) => d !== '');
}

/** Beyond the package's dependencies: systemd, so the unit is verified by the root's own systemd-analyze. */
const EXTRA = ['systemd'];

/** The cached base root, made now if missing (a few minutes, once); a half-made one is never left under its name. */
export async function debianBase(): Promise<string> {
  // Named after what it holds, so a changed Depends line makes a new root instead of reusing a stale one.
  const base = join(CACHE_DIR, `${SUITE}-${createHash('sha256').update([...packageDeps(), ...EXTRA].sort().join(',')).digest('hex').slice(0, 12)}`);
  if (existsSync(join(base, '.complete'))) return base;
  mkdirSync(CACHE_DIR, { recursive: true });
  const tmp = mkdtempSync(join(CACHE_DIR, `.${SUITE}-`));
  try {
    await execa('debootstrap', ['--variant=minbase', `--include=${[...packageDeps(), ...EXTRA].join(',')}`, SUITE, tmp, 'http://deb.debian.org/debian'], {
      timeout: 1_800_000,
    });
    await execa('touch', [join(tmp, '.complete')]);
    chmodSync(tmp, 0o755);
    rmSync(base, { recursive: true, force: true });
    renameSync(tmp, base);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  return base;
}

/** A writable root over the cached base, with /proc and /dev mounted; unmount() removes every trace of it. */
export interface DebianRoot {
  readonly dir: string;
  unmount(): Promise<void>;
}

export async function debianRoot(): Promise<DebianRoot> {
  const base = await debianBase();
  const work = mkdtempSync('/tmp/vmd-deb-root-');
  for (const d of ['upper', 'work', 'root']) mkdirSync(join(work, d));
  const dir = join(work, 'root');
  const mounted: string[] = [];
  const unmount = async (): Promise<void> => {
    for (const m of mounted.reverse()) await execa('umount', ['-l', m], { reject: false });
    rmSync(work, { recursive: true, force: true });
  };
  try {
    await execa('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${base},upperdir=${join(work, 'upper')},workdir=${join(work, 'work')}`, dir]);
    mounted.push(dir);
    await execa('mount', ['-t', 'proc', 'proc', join(dir, 'proc')]);
    mounted.push(join(dir, 'proc'));
    await execa('mount', ['--bind', '/dev', join(dir, 'dev')]);
    mounted.push(join(dir, 'dev'));
  } catch (err) {
    await unmount();
    throw err;
  }
  return { dir, unmount };
}
