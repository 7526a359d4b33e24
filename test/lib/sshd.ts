// An OpenSSH server of the test's own, inside a network namespace the test made: throwaway host and user keys, its
// own sshd_config and port, nothing of the system's sshd touched. The client side gets a config file for `ssh -F`.

import { execa, type ResultPromise } from 'execa';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A running test sshd and what a client needs to reach it. */
export interface TestSshd {
  /** `ssh -F FILE`: the user key, a known_hosts of its own, no prompts. */
  readonly clientConfig: string;
  readonly address: string;
  readonly port: number;
  /** What sshd logged (it runs with -e): shown when a test fails. */
  log(): string;
  stop(): Promise<void>;
}

const SSHD = '/usr/sbin/sshd';

/** sshd's configuration: keys only, from a file of the test's, for the given users; no PAM, no system files. */
function sshdConfig(dir: string, address: string, port: number, users: readonly string[]): string {
  // Root only where a test lets root in by name (a migration: only root may migrate), with a key.
  const root = users.includes('root') ? 'prohibit-password' : 'no';
  return [
    `ListenAddress ${address}`, `Port ${port}`, `HostKey ${join(dir, 'host_key')}`, 'PidFile none',
    `AuthorizedKeysFile ${join(dir, 'authorized', '%u')}`, 'PubkeyAuthentication yes', 'PasswordAuthentication no',
    'KbdInteractiveAuthentication no', 'UsePAM no', `PermitRootLogin ${root}`, `AllowUsers ${users.join(' ')}`,
    // The key files live under /tmp (world-writable, sticky): StrictModes would refuse the path for that alone.
    'StrictModes no', 'X11Forwarding no', 'AllowAgentForwarding no', 'AllowTcpForwarding no', 'LogLevel VERBOSE', '',
  ].join('\n');
}

/** Starts sshd in `netns` on address:port, letting in `users` with one throwaway key; resolves once it accepts. */
export async function startSshd(netns: string, address: string, port: number, users: readonly string[]): Promise<TestSshd> {
  if (!existsSync(SSHD)) throw new Error(`${SSHD} is missing: run share/setup (it installs openssh-server)`);
  const dir = mkdtempSync(join(tmpdir(), 'vmd-sshd-'));
  chmodSync(dir, 0o755);
  // sshd's privilege separation needs this (Debian's service makes it at start); an empty directory owned by root.
  const madeRun = !existsSync('/run/sshd');
  if (madeRun) mkdirSync('/run/sshd', { mode: 0o755 });
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'vmd-test-host', '-f', join(dir, 'host_key')]);
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'vmd-test-user', '-f', join(dir, 'user_key')]);
  mkdirSync(join(dir, 'authorized'), { mode: 0o755 });
  const pub = (await execa('cat', [join(dir, 'user_key.pub')])).stdout;
  for (const u of users) writeFileSync(join(dir, 'authorized', u), `${pub}\n`, { mode: 0o644 });
  writeFileSync(join(dir, 'sshd_config'), sshdConfig(dir, address, port, users));
  const clientConfig = join(dir, 'ssh_config');
  writeFileSync(clientConfig, [
    'Host *', `  IdentityFile ${join(dir, 'user_key')}`, '  IdentitiesOnly yes', '  BatchMode yes',
    `  UserKnownHostsFile ${join(dir, 'known_hosts')}`, '  GlobalKnownHostsFile /dev/null', '  StrictHostKeyChecking accept-new',
    '  ConnectTimeout 10', '  LogLevel ERROR', '',
  ].join('\n'));

  let log = '';
  const child: ResultPromise = execa('ip', ['netns', 'exec', netns, SSHD, '-D', '-e', '-f', join(dir, 'sshd_config')], {
    reject: false, all: true, extendEnv: false, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
  });
  child.all?.on('data', (c: Buffer) => { log += c.toString(); });
  const stop = async (): Promise<void> => {
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await child;
    clearTimeout(timer);
    rmSync(dir, { recursive: true, force: true });
    if (madeRun) rmSync('/run/sshd', { recursive: true, force: true });
  };
  // Bounded wait for the listening socket, seen from inside the namespace.
  const deadline = Date.now() + 15_000;
  for (;;) {
    const ss = await execa('ip', ['netns', 'exec', netns, 'ss', '-Hltn', `sport = :${port}`], { reject: false });
    if (String(ss.stdout).includes(`:${port}`)) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`sshd did not start:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { clientConfig, address, port, log: () => log, stop };
}
