// Tests for vmd/proc's Node flags: the parent's come from vmd.ts's shebang (and daemonise), which must say the same as
// PARENT_NODE_FLAGS; the roles' from fork's execArgv. Node must accept all of them, silently.

import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { PARENT_NODE_FLAGS, ROLE_NODE_FLAGS } from '../../vmd/proc.js';
import { vmdEntry } from '../../share/paths.js';

t.test('the shebang of the vmd executable carries exactly PARENT_NODE_FLAGS', async (t) => {
  const first = readFileSync(vmdEntry, 'utf8').split('\n')[0] ?? '';
  t.equal(first, `#!/usr/bin/env -S node ${PARENT_NODE_FLAGS.join(' ')}`);
});

t.test('this Node accepts every flag without a word on stderr (a rejected flag would stop vmd from starting)', async (t) => {
  for (const flags of [PARENT_NODE_FLAGS, ROLE_NODE_FLAGS]) {
    const r = spawnSync(process.execPath, [...flags, '-e', 'process.stdout.write("ok")'], { encoding: 'utf8' });
    t.equal(r.stdout, 'ok', flags.join(' '));
    t.equal(r.stderr, '', `${flags.join(' ')}: stderr`);
  }
});
