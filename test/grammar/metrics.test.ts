// vm.conf `metrics [address ADDR] port N`: where vmm serves the Prometheus text; `metrics` stays a plain word elsewhere.

import t from 'tap';
import { parse, errorsOf } from './helpers.js';

const ok = (text: string) => {
  const p = parse(text, {}, {});
  if (p.result.config === null) throw new Error(`unexpected errors:\n${p.out}`);
  return p.result.config;
};

t.test('metrics listens on loopback unless an address is given', async (t) => {
  t.same(ok('metrics port 9470\n').global.metrics, { address: '127.0.0.1', port: 9470 });
  t.same(ok('metrics address 0.0.0.0 port 1\n').global.metrics, { address: '0.0.0.0', port: 1 });
  t.same(ok('metrics address "::1" port 65535\n').global.metrics, { address: '::1', port: 65535 });
  t.equal(ok('# none\n').global.metrics, null, 'off by default');
  t.same(ok('p = "9470"\nmetrics port 1\nmetrics port 2\n').global.metrics?.port, 2, 'the last one counts');
});

t.test('bad metrics settings name the value', async (t) => {
  t.equal(errorsOf('metrics port 0\n'), 'vmd: vm.conf:1: invalid metrics port: 0');
  t.equal(errorsOf('metrics port 65536\n'), 'vmd: vm.conf:1: invalid metrics port: 65536');
  t.equal(errorsOf('metrics address localhost port 9470\n'), 'vmd: vm.conf:1: invalid metrics address: localhost');
  t.equal(errorsOf('metrics\n'), 'vmd: vm.conf:1: syntax error', 'a port is required');
  t.equal(errorsOf('metrics port "x"\n'), 'vmd: vm.conf:1: syntax error', 'a port is a number');
});

t.test('metrics is still a name elsewhere', async (t) => {
  t.same(ok('vm metrics { disable }\n').vms.map((v) => v.name), ['metrics']);
});
