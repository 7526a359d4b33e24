// The IPv6 prefix of `local inet6`: the configured one, or a random ULA drawn once per state directory and
// kept there, so guests keep their addresses across vmd restarts.

import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GlobalConfig, Prefix6 } from '../../share/config.js';
import { logInfo } from '../log.js';
import { formatIPv6, parseIPv6 } from './addr.js';

/**
 * The IPv6 prefix of `local inet6`: the configured one, or a random ULA (fd00::/8, bytes 1–7 random, as OpenBSD
 * picks it) made once and kept in the state directory, so guests keep their addresses across vmd restarts.
 */
export function inet6PrefixOf(g: GlobalConfig, stateDir: string): Prefix6 | null {
  if (!g.localInet6) return null;
  if (g.localInet6Prefix !== null) return g.localInet6Prefix;
  const file = join(stateDir, 'net', 'inet6-prefix');
  try {
    const [address, len] = readFileSync(file, 'utf8').trim().split('/');
    parseIPv6(address ?? '');
    if (Number(len) === 64) return { address: address!, length: 64 };
  } catch {
    // Missing or unreadable: make one.
  }
  const b = new Uint8Array(16);
  b[0] = 0xfd;
  b.set(randomBytes(7), 1);
  const prefix = { address: formatIPv6(b), length: 64 };
  writeFileSync(file, `${prefix.address}/64\n`, { mode: 0o644 });
  logInfo(`local inet6: chose the prefix ${prefix.address}/64 (kept in ${file})`);
  return prefix;
}
