// How a command's failure reaches the user, the same from the whole program and from the listing fast path: the
// message and hint on stderr (the command's usage for a usage error), and under --json the error object on stdout.

import { CliError, UsageError } from './errors.js';
import { jsonError } from './help.js';

/** A command's usage line, as ctl_usage() prints it (`usage:\tvmctl [-v] NAME USAGE`, trailing space and all). */
export function commandUsage(spec: { readonly name: string; readonly usage: string }): string {
  return `usage:\tvmctl [-v] ${spec.name} ${spec.usage}\n`;
}

/** Reports what a command threw; returns the exit status, 1. */
export function reportFailure(
  err: unknown,
  json: boolean,
  command: { readonly name: string; readonly usage: string },
  io: { readonly stdout: NodeJS.WritableStream; readonly stderr: NodeJS.WritableStream },
): number {
  const message = err instanceof Error ? err.message : String(err);
  const hint = err instanceof CliError ? err.hint : undefined;
  if (json) io.stdout.write(jsonError(err instanceof UsageError ? 'ERR_USAGE' : err instanceof CliError ? err.code : 'ERR_INTERNAL', message, hint));
  if (err instanceof UsageError) io.stderr.write(commandUsage(command));
  else io.stderr.write(`vmctl: ${message}\n${hint === undefined ? '' : `vmctl: hint: ${hint}\n`}`);
  return 1;
}
