// The `vmctl status` table, column for column as OpenBSD's print_vm_info() prints it with printf.
// Pure functions over VmInfo so the table can be tested against golden files without a daemon.

import type { VmInfo, VmState } from '../share/protocol.js';
import { fmtScaled } from '../share/scaled.js';

/** Column widths of the printf format; the last column (NAME) is unpadded. */
const WIDTHS = [5, 5, 5, 7, 7, 7, 12, 8] as const;

function row(cells: readonly string[]): string {
  let line = '';
  for (let i = 0; i < cells.length; i++) {
    const c = cells[i] as string;
    line += (i === 0 ? '' : ' ') + (i < WIDTHS.length ? c.padStart(WIDTHS[i] as number) : c);
  }
  return line;
}

/** The header line, from `"%5s %5s %5s %7s %7s %7s %12s %8s %s\n"`. */
export const STATUS_HEADER = row(['ID', 'PID', 'VCPUS', 'MAXMEM', 'CURMEM', 'TTY', 'OWNER', 'STATE', 'NAME']);

/** States a guest has while its process exists: OpenBSD's "running" test (creator pid and kernel id set). */
const LIVE_STATES: ReadonlySet<VmState> = new Set<VmState>(['running', 'starting', 'paused', 'stopping']);

/** Whether a VM counts as running for `-r`, `stop -a` and the row layout. */
export function vmIsRunning(vm: VmInfo): boolean {
  return vm.pid !== null || LIVE_STATES.has(vm.state);
}

/** The STATE column: OpenBSD's vm_state() words; `starting` (ours only) shows as `running`, as OpenBSD has no such state. */
export function stateText(state: VmState): string {
  return state === 'starting' ? 'running' : state;
}

/** The TTY column: the part after the last `/`, the whole name if it ends in `/`, `-` if there is none. */
export function ttyText(tty: string | null): string {
  if (tty === null || tty.length === 0) return '-';
  const slash = tty.lastIndexOf('/');
  if (slash === -1 || slash === tty.length - 1) return tty;
  return tty.slice(slash + 1);
}

/** The OWNER column: `user[:group]` cut to 15 characters, as OpenBSD's `char user[16]`. */
export function ownerText(owner: string): string {
  // Characters, not UTF-16 units; but 15 units or fewer are 15 characters or fewer.
  return owner.length <= 15 ? owner : [...owner].slice(0, 15).join('');
}

/** One table row for a VM. */
export function statusRow(vm: VmInfo): string {
  const running = vmIsRunning(vm);
  return row([
    String(vm.id),
    running && vm.pid !== null ? String(vm.pid) : '-',
    String(vm.vcpus),
    fmtScaled(vm.maxmem),
    running && vm.curmem !== null ? fmtScaled(vm.curmem) : '-',
    running ? ttyText(vm.tty) : '-',
    ownerText(vm.owner),
    // Ours: a VM stopped because its last start failed says so until the next start.
    vm.failure !== undefined && vm.state === 'stopped' ? 'failed' : stateText(vm.state),
    vm.name,
  ]);
}

/** Whether a VM is the one an `id` operand names: a number matches the id, anything else the name. */
export function vmMatches(vm: VmInfo, ref: { readonly id: number | undefined; readonly name: string | undefined }): boolean {
  if (ref.id !== undefined) return vm.id === ref.id;
  if (ref.name !== undefined) return vm.name === ref.name;
  return true;
}

/** What `vmctl status` prints: header and rows; `found` counts VMs that passed `-r` (OpenBSD exits 1 when it is 0). */
export function formatStatus(
  vms: readonly VmInfo[],
  options: { readonly running?: boolean; readonly ref?: { readonly id: number | undefined; readonly name: string | undefined } } = {},
): { text: string; found: number } {
  const lines = [STATUS_HEADER];
  let found = 0;
  for (const vm of vms) {
    if (options.running === true && !vmIsRunning(vm)) continue;
    found++;
    if (options.ref === undefined || vmMatches(vm, options.ref)) lines.push(statusRow(vm));
  }
  // Asked about one VM, the reason of a failed start follows the table.
  const named = options.ref === undefined ? [] : vms.filter((vm) => vmMatches(vm, options.ref!) && vm.failure !== undefined && vm.state === 'stopped');
  for (const vm of named) lines.push(`start failed: ${vm.failure}`);
  return { text: `${lines.join('\n')}\n`, found };
}
