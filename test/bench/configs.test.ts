// The benchmarks' generated configs must stay valid vm.conf: `npm run bench` is not part of the test run, so a
// grammar or checker change that rejects them would otherwise only show when somebody runs the benchmark.

import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfigText } from '../../grammar/parse.js';
import { generateConfig } from './parse.bench.js';
import { churnConfig } from './churn.bench.js';
import { fleetConfig } from './fleet.bench.js';

t.test('the parse, fleet and churn benchmarks generate configs that parse without errors', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmd-bench-conf-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'img'));
  for (let i = 0; i < 4; i++) writeFileSync(join(dir, `img/disk${i}.img`), '');
  for (const [name, text] of [['parse', generateConfig(40, 6)], ['fleet', fleetConfig(5)], ['churn', churnConfig()]] as const) {
    const r = parseConfigText(text, `${name}.conf`, { cwd: dir });
    t.same(r.diagnostics.filter((d) => d.severity === 'error').map((d) => `${d.line}: ${d.message}`), [], `${name}: no errors`);
    t.ok(r.config !== null, `${name}: a config`);
  }
});
