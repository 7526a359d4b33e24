// Logging for every vmd role: `vmd: message` (or `vmd/vmm: message`) lines to stderr, which is the log file when daemonised.
// Levels follow OpenBSD's log.c: warnings and info always, debug with -v, more with -vv.

let prefix = 'vmd';
let verbosity = 0;

/** Name this process in its log lines (`vmd/vmm`, `vmd/control`). */
export function logInit(role: string | null, verbose: number): void {
  prefix = role === null ? 'vmd' : `vmd/${role}`;
  verbosity = verbose;
}

/** `vmctl log brief|verbose` changes this at run time. */
export function logSetVerbose(level: number): void {
  verbosity = level;
}

export function logVerbose(): number {
  return verbosity;
}

function write(line: string): void {
  process.stderr.write(`${prefix}: ${line}\n`);
}

export function logWarn(message: string): void {
  write(message);
}

export function logInfo(message: string): void {
  write(message);
}

export function logDebug(message: string): void {
  if (verbosity >= 1) write(message);
}

export function logTrace(message: string): void {
  if (verbosity >= 2) write(message);
}
