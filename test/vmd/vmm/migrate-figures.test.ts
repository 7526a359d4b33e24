// vmd/vmm/migrate.ts completedFigures: a completed migration's downtime and total time are read once QEMU has
// worked them out (run state postmigrate), not in the moment its migration thread has only said `completed`.

import t from 'tap';
import { completedFigures, type QueryMigrate } from '../../../vmd/vmm/migrate.js';

/** QEMU's answers in the order its migration thread gets there: still finish-migrate twice, then postmigrate. */
function qemuFinishing(): { execute(command: string): Promise<unknown>; asked: string[] } {
  const states = ['finish-migrate', 'finish-migrate', 'postmigrate'];
  const asked: string[] = [];
  return {
    asked,
    async execute(command: string): Promise<unknown> {
      asked.push(command);
      if (command === 'query-status') return { status: states.shift() ?? 'postmigrate' };
      if (command === 'query-migrate') return { status: 'completed', downtime: 87, 'total-time': 1464 };
      throw new Error(`unexpected command ${command}`);
    },
  };
}

t.test('the figures are asked for again once the run state is postmigrate', async (t) => {
  const qemu = qemuFinishing();
  const first: QueryMigrate = { status: 'completed', downtime: 0, 'total-time': 0 };
  const q = await completedFigures(qemu as never, first);
  t.equal(q.downtime, 87);
  t.equal(q['total-time'], 1464);
  t.same(qemu.asked, ['query-status', 'query-status', 'query-status', 'query-migrate'], 'after the run state said postmigrate');
});

t.test('a QEMU that never gets to postmigrate: the first figures, after a bounded wait', async (t) => {
  const first: QueryMigrate = { status: 'completed', downtime: 5, 'total-time': 9 };
  let asked = 0;
  const stuck = { async execute(): Promise<unknown> { asked++; return { status: 'finish-migrate' }; } };
  t.equal(await completedFigures(stuck as never, first), first);
  t.ok(asked >= 2 && asked <= 1000, `asked a bounded number of times (${asked})`);
});
