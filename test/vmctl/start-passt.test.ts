// Tests for `vmctl start --passt real|nat`: the option, the request's reader (kind and style checked) and the
// interface the daemon makes of it, as vm.conf's `passt interface` would.
import t from 'tap';
import { readRequest } from '../../share/read-request.js';
import { parseStart } from '../../vmctl/start.js';
import { CliError } from '../../vmctl/errors.js';
import { vmFromOptions } from '../../vmd/parent/vm-config.js';

const env = { cwd: '/', warn: () => {} };

t.test('--passt adds passt NICs in order with -L and -n', async (t) => {
  const r = parseStart(['-b', '/bin/true', '--passt', 'real', '-L', '--passt', 'nat', '-n', 'sw', 'web'], env);
  t.same(r.options.nets, [{ kind: 'passt', style: 'real' }, { kind: 'local' }, { kind: 'passt', style: 'nat' }, { kind: 'switch', switch: 'sw' }]);
  t.throws(() => parseStart(['-b', '/bin/true', '--passt', 'qemu', 'web'], env), new CliError('invalid passt style: qemu: want real or nat'));
});

t.test('the reader takes passt nets and refuses bad ones', async (t) => {
  const msg = (net: unknown) => ({ v: 1, id: 1, type: 'vm.start.request', target: 'web', options: { nets: [net] } });
  const ok = readRequest(msg({ kind: 'passt', style: 'nat' }));
  t.same(ok.type === 'vm.start.request' ? ok.options?.nets : null, [{ kind: 'passt', style: 'nat' }]);
  t.throws(() => readRequest(msg({ kind: 'passt', style: 'bridge' })), /style/);
  t.throws(() => readRequest(msg({ kind: 'passt' })), /style/);
  t.throws(() => readRequest(msg({ kind: 'passt', style: 'real', switch: 'x' })), /switch/);
});

t.test('the daemon makes passt interfaces of them', async (t) => {
  const { vm } = vmFromOptions('web', { boot: '/bin/true', nets: [{ kind: 'passt', style: 'real' }, { kind: 'passt', style: 'nat' }, { kind: 'local' }] },
    0, () => undefined, () => false);
  t.same(vm.interfaces.map((n) => n.passt ?? null), [{ dev: null, address: null }, { dev: null, address: '10.0.2.15/24' }, null]);
});
