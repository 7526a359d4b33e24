// A live migration's TLS in QEMU: the pre-shared key credentials (the parent wrote the key, QEMU reads it by path)
// that encrypt and authenticate the migration stream and the --copy-storage NBD streams, added and taken away again.

import type { QmpClient } from '../qmp.js';

/** The id of the credentials object in the guest's QEMU, named by the migration parameters and the NBD ends. */
export const MIGRATE_TLS_ID = 'vmd-migrate-tls';
/** The PSK identity the source's QEMU sends (vmd/parent/migrate-tls.ts writes the key under it). */
const TLS_USER = 'vmd';

/**
 * Adds the credentials: the target's QEMU is the TLS server (it listens), the source's the client. A server makes
 * its Diffie-Hellman parameters here, which takes a moment (0.8 s measured), before anything moves.
 */
export async function tlsCredsAdd(qmp: QmpClient, dir: string, endpoint: 'server' | 'client'): Promise<void> {
  await qmp.execute('object-add', {
    'qom-type': 'tls-creds-psk', id: MIGRATE_TLS_ID, dir, endpoint, ...(endpoint === 'client' ? { username: TLS_USER } : {}),
  });
}

/** The migration (either end) goes over TLS with the credentials; a plain stream is refused at the handshake. */
export async function tlsMigrationOn(qmp: QmpClient): Promise<void> {
  await qmp.execute('migrate-set-parameters', { 'tls-creds': MIGRATE_TLS_ID });
}

/**
 * After the migration, either way, on a QEMU that runs on: the parameters no longer name the credentials (or the
 * next migration could not add its own) and the object goes. Best effort: a QEMU that is gone has nothing to drop.
 */
export async function tlsCredsRemove(qmp: QmpClient): Promise<void> {
  await qmp.execute('migrate-set-parameters', { 'tls-creds': '' }).catch(() => undefined);
  await qmp.execute('object-del', { id: MIGRATE_TLS_ID }).catch(() => undefined);
}
