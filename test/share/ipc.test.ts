// Tests for share/ipc's readers of what the unprivileged roles (vmm, control) send the root parent: valid messages
// pass unchanged; unknown keys, wrong types, numbers out of range, overlong strings and misplaced requests are refused.

import t, { type Test } from 'tap';
import { DEFAULT_MAX_FRAME_BYTES } from '../../share/frame.js';
import { isParentToControl, isParentToVmm, readControlToParent, readVmmToParent } from '../../share/ipc.js';
import { PROTOCOL_VERSION, ProtocolError, type RequestType } from '../../share/protocol.js';
import { HOSTILE_KEYS, mutate, rng, setOwn, type Vocabulary } from '../lib/mutate.js';

type Msg = Record<string, unknown>;
type Reader = (m: unknown) => unknown;

const request = (type: RequestType, fields: Msg = {}): Msg => ({ v: PROTOCOL_VERSION, id: 7, type, ...fields });

const streamConfig: Msg = {
  name: 'web', memory: 256 * 1024 * 1024, cpus: 2, boot: '/k', initrd: '/i', cmdline: 'console=ttyS0', cdrom: null,
  disks: [{ path: '/var/vm/a.qcow2', format: 'qcow2' }], interfaces: [], owner: { uid: 1000, gid: null },
};

const VALID_VMM: Msg[] = [
  { type: 'vmm.ready' },
  { type: 'vm.result', req: 1, error: null },
  { type: 'vm.result', req: 2 ** 53 - 1, error: null, state: 'paused' },
  { type: 'vm.result', req: 3, error: { code: 'ERR_QEMU', message: 'qmp: gone' } },
  { type: 'vm.result', req: 4, error: { code: 'ERR_VM_NOT_RUNNING', message: '', hint: 'start it with: vmctl start a' } },
  { type: 'vm.exited', vmId: 1, pid: 4242, reason: 'guest-shutdown' },
  { type: 'vm.exited', vmId: 2 ** 31 - 1, pid: 2 ** 22, reason: 'host-qmp-quit' },
  { type: 'vm.state', vmId: 5, state: 'running' },
];

const user = { peer: 3, uid: 1000, gid: 1000 };
const root = { peer: 4, uid: 0, gid: 0 };
const start = request('vm.start.request', { target: 'web', options: { memory: 2 ** 28, disks: ['/var/vm/a.img'], nets: [{ kind: 'local' }] } });
const VALID_CONTROL: Msg[] = [
  { type: 'control.ready' },
  { type: 'control.closed', peer: 1 },
  { type: 'control.request', ...user, request: start },
  { type: 'control.request', ...root, request: request('config.reload.request') },
  { type: 'control.request', peer: 2 ** 53 - 1, uid: 2 ** 32 - 2, gid: 2 ** 32 - 2, request: request('vm.status.request') },
  { type: 'control.console', ...user, request: request('vm.console.request', { target: 'web' }), remainder: '' },
  { type: 'control.console', ...user, request: request('vm.console.request', { target: 'web' }), remainder: Buffer.from('ls\n').toString('base64') },
  { type: 'control.capture', ...user, request: request('vm.capture.request', { target: 'web', interface: 0, count: 5 }) },
  { type: 'control.stream', ...root, request: request('vm.send.request', { target: 'web' }), remainder: '' },
  { type: 'control.stream', ...root, request: request('vm.receive.request', { target: 'web2', config: streamConfig }), remainder: 'AAEC' },
];

/** Refused with a ProtocolError whose message names the field. */
function refuses(t: Test, read: Reader, msg: unknown, match: RegExp, name: string): void {
  try {
    read(msg);
    t.fail(`${name}: accepted`);
  } catch (err) {
    t.ok(err instanceof ProtocolError, `${name}: ProtocolError`);
    t.match((err as Error).message, match, `${name}: names the field`);
  }
}

t.test('every message of vmm and control is read unchanged, also after a trip through JSON', async (t) => {
  for (const [read, msgs] of [[readVmmToParent, VALID_VMM], [readControlToParent, VALID_CONTROL]] as const) {
    for (const msg of msgs) {
      t.same(read(msg), msg, JSON.stringify(msg).slice(0, 120));
      t.same(read(JSON.parse(JSON.stringify(msg))), msg);
    }
  }
});

