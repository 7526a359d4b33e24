// The action of a vm block's `display vnc|none`: a VGA device exported as VNC on a per-VM unix socket.
// `none` is the default, spelled out so an instance can turn its parent's display off.

import { DISPLAY_KINDS, type DisplayKind } from '../share/config.js';
import type { ActionBase } from './action-base.js';
import type { VmOpt } from './ast.js';

/** `display vnc|none`: once per vm; microvm has no PCI bus for a VGA card (checked at the closing brace). */
export function vmDisplay(a: ActionBase, vm: { display: DisplayKind | null; displayAt: number }, o: VmOpt & { kind: 'display' }): void {
  const la = o.end;
  if (vm.display !== null) a.fail(o.value, 'display specified more than once', la);
  const v = a.text(o.value);
  if (!(DISPLAY_KINDS as readonly string[]).includes(v)) a.fail(o.value, `invalid display: ${v}: ${DISPLAY_KINDS.join(' or ')}`, la);
  vm.display = v as DisplayKind;
  vm.displayAt = o.value;
}
