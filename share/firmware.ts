// Where the UEFI firmware lives: Debian's `ovmf` package, the 4 MiB builds (code and variable template).
// Read by `vmd -n` (is the firmware there?) and by the parent (what to open, which template to copy).

import { join } from 'node:path';

/** Debian's ovmf package; VMD_OVMF_DIR overrides it for hosts that put it elsewhere. */
export function ovmfDir(): string {
  return process.env.VMD_OVMF_DIR ?? '/usr/share/OVMF';
}

/** The code and variable template of one UEFI flavour: plain, or Secure Boot (SMM build, Microsoft keys enrolled). */
export function ovmfFiles(secureBoot: boolean): { readonly code: string; readonly vars: string } {
  const dir = ovmfDir();
  return secureBoot
    ? { code: join(dir, 'OVMF_CODE_4M.secboot.fd'), vars: join(dir, 'OVMF_VARS_4M.ms.fd') }
    : { code: join(dir, 'OVMF_CODE_4M.fd'), vars: join(dir, 'OVMF_VARS_4M.fd') };
}