t.test('an unknown key anywhere is refused, named', async (t) => {
  for (const [read, msgs] of [[readVmmToParent, VALID_VMM], [readControlToParent, VALID_CONTROL]] as const) {
    for (const msg of msgs) {
      for (const key of ['forged', '__proto__', 'constructor']) {
        const copy = structuredClone(msg);
        setOwn(copy, key, 0);
        refuses(t, read, copy, new RegExp(`^${(msg.type as string).replace(/\./g, '\\.')}: unknown field "${key}"$`), `${msg.type as string} + ${key}`);
      }
    }
  }
  const forgedRequest = { type: 'control.request', ...root, request: { ...start, forged: true } };
  refuses(t, readControlToParent, forgedRequest, /^control\.request request: vm\.start\.request: unknown field "forged"$/, 'inside the request');
  const forgedOptions = { type: 'control.request', ...root, request: { ...start, options: { boot: '/k', evil: 1 } } };
  refuses(t, readControlToParent, forgedOptions, /^control\.request request: vm\.start\.request options: unknown field "evil"$/, 'inside its options');
  const forgedError = { type: 'vm.result', req: 1, error: { code: 'ERR_QEMU', message: 'x', cause: 'y' } };
  refuses(t, readVmmToParent, forgedError, /^vm\.result error: unknown field "cause"$/, 'inside an error');
});

t.test('vmm: wrong types, numbers out of range, overlong strings and unknown enum values are refused, named', async (t) => {
  const result = { type: 'vm.result', req: 1, error: null };
  const exited = { type: 'vm.exited', vmId: 1, pid: 100, reason: 'killed' };
  const cases: Array<[Msg, string, unknown, RegExp]> = [
    [result, 'req', '1', /^vm\.result: field "req" must be an integer from 1 to 9007199254740991$/],
    [result, 'req', 0, /field "req" must be an integer/],
    [result, 'req', 1.5, /field "req" must be an integer/],
    [result, 'req', 2 ** 53, /field "req" must be an integer/],
    [result, 'req', undefined, /field "req" must be an integer/],
    [result, 'error', 'oops', /^vm\.result: field "error" must be an object or null$/],
    [result, 'error', undefined, /field "error" must be an object or null/],
    [result, 'error', { code: 'ERR_PWNED', message: 'x' }, /^vm\.result error: field "code" must be an error code$/],
    [result, 'error', { code: 'ERR_QEMU', message: 'x'.repeat(64 * 1024 + 1) }, /^vm\.result error: field "message" must be a string of at most 65536/],
    [result, 'error', { code: 'ERR_QEMU', message: 7 }, /field "message"/],
    [result, 'error', { code: 'ERR_QEMU', message: 'x', hint: 'h'.repeat(4097) }, /^vm\.result error: field "hint" must be 1 to 4096 characters$/],
    [result, 'error', { code: 'ERR_QEMU', message: 'x', hint: 'a\0b' }, /field "hint" contains a NUL byte/],
    [result, 'state', 'exploded', /^vm\.result: field "state" must be one of running, /],
    [result, 'state', null, /field "state" must be one of/],
    [exited, 'vmId', 0, /^vm\.exited: field "vmId" must be an integer from 1 to 2147483647$/],
    [exited, 'vmId', 2 ** 31, /field "vmId"/],
    [exited, 'vmId', '1', /field "vmId"/],
    [exited, 'pid', 0, /^vm\.exited: field "pid" must be an integer from 1 to 4194304$/],
    [exited, 'pid', 2 ** 22 + 1, /field "pid"/],
    [exited, 'pid', -1, /field "pid"/],
    [exited, 'reason', 'guest-shutdown\nvmd: fatal: forged log line', /^vm\.exited: field "reason" must be a word/],
    [exited, 'reason', 'a'.repeat(65), /field "reason"/],
    [exited, 'reason', '', /field "reason"/],
    [exited, 'reason', 5, /field "reason"/],
    [{ type: 'vm.state', vmId: 1, state: 'running' }, 'state', 'Running', /^vm\.state: field "state" must be one of/],
    [{ type: 'vm.state', vmId: 1, state: 'running' }, 'vmId', null, /^vm\.state: field "vmId"/],
  ];
  for (const [base, key, value, match] of cases) {
    const msg: Msg = { ...base, [key]: value };
    if (value === undefined) delete msg[key];
    refuses(t, readVmmToParent, msg, match, `${base.type as string} ${key}=${String(JSON.stringify(value)).slice(0, 40)}`);
  }
  refuses(t, readVmmToParent, { type: 'vm.start' }, /^vmm message: unknown type "vm\.start"$/, 'unknown type');
  refuses(t, readVmmToParent, { type: 'control.ready' }, /^vmm message: unknown type "control\.ready"$/, 'another role\'s type');
  refuses(t, readVmmToParent, { req: 1 }, /^vmm message: field "type" must be a string$/, 'no type');
  for (const bad of [null, [], 'vmm.ready', 7]) refuses(t, readVmmToParent, bad, /^vmm message: message must be an object$/, JSON.stringify(bad));
});

