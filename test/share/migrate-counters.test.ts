// Tests for the firewall counters a migration carries: what a target accepts from a peer (bounded, numbers, only
// counters of the VM it received), in vmctl's commit, the source's counters frame and vmm's message to the parent.

import t from 'tap';
import { readVmmToParent } from '../../share/ipc.js';
import { readMigrateClientFrame, readMigrateCounters } from '../../share/migrate.js';
import { MAX_CARRIED_COUNTS, readCarriedCounts } from '../../share/migrate-counters.js';
import { ProtocolError } from '../../share/protocol.js';

const ok = [
  { what: 'if0 rule 2', packets: 3, bytes: 180 },
  { what: 'if1 mac-spoof', packets: 0, bytes: 0 },
  { what: 'if0 ip-spoof', packets: 1, bytes: 60 },
  { what: 'if0 guard', packets: 2, bytes: 700 },
  { what: 'if0 vlan', packets: 1, bytes: 64 },
  { what: 'forward tcp/8080', packets: 9, bytes: 2 ** 40 },
];

t.test('the VM\'s own counters are read, in a commit, the source\'s counters frame and vmm\'s message', async (t) => {
  t.same(readCarriedCounts(ok, 'x'), ok);
  t.same(readMigrateClientFrame({ type: 'vm.migrate.commit', counters: ok }), { type: 'vm.migrate.commit', counters: ok });
  t.same(readMigrateCounters({ type: 'vm.migrate.counters', counters: ok }), { type: 'vm.migrate.counters', counters: ok });
  t.same(readMigrateCounters({ type: 'vm.migrate.counters', counters: [] }), { type: 'vm.migrate.counters', counters: [] });
  t.throws(() => readMigrateCounters({ type: 'vm.migrate.counters', counters: ok, more: 1 }), /unknown field "more"/);
  t.same(readVmmToParent({ type: 'vm.counters.carry', vmId: 3, counters: ok }), { type: 'vm.counters.carry', vmId: 3, counters: ok });
  t.same(readVmmToParent({ type: 'vm.counters.request', vmId: 3 }), { type: 'vm.counters.request', vmId: 3 });
});

t.test('a peer cannot name another VM\'s counters, send non-numbers or too many', async (t) => {
  const bad: unknown[] = [
    // Another VM's comment, or anything that is not what firewall.ts writes after the name.
    [{ what: "vm 'other' if0 rule 1", packets: 1, bytes: 1 }],
    [{ what: "if0 rule 1' x", packets: 1, bytes: 1 }],
    [{ what: 'if0 rule 1\n', packets: 1, bytes: 1 }],
    [{ what: 'forward sctp/80', packets: 1, bytes: 1 }],
    [{ what: 'if0 rule', packets: 1, bytes: 1 }],
    [{ what: 'mac-spoof', packets: 1, bytes: 1 }],
    // Numbers only: whole, not negative, exact.
    [{ what: 'if0 rule 1', packets: -1, bytes: 1 }],
    [{ what: 'if0 rule 1', packets: 1.5, bytes: 1 }],
    [{ what: 'if0 rule 1', packets: '7', bytes: 1 }],
    [{ what: 'if0 rule 1', packets: 1, bytes: 2 ** 53 }],
    [{ what: 'if0 rule 1', packets: 1 }],
    [{ what: 'if0 rule 1', packets: 1, bytes: 1, extra: true }],
    // The same counter twice would add twice.
    [{ what: 'if0 rule 1', packets: 1, bytes: 1 }, { what: 'if0 rule 1', packets: 1, bytes: 1 }],
    Array.from({ length: MAX_CARRIED_COUNTS + 1 }, (_, i) => ({ what: `if0 rule ${i + 1}`, packets: 1, bytes: 1 })),
    'if0 rule 1', null, [null],
  ];
  for (const counters of bad) {
    t.throws(() => readCarriedCounts(counters, 'x'), ProtocolError, JSON.stringify(counters).slice(0, 80));
    t.throws(() => readMigrateClientFrame({ type: 'vm.migrate.commit', counters }), ProtocolError);
    t.throws(() => readMigrateCounters({ type: 'vm.migrate.counters', counters }), ProtocolError);
    t.throws(() => readVmmToParent({ type: 'vm.counters.carry', vmId: 1, counters }), ProtocolError);
  }
  t.throws(() => readMigrateClientFrame({ type: 'vm.migrate.abort', counters: ok }), /unknown field "counters"/, 'only a commit carries them');
  t.equal(readCarriedCounts(Array.from({ length: MAX_CARRIED_COUNTS }, (_, i) => ({ what: `if0 rule ${i + 1}`, packets: 1, bytes: 1 })), 'x').length, MAX_CARRIED_COUNTS);
});
