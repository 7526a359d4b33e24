// `vmctl display`: control relays a client connection to the guest's VNC socket, which the parent connected as root.
// Bytes are copied both ways, never read; either side closing ends both.

import type { Socket } from 'node:net';

/**
 * Joins a client (whose reader is already switched to raw, `remainder` being what it sent past its request) to the
 * VNC connection; QEMU speaks first (`RFB 003.008\n`), so a well-behaved client has sent nothing yet.
 */
export function displayRelay(client: Socket, vnc: Socket, remainder: Buffer): void {
  const end = (): void => {
    client.destroy();
    vnc.destroy();
  };
  for (const s of [client, vnc]) {
    s.on('error', end);
    s.on('close', end);
  }
  if (remainder.length > 0) vnc.write(remainder);
  client.pipe(vnc);
  vnc.pipe(client);
}