t.test('control: forged peers and ids, misplaced or malformed requests and bad remainders are refused, named', async (t) => {
  const req = { type: 'control.request', ...user, request: start };
  const consoleMsg = { type: 'control.console', ...user, request: request('vm.console.request', { target: 'web' }), remainder: '' };
  const maxRemainder = Math.ceil(DEFAULT_MAX_FRAME_BYTES / 3) * 4;
  const cases: Array<[Msg, string, unknown, RegExp]> = [
    [req, 'peer', 0, /^control\.request: field "peer" must be an integer from 1 to 9007199254740991$/],
    [req, 'peer', 1.5, /field "peer"/],
    [req, 'peer', '3', /field "peer"/],
    [req, 'peer', 2 ** 53, /field "peer"/],
    [req, 'uid', -1, /^control\.request: field "uid" must be an integer from 0 to 4294967294$/],
    [req, 'uid', 2 ** 32 - 1, /field "uid"/],
    [req, 'uid', '0', /field "uid"/],
    [req, 'uid', undefined, /field "uid"/],
    [req, 'gid', 0.5, /^control\.request: field "gid"/],
    [req, 'request', 'vm.start.request', /^control\.request request: message: must be a JSON object$/],
    [req, 'request', { ...start, target: 'x'.repeat(64) }, /^control\.request request: vm\.start\.request: field "target" must be 1 to 63 characters$/],
    [req, 'request', { ...start, id: -1 }, /^control\.request request: vm\.start\.request: field "id"/],
    [req, 'request', { ...start, options: { disks: ['relative.img'] } }, /^control\.request request: vm\.start\.request options: disks entries/],
    [req, 'request', { ...start, options: { memory: '1G' } }, /options: field "memory" must be an integer/],
    [req, 'request', request('config.reload.request'), /^control\.request: field "request" is a config\.reload\.request, which uid 1000 may not send$/],
    [req, 'request', request('vm.console.request', { target: 'web' }), /^control\.request: field "request" must not be a vm\.console\.request$/],
    [req, 'request', request('vm.send.request', { target: 'web' }), /field "request" must not be a vm\.send\.request/],
    [consoleMsg, 'request', start, /^control\.console: field "request" must not be a vm\.start\.request$/],
    [consoleMsg, 'remainder', 'not base64!', /^control\.console: field "remainder" must be base64 of at most 1048576 bytes$/],
    [consoleMsg, 'remainder', 'abc', /field "remainder"/],
    [consoleMsg, 'remainder', 'A'.repeat(maxRemainder + 4), /field "remainder"/],
    [consoleMsg, 'remainder', undefined, /field "remainder"/],
    [consoleMsg, 'remainder', 5, /field "remainder"/],
    [{ type: 'control.capture', ...user, request: start }, 'request', request('vm.console.request', { target: 'w' }), /^control\.capture: field "request" must not be a vm\.console\.request$/],
    [{ type: 'control.stream', ...root, request: start, remainder: '' }, 'request', start, /^control\.stream: field "request" must not be a vm\.start\.request$/],
    [{ type: 'control.stream', ...user, request: start, remainder: '' }, 'request', request('vm.send.request', { target: 'w' }), /which uid 1000 may not send/],
    [{ type: 'control.closed', peer: 1 }, 'peer', -1, /^control\.closed: field "peer"/],
  ];
  for (const [base, key, value, match] of cases) {
    const msg: Msg = { ...base, [key]: value };
    if (value === undefined) delete msg[key];
    refuses(t, readControlToParent, msg, match, `${base.type as string} ${key}=${String(JSON.stringify(value)).slice(0, 40)}`);
  }
  t.same(readControlToParent({ ...consoleMsg, remainder: 'A'.repeat(maxRemainder) }), { ...consoleMsg, remainder: 'A'.repeat(maxRemainder) }, 'the longest remainder passes');
  refuses(t, readControlToParent, { type: 'vm.result', req: 1, error: null }, /^control message: unknown type "vm\.result"$/, 'another role\'s type');
});

