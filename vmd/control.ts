// The control role: the only door for users. Serves the control socket's connections (the parent binds the socket,
// learns each client's uid from the kernel and passes the connection on unread), decodes every request, refuses what
// a non-root user may not do, answers status itself and forwards the rest to the parent. What each peer may hold
// (connections, memory, time) is bounded by vmd/control/limits.ts, so a flood by users never locks root out.

import { isParentToControl, type ControlToParent, type ParentToControl } from '../share/ipc.js';
import { controlLimitsFrom, openFilesLimit } from './control/limits.js';
import { ControlServer } from './control/server.js';
import { roleMain } from './proc.js';

/** Runs the control role until the parent goes away. */
export function controlMain(): void {
  let server: ControlServer | null = null;
  const send = roleMain<ParentToControl, ControlToParent>(
    isParentToControl,
    (msg, handle) => server?.controlDispatchParent(msg, handle),
    () => server?.shutdown(),
  );
  server = new ControlServer(controlLimitsFrom(process.env, openFilesLimit()), send);
}
