#!/usr/bin/env -S node --max-semi-space-size=1 --max-opt=1 --optimize-for-size --expose-gc
// The vmd executable: parses vmd(8)'s flags, then runs the config test, the daemon, or (re-executed) a child role.
// Without -d the daemon detaches and logs to syslog; with -d it stays in the foreground, timestamped lines on stderr.
// The shebang's Node flags (PARENT_NODE_FLAGS in proc.ts; the roles get theirs at fork) keep the daemon's RSS low.

import { spawn } from 'node:child_process';
import { mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { parseVmdArgs } from './args.js';
import { LOG_TARGET_ENV, logInit, logWarn, syslogSocket } from './log.js';
import { PARENT_NODE_FLAGS } from './proc.js';
import { stateDir } from '../share/paths.js';

const DETACHED_FLAG = '--detached-child';

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const detachedChild = argv.includes(DETACHED_FLAG);
  const options = parseVmdArgs(argv.filter((a) => a !== DETACHED_FLAG));
  if (typeof options === 'string') {
    process.stderr.write(`${options}\n`);
    return 1;
  }
  // Loaded only here: the child roles have no use for the grammar and should not carry it in memory.
  if (options.configTest) return (await import('./configtest.js')).configTest(options);
  // Under -d stderr, unless the service manager's unit asked for syslog (vmd.service does: journald stamps stderr itself).
  if (options.role === null && options.debug && !detachedChild && process.env[LOG_TARGET_ENV] !== 'syslog') process.env[LOG_TARGET_ENV] = 'stderr';
  logInit(options.role, options.verbose);
  if (options.role === 'vmm') {
    (await import('./vmm.js')).vmmMain();
    return -1;
  }
  if (options.role === 'control') {
    (await import('./control.js')).controlMain();
    return -1;
  }
  if (options.role !== null) {
    process.stderr.write(`vmd: unknown role ${options.role}\n`);
    return 1;
  }
  // Without root vmd still runs (a user's own VMs), rootless: NICs use QEMU's user-mode NAT, and switches
  // and local interfaces fail with a clear error. Its socket and state must then be somewhere it may write.
  if (process.getuid?.() !== 0) {
    const { accessSync, constants } = await import('node:fs');
    const { dirname } = await import('node:path');
    const { socketPath } = await import('../share/paths.js');
    try {
      accessSync(dirname(socketPath()), constants.W_OK);
    } catch {
      process.stderr.write(`vmd: socket ${socketPath()}: permission denied\nvmd: hint: without root, set VMD_SOCKET and VMD_STATE_DIR to paths you own\n`);
      return 1;
    }
  }
  if (!options.debug && !detachedChild) return daemonise(argv);
  const { parentMain } = await import('./parent/main.js');
  return parentMain({
    file: options.file,
    macros: options.macros,
    verbose: options.verbose,
    onReady: () => {
      notifyReady();
      if (detachedChild && process.send !== undefined) {
        process.send({ type: 'ready' });
        process.disconnect();
      }
    },
  });
}

/**
 * Start the daemon detached, logging to syslog (its stray output, a crash's stack, to `<state>/vmd.log`);
 * return once it listens (0) or failed (1).
 */
async function daemonise(argv: string[]): Promise<number> {
  const dir = stateDir();
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const logPath = join(dir, 'vmd.log');
  const log = openSync(logPath, 'a', 0o640);
  const child = spawn(process.execPath, [...process.execArgv, ...PARENT_NODE_FLAGS, process.argv[1]!, ...argv, DETACHED_FLAG], {
    detached: true,
    // The invoker's cwd is kept: relative paths in vm.conf resolve against it, as under -d (vmd.8 says so).
    stdio: ['ignore', log, log, 'ipc'],
    env: { ...process.env, [LOG_TARGET_ENV]: 'syslog' },
  });
  return new Promise<number>((resolve) => {
    child.once('message', () => {
      child.unref();
      child.disconnect();
      resolve(0);
    });
    child.once('exit', (code) => {
      process.stderr.write(`vmd: daemon exited during start-up (status ${code ?? 'signal'}); its reasons went to syslog (${syslogSocket()}, program vmd) or ${logPath}\n`);
      resolve(1);
    });
  });
}

/** systemd's readiness protocol (Type=notify): READY=1 to NOTIFY_SOCKET once the control socket accepts connections. */
function notifyReady(): void {
  const socket = process.env.NOTIFY_SOCKET;
  if (socket === undefined || socket === '') return;
  void import('./native.js').then(({ dgramSend }) => {
    try {
      dgramSend(socket, Buffer.from(`READY=1\nMAINPID=${process.pid}\n`));
    } catch (err) {
      logWarn(`notify ${socket}: ${(err as Error).message}`);
    }
  });
}

main().then(
  (code) => {
    // -1: a child role, which lives until its parent goes.
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    logWarn(err instanceof Error ? err.message : String(err));
    process.exit(1);
  },
);
