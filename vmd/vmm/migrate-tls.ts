// A live migration's TLS in QEMU: the pre-shared key credentials (the parent wrote the key, QEMU reads it by path)
// that encrypt and authenticate the migration stream and the --copy-storage NBD streams, added and taken away again.

import { randomBytes } from 'node:crypto';
import { MIGRATE_TLS_USER } from '../../share/migrate.js';
import type { QmpClient } from '../qmp.js';

/** One migration's credentials object in the guest's QEMU, named by the migration parameters and the NBD ends. */
export class MigrationTls {
  /**
   * Fresh for each migration: should a failed one's object outlive it (QEMU refuses to delete one still in use),
   * the next migration of that guest still adds its own.
   */
  readonly id = `vmd-tls-${randomBytes(4).toString('hex')}`;

  constructor(private readonly qmp: QmpClient, private readonly dir: string) {}

  /**
   * Adds the credentials: the target's QEMU is the TLS server (it listens), the source's the client. A server
   * makes its Diffie-Hellman parameters here, which takes a moment (0.8 s measured), before anything moves.
   */
  async add(endpoint: 'server' | 'client'): Promise<void> {
    await this.qmp.execute('object-add', {
      'qom-type': 'tls-creds-psk', id: this.id, dir: this.dir, endpoint, ...(endpoint === 'client' ? { username: MIGRATE_TLS_USER } : {}),
    });
  }

  /** The migration (either end) goes over TLS with the credentials; a plain stream is refused at the handshake. */
  async migrationOn(): Promise<void> {
    await this.qmp.execute('migrate-set-parameters', { 'tls-creds': this.id });
  }

  /**
   * After the migration, either way, on a QEMU that runs on: the parameters no longer name the credentials and
   * the object goes. Best effort: a QEMU that is gone has nothing to drop.
   */
  async remove(): Promise<void> {
    await this.qmp.execute('migrate-set-parameters', { 'tls-creds': '' }).catch(() => undefined);
    await this.qmp.execute('object-del', { id: this.id }).catch(() => undefined);
  }
}