t.test('the roles still check the type of what the parent sends them', async (t) => {
  t.ok(isParentToVmm({ type: 'vm.stop', req: 1, vmId: 1, force: false }));
  t.notOk(isParentToVmm({ type: 'control.status' }));
  t.ok(isParentToControl({ type: 'control.status', vms: [], warnings: [] }));
  t.notOk(isParentToControl({ type: 'vm.stop' }));
});

const WORDS: Vocabulary = {
  keys: ['type', 'req', 'error', 'state', 'vmId', 'pid', 'reason', 'peer', 'uid', 'gid', 'request', 'remainder', 'code', 'message', 'hint',
    'v', 'id', 'target', 'options', 'memory', 'disks', 'nets', 'kind', 'interface', 'count', 'config', ...HOSTILE_KEYS],
  strings: ['', 'web', '/abs', 'rel', 'ERR_QEMU', 'ERR_X', 'running', 'paused', 'killed', 'guest-reset', 'a b', 'a\0b', 'x'.repeat(64),
    'y'.repeat(5000), 'AAEC', 'AAE', '====', 'vm.start.request', 'vm.console.request', 'config.reload.request', '__proto__', '😀'],
  types: ['vmm.ready', 'vm.result', 'vm.exited', 'vm.state', 'control.ready', 'control.request', 'control.console', 'control.capture',
    'control.closed', 'control.stream', 'control.response', 'vm.stop', 'vm.result '],
};

/** JSON with every object's keys sorted: readers may rebuild a message in their own key order. */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'object' && x !== null && !Array.isArray(x)
    ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    : x));
}

t.test('property (seeds 1-4000): mutated role messages are read back the same or refused with ProtocolError', async (t) => {
  const failures: string[] = [];
  let accepted = 0;
  let refused = 0;
  const seeds: Array<[Reader, Msg]> = [...VALID_VMM.map((m) => [readVmmToParent, m] as [Reader, Msg]), ...VALID_CONTROL.map((m) => [readControlToParent, m] as [Reader, Msg])];
  for (let seed = 1; seed <= 4000; seed++) {
    const r = rng(seed * 104729);
    const [read, base] = seeds[Math.floor(r() * seeds.length)]!;
    const msg = mutate(base, r, WORDS);
    try {
      const got = read(msg);
      accepted++;
      // What passes is well-formed: it reads back the same after JSON, so nothing unread rode along.
      if (JSON.stringify(read(JSON.parse(JSON.stringify(got)))) !== JSON.stringify(got)) failures.push(`seed ${seed}: does not read back the same`);
      if (canonical(got) !== canonical(msg)) failures.push(`seed ${seed}: accepted with changes: ${JSON.stringify(msg).slice(0, 200)}`);
    } catch (err) {
      if (err instanceof ProtocolError) refused++;
      else failures.push(`seed ${seed}: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)} for ${String(JSON.stringify(msg)).slice(0, 200)}`);
    }
  }
  t.same(failures.slice(0, 10), [], 'nothing but ProtocolError, nothing accepted that was not read');
  t.ok(accepted > 50 && refused > 1500, `both outcomes exercised (accepted ${accepted}, refused ${refused})`);
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype untouched');
});
