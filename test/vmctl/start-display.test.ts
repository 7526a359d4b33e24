// Tests for `vmctl start --display vnc|none`: the option, the request's reader, the VM the daemon makes of it, its
// place among an instance's permissions, and the send stream that carries it to the receiver (same VGA card).
import t from 'tap';
import { readRequest } from '../../share/read-request.js';
import { readStreamConfig } from '../../share/stream.js';
import { parseStart } from '../../vmctl/start.js';
import { CliError } from '../../vmctl/errors.js';
import { streamConfigOf, vmFromOptions, vmFromStream } from '../../vmd/parent/vm-config.js';

const env = { cwd: '/', warn: () => {} };

t.test('--display takes vnc or none, once', async (t) => {
  t.equal(parseStart(['-b', '/bin/true', '--display', 'vnc', 'web'], env).options.display, 'vnc');
  t.equal(parseStart(['-b', '/bin/true', 'web'], env).options.display, undefined, 'absent unless given');
  t.throws(() => parseStart(['-b', '/bin/true', '--display', 'vga', 'web'], env), new CliError('unknown display vga: vnc, none'));
  t.throws(() => parseStart(['-b', '/bin/true', '--display', 'vnc', '--display', 'none', 'web'], env), new CliError('display specified multiple times'));
});

t.test('the reader takes a display kind and refuses others', async (t) => {
  const msg = (display: unknown) => ({ v: 1, id: 1, type: 'vm.start.request', target: 'web', options: { display } });
  const ok = readRequest(msg('vnc'));
  t.equal(ok.type === 'vm.start.request' ? ok.options.display : null, 'vnc');
  t.throws(() => readRequest(msg('spice')), /display/);
});

t.test('the daemon\'s VM has it; an instance needs allow instance boot; a stream carries it', async (t) => {
  const { vm } = vmFromOptions('web', { boot: '/bin/true', display: 'vnc' }, 0, () => undefined, () => false);
  t.equal(vm.display, 'vnc');
  const parent = { ...vm, name: 'base', display: null, owner: { uid: 1000, gid: null, user: null, group: null }, allowInstance: { flags: ['memory' as const], owner: null } };
  t.throws(() => vmFromOptions('i', { instanceOf: 'base', display: 'vnc' }, 1000, () => parent, () => false), { code: 'ERR_PERMISSION', message: 'vm "i": no permission to set display' });
  const header = streamConfigOf(4, vm);
  t.equal(header.display, 'vnc');
  t.equal(vmFromStream('web2', readStreamConfig(JSON.parse(JSON.stringify(header)))).display, 'vnc', 'the receiver gets the same card');
  t.equal(streamConfigOf(4, { ...vm, display: 'none' }).display, undefined, 'none: no field, older receivers read it');
  t.throws(() => readStreamConfig({ ...JSON.parse(JSON.stringify(header)), display: 'gtk' }), /display must be vnc or absent/);
});
