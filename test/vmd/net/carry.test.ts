// Tests for what a migration carries of a VM's counters: at the source only that VM's (less its name), at the
// target seeds under the name the target knows it by, whatever else was sent.

import t from 'tap';
import { carriedOf, carriedSeed } from '../../../vmd/net/carry.js';

t.test('the source carries only its VM\'s counted counters, the target seeds only its VM\'s', async (t) => {
  const counters = new Map([
    ["vm 'web' if0 rule 1", { packets: 4, bytes: 240 }],
    ["vm 'web' if0 rule 2", { packets: 0, bytes: 0 }],
    ["vm 'web' forward tcp/8080", { packets: 2, bytes: 120 }],
    ["vm 'webby' if0 rule 1", { packets: 5, bytes: 300 }],
    ["vm 'other' if0 rule 1", { packets: 6, bytes: 360 }],
    ['nat', { packets: 7, bytes: 420 }],
  ]);
  t.same(carriedOf('web', counters), [{ what: 'if0 rule 1', packets: 4, bytes: 240 }, { what: 'forward tcp/8080', packets: 2, bytes: 120 }]);
  t.same([...carriedSeed('web2', carriedOf('web', counters))], [
    ["vm 'web2' if0 rule 1", { packets: 4, bytes: 240 }],
    ["vm 'web2' forward tcp/8080", { packets: 2, bytes: 120 }],
  ], 'under the name the target knows the VM by');
  t.same([...carriedSeed('web', [{ what: "if0 rule 1' x", packets: 1, bytes: 1 }])], [], 'a counter that is not one of its own is dropped');
});
