// Tests for share/read-request and share/read-response: the readers that decode every control-socket message before anything trusts it.
// Each request type is accepted in its valid shape and refused for every kind of bad shape; random mutations never escape as anything but ProtocolError.

import t, { type Test } from 'tap';
import {
  MAX_CAPTURE_INTERFACE, MAX_NAME, MAX_PATH, MAX_SNAPLEN, MAX_STRING, PROTOCOL_VERSION, ProtocolError, UNPRIVILEGED_REQUESTS,
  type ControlRequest, type FirewallInfo, type LinkInfo, type RequestType, type VmInfo,
} from '../../share/protocol.js';
import { readRequest, requestIdOf } from '../../share/read-request.js';
import { readResponse } from '../../share/read-response.js';
import { mutate, rng, setOwn, type Vocabulary } from '../lib/mutate.js';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Msg = { [k: string]: Json };

/** A valid request of the given type with the given fields, as a client would put it on the wire. */
const req = (type: RequestType, fields: Msg = {}, id = 7): Msg => ({ v: PROTOCOL_VERSION, id, type, ...fields });

/** A copy of a message with one more own key (possibly `__proto__`) at the top or inside `path`. */
function withKey(msg: Msg, path: readonly (string | number)[], key: string, value: Json): Msg {
  const copy = structuredClone(msg);
  let o: any = copy;
  for (const p of path) o = o[p];
  setOwn(o, key, value);
  return copy;
}

function refuses(t: Test, msg: unknown, code: 'ERR_PROTOCOL' | 'ERR_VERSION', name: string, match?: RegExp): void {
  try {
    readRequest(msg);
    t.fail(`${name}: accepted`);
  } catch (err) {
    t.ok(err instanceof ProtocolError, `${name}: ProtocolError`);
    t.equal((err as ProtocolError).code, code, `${name}: ${code}`);
    if (match !== undefined) t.match((err as Error).message, match, `${name}: message`);
  }
}

/** A request the reader accepts and reads back with every field it was given, the protocol version aside. */
function accepts(t: Test, msg: Msg, name = 'accepted, fields kept'): void {
  const { v: _version, ...fields } = msg;
  t.has(readRequest(structuredClone(msg)), fields, name);
}

/** A reply the reader accepts and reads back with every field it was given. */
function acceptsReply(t: Test, msg: Msg, name = 'accepted, fields kept'): void {
  t.has(readResponse(structuredClone(msg)), msg, name);
}

function refusesReply(t: Test, msg: unknown, name: string): void {
  try {
    readResponse(msg);
    t.fail(`${name}: accepted`);
  } catch (err) {
    t.ok(err instanceof ProtocolError, `${name}: ProtocolError`);
    t.equal((err as ProtocolError).code, 'ERR_PROTOCOL', `${name}: ERR_PROTOCOL`);
  }
}

const fullOptions: Msg = {
  memory: 1024 ** 3,
  interfaces: 3,
  nets: [{ kind: 'local' }, { kind: 'switch', switch: 'uplink' }],
  disks: ['/var/vm/a.img', 'raw:/var/vm/b.img', 'qcow2:/var/vm/c.qcow2'],
  boot: '/boot/vmlinuz',
  initrd: '/boot/initrd.img',
  cmdline: 'console=ttyS0 root=/dev/vda',
  cdrom: '/iso/install.iso',
  bootDevice: 'cdrom',
  instanceOf: 'template',
  forwards: [{ proto: 'tcp', hostPort: 2222, guestPort: 22 }, { proto: 'udp', hostPort: 65535, guestPort: 1 }],
};

/** A migration key as vmctl makes them (crypto.randomBytes(32), hex). */
const tlsKey = '0123456789abcdef'.repeat(4);

/** A send stream's configuration with every field used (share/stream.ts has its own reader tests). */
const streamConfig: Msg = {
  name: 'web', memory: 256 * 1024 * 1024, cpus: 2, boot: '/k', initrd: '/i', cmdline: 'console=ttyS0', cdrom: null,
  disks: [{ path: '/var/vm/a.qcow2', format: 'qcow2' }],
  interfaces: [{
    local: false, switch: 'uplink', lladdr: 'fe:e1:bb:00:00:01', locked: true, group: 'web', rdomain: 3,
    forwards: [{ proto: 'tcp', hostPort: 8080, guestPort: 80 }],
    rules: [{ action: 'block', direction: 'in', quick: false, protos: ['tcp'], from: { addresses: ['10.0.0.0/8'], ports: [] }, to: { addresses: [], ports: [{ from: 22, to: 22 }] }, text: 'block in proto tcp from 10.0.0.0/8 to port 22' }],
  }],
  owner: { uid: 1000, gid: null },
};

/** Valid requests of every type: the reader returns them unchanged. */
const VALID: Record<RequestType, Msg[]> = {
  'vm.status.request': [req('vm.status.request'), req('vm.status.request', { target: 'web' }), req('vm.status.request', { target: '3', running: true }), req('vm.status.request', { running: false })],
  'vm.start.request': [
    req('vm.start.request', { target: 'web', options: {} }),
    req('vm.start.request', { target: 'web', options: fullOptions }),
    req('vm.start.request', { target: 'web', options: { bootDevice: 'disk' } }),
    req('vm.start.request', { target: 'web', options: { bootDevice: 'net', interfaces: 0, nets: [], disks: [], forwards: [] } }),
    req('vm.start.request', { target: 'web', options: { cmdline: '' } }),
    req('vm.start.request', { target: 'web', options: { cmdline: 'x'.repeat(MAX_STRING) } }),
    req('vm.start.request', { target: 'n'.repeat(MAX_NAME), options: { instanceOf: 'p'.repeat(MAX_NAME), memory: 2 ** 53 - 1 } }),
    req('vm.start.request', { target: 'web', options: { boot: `/${'b'.repeat(MAX_PATH - 1)}` } }),
  ],
  'vm.stop.request': [req('vm.stop.request', { target: 'web', force: false, wait: false }), req('vm.stop.request', { target: '12', force: true, wait: true })],
  'vm.wait.request': [req('vm.wait.request', { target: 'web' })],
  'vm.pause.request': [req('vm.pause.request', { target: 'web' })],
  'vm.unpause.request': [req('vm.unpause.request', { target: 'web' })],
  'vm.console.request': [req('vm.console.request', { target: 'web' })],
  'config.load.request': [req('config.load.request', { path: '/etc/vm.conf' }), req('config.load.request', { path: '/' })],
  'config.reload.request': [req('config.reload.request'), req('config.reload.request', {}, 0), req('config.reload.request', {}, 2 ** 31 - 1)],
  'config.reset.request': [req('config.reset.request', { mode: 'all' }), req('config.reset.request', { mode: 'vms' }), req('config.reset.request', { mode: 'switches' })],
  'log.verbose.request': [req('log.verbose.request', { level: 0 }), req('log.verbose.request', { level: 3 })],
  'vm.links.request': [req('vm.links.request'), req('vm.links.request', { target: 'web' }), req('vm.links.request', { target: '3' })],
  'vm.firewall.request': [req('vm.firewall.request', { target: 'web' }), req('vm.firewall.request', { target: '3', index: 0 }), req('vm.firewall.request', { target: 'web', index: 1023 })],
  'vm.capture.request': [
    req('vm.capture.request', { target: 'web', interface: 0 }),
    req('vm.capture.request', { target: '3', interface: MAX_CAPTURE_INTERFACE, count: 1, snaplen: 1, filter: 'icmp' }),
    req('vm.capture.request', { target: 'web', interface: 1, count: 2 ** 31 - 1, snaplen: MAX_SNAPLEN, filter: 'f'.repeat(MAX_STRING) }),
    // Whatever the filter says is tcpdump's to judge: it travels as one argument after `--`, never as options.
    req('vm.capture.request', { target: 'web', interface: 0, filter: '-w /etc/passwd' }),
    req('vm.capture.request', { target: 'web', interface: 0, filter: 'tcp port 80\nand not arp' }),
  ],
  'vm.send.request': [req('vm.send.request', { target: 'web' }), req('vm.send.request', { target: '3' })],
  'vm.receive.request': [req('vm.receive.request', { target: 'web2', config: streamConfig }), req('vm.receive.request', { target: 'web2', config: streamConfig, live: true, tlsKey }), req('vm.receive.request', { target: 'web2', config: streamConfig, live: true, copyStorage: [8388608], tlsKey })],
  'vm.migrate.request': [req('vm.migrate.request', { target: 'web', tlsKey }), req('vm.migrate.request', { target: '3', downtimeMs: 300, tlsKey }), req('vm.migrate.request', { target: 'web', copyStorage: true, tlsKey })],
  'vm.log.request': [req('vm.log.request', { target: 'web' }), req('vm.log.request', { target: '3' })],
  'vm.display.request': [req('vm.display.request', { target: 'web' })],
  'vm.grow.request': [req('vm.grow.request', { disk: '/vm/a.qcow2', size: 1048576 })],
  'vm.inspect.request': [req('vm.inspect.request', { target: 'web' })],
  'vm.snapshot.request': [
    req('vm.snapshot.request', { target: 'web', op: 'create' }), req('vm.snapshot.request', { target: 'web', op: 'create', name: 'before-upgrade' }),
    req('vm.snapshot.request', { target: '3', op: 'list' }), req('vm.snapshot.request', { target: 'web', op: 'revert', name: 'a.b:c_1' }),
    req('vm.snapshot.request', { target: 'web', op: 'delete', name: 'x' }),
  ],
  'vm.events.request': [req('vm.events.request'), req('vm.events.request', { target: 'web' }), req('vm.events.request', { target: '3' })],
};

t.test('every request type is accepted in its valid shapes, unchanged', async (t) => {
  for (const [type, msgs] of Object.entries(VALID)) {
    for (const msg of msgs) {
      const got = readRequest(structuredClone(msg));
      t.same(got, msg, `${type} ${JSON.stringify(msg).slice(0, 80)}`);
      t.equal(got.type, type);
      // What a reader returns is itself a valid request (the daemon forwards it between roles).
      t.same(readRequest(JSON.parse(JSON.stringify(got))), got, `${type}: stable`);
    }
  }
});

t.test('a start request without options means no options', async (t) => {
  const got = readRequest(req('vm.start.request', { target: 'web' }));
  t.same(got, { v: 1, id: 7, type: 'vm.start.request', target: 'web', options: {} });
});

t.test('who may send what', async (t) => {
  t.ok(UNPRIVILEGED_REQUESTS.has('vm.links.request'), 'any user may list links, as any user may see status');
  t.notOk(UNPRIVILEGED_REQUESTS.has('config.reset.request'), 'reset stays root only');
  t.ok(UNPRIVILEGED_REQUESTS.has('vm.firewall.request'), 'owners may see their VM\'s firewall (the parent checks ownership)');
  t.ok(UNPRIVILEGED_REQUESTS.has('vm.capture.request'), 'a VM owner may capture (the parent checks ownership)');
  // OpenBSD's control.c never let non-root users send or receive (neither was in its list).
  t.notOk(UNPRIVILEGED_REQUESTS.has('vm.send.request'), 'send is root only');
  t.notOk(UNPRIVILEGED_REQUESTS.has('vm.receive.request'), 'receive is root only');
  t.notOk(UNPRIVILEGED_REQUESTS.has('vm.migrate.request'), 'migrate is root only');
});

t.test('snapshot requests: a name qemu-img could take for an option is refused; revert and delete need one', async (t) => {
  for (const name of ['-l', 'a,b', 'a b', '', 'x'.repeat(128), '../x']) {
    refuses(t, req('vm.snapshot.request', { target: 'web', op: 'create', name }), 'ERR_PROTOCOL', `name ${JSON.stringify(name)}`, /"name"/);
  }
  refuses(t, req('vm.snapshot.request', { target: 'web', op: 'revert' }), 'ERR_PROTOCOL', 'revert without a name', /required to revert/);
  refuses(t, req('vm.snapshot.request', { target: 'web', op: 'delete' }), 'ERR_PROTOCOL', 'delete without a name', /required to delete/);
  refuses(t, req('vm.snapshot.request', { target: 'web', op: 'rollback' }), 'ERR_PROTOCOL', 'unknown op', /"op"/);
});

t.test('firewall requests: bad interface numbers', async (t) => {
  for (const index of [-1, 1024, 1.5, '0', null, true]) {
    refuses(t, req('vm.firewall.request', { target: 'web', index }), 'ERR_PROTOCOL', `index ${JSON.stringify(index)}`, /"index"/);
  }
  refuses(t, req('vm.firewall.request', { target: 'web', rules: [] }), 'ERR_PROTOCOL', 'unknown field');
});

t.test('a migration key is exactly 64 lowercase hex digits, required for a live migration, and never echoed', async (t) => {
  const bad = ['', 'a'.repeat(63), 'a'.repeat(65), 'A'.repeat(64), `${'a'.repeat(62)}zz`, `${'a'.repeat(63)}\n`, 64, null, ['a'.repeat(64)]];
  for (const k of bad) {
    for (const msg of [req('vm.migrate.request', { target: 'web', tlsKey: k }), req('vm.receive.request', { target: 'b', config: streamConfig, live: true, tlsKey: k })]) {
      try {
        readRequest(msg);
        t.fail(`key ${JSON.stringify(k)}: accepted`);
      } catch (err) {
        t.match((err as Error).message, /field "tlsKey" must be 64 lowercase hexadecimal digits/, `key ${JSON.stringify(k)}: refused`);
        if (typeof k === 'string' && k.length > 0) t.notOk((err as Error).message.includes(k), 'the refusal does not quote the key');
      }
    }
  }
  refuses(t, req('vm.migrate.request', { target: 'web' }), 'ERR_PROTOCOL', 'migrate without a key', /"tlsKey" is missing/);
  refuses(t, req('vm.receive.request', { target: 'b', config: streamConfig, live: true }), 'ERR_PROTOCOL', 'a live receive without a key', /"tlsKey" goes with "live"/);
  refuses(t, req('vm.receive.request', { target: 'b', config: streamConfig, tlsKey }), 'ERR_PROTOCOL', 'a key without live', /"tlsKey" goes with "live"/);
});

t.test('a receive request with a bad configuration is a protocol error naming the field', async (t) => {
  refuses(t, req('vm.receive.request', { target: 'b', config: { ...streamConfig, memory: 5 } }), 'ERR_PROTOCOL', 'memory', /^vm\.receive\.request config: memory must be/);
  refuses(t, req('vm.receive.request', { target: 'b', config: { ...streamConfig, extra: 1 } }), 'ERR_PROTOCOL', 'unknown key', /unknown field "extra"/);
  refuses(t, req('vm.receive.request', { target: 'b' }), 'ERR_PROTOCOL', 'no config', /config: must be an object/);
  for (const sizes of [[-1], [2 ** 51], [1.5], ['8M'], 8, Array(65).fill(1)]) {
    refuses(t, req('vm.receive.request', { target: 'b', config: streamConfig, live: true, copyStorage: sizes, tlsKey }), 'ERR_PROTOCOL', `copyStorage ${JSON.stringify(sizes).slice(0, 20)}`, /field "copyStorage"/);
  }
});

t.test('non-objects and unknown types', async (t) => {
  for (const msg of [null, undefined, 0, 1, true, 'vm.status.request', [], [req('vm.status.request')], 1.5]) {
    refuses(t, msg, 'ERR_PROTOCOL', `message ${JSON.stringify(msg)}`, /must be a JSON object/);
  }
  refuses(t, { v: 1, id: 1 }, 'ERR_PROTOCOL', 'no type', /type/);
  refuses(t, { v: 1, id: 1, type: 'vm.bogus.request' }, 'ERR_PROTOCOL', 'unknown type', /unknown type "vm\.bogus\.request"/);
  refuses(t, { v: 1, id: 1, type: 'vm.status.response' }, 'ERR_PROTOCOL', 'a response as request');
  refuses(t, { v: 1, id: 1, type: 'error' }, 'ERR_PROTOCOL', 'error as request');
  refuses(t, { v: 1, id: 1, type: '' }, 'ERR_PROTOCOL', 'empty type');
  refuses(t, { v: 1, id: 1, type: 'x'.repeat(100_000) }, 'ERR_PROTOCOL', 'huge type');
  for (const type of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf']) {
    refuses(t, { v: 1, id: 1, type }, 'ERR_PROTOCOL', `type ${type}`, /unknown type/);
  }
  for (const type of [1, null, true, ['vm.status.request'], { toString: 1 }, { toString: null, valueOf: null }, {}]) {
    refuses(t, { v: 1, id: 1, type }, 'ERR_PROTOCOL', `type ${JSON.stringify(type)}`);
  }
  refuses(t, Object.assign(Object.create(null), { v: 1, id: 1, type: Object.create(null) }), 'ERR_PROTOCOL', 'prototype-less type');
  const got = readRequest(Object.assign(Object.create(null), req('vm.wait.request', { target: 'w' })));
  t.equal(got.type, 'vm.wait.request', 'a prototype-less object is still a message');
});

t.test('protocol version', async (t) => {
  for (const v of [0, 2, 3, 1_000_000]) {
    refuses(t, { ...req('vm.status.request'), v }, 'ERR_VERSION', `v ${v}`, new RegExp(`protocol version ${v} not supported: vmd speaks version 1`));
  }
  // The version is checked before the rest of the shape: a newer client learns it speaks the wrong version.
  refuses(t, { ...req('vm.stop.request', { target: 'x', future: 1 }), v: 2 }, 'ERR_VERSION', 'v 2 with new fields');
  for (const v of [-1, 1.5, '1', null, true, [1], { v: 1 }, 1_000_001, Number.NaN, Infinity]) {
    refuses(t, { ...req('vm.status.request'), v }, 'ERR_PROTOCOL', `v ${String(v)}`);
  }
  const noV: Msg = req('vm.status.request');
  delete noV.v;
  refuses(t, noV, 'ERR_PROTOCOL', 'no v', /"v"/);
});

t.test('request ids', async (t) => {
  for (const id of [-1, 2 ** 31, 1.5, '1', null, false, [1], {}, Number.NaN, Infinity, -0.5]) {
    refuses(t, { ...req('config.reload.request'), id }, 'ERR_PROTOCOL', `id ${String(id)}`, /"id"/);
  }
  const noId: Msg = req('config.reload.request');
  delete noId.id;
  refuses(t, noId, 'ERR_PROTOCOL', 'no id', /"id"/);
});

t.test('missing required fields', async (t) => {
  const cases: Array<[RequestType, Msg, string]> = [
    ['vm.start.request', { options: {} }, 'target'],
    ['vm.stop.request', { force: false, wait: false }, 'target'],
    ['vm.stop.request', { target: 'x', wait: false }, 'force'],
    ['vm.stop.request', { target: 'x', force: false }, 'wait'],
    ['vm.wait.request', {}, 'target'],
    ['vm.pause.request', {}, 'target'],
    ['vm.unpause.request', {}, 'target'],
    ['vm.console.request', {}, 'target'],
    ['config.load.request', {}, 'path'],
    ['config.reset.request', {}, 'mode'],
    ['log.verbose.request', {}, 'level'],
    ['vm.firewall.request', { index: 0 }, 'target'],
    ['vm.capture.request', { interface: 0 }, 'target'],
    ['vm.capture.request', { target: 'web' }, 'interface'],
  ];
  for (const [type, fields, missing] of cases) {
    refuses(t, req(type, fields), 'ERR_PROTOCOL', `${type} without ${missing}`, new RegExp(`^${type.replace(/\./g, '\\.')}: field "${missing}"`));
  }
  refuses(t, req('vm.start.request', { target: 'x', options: { nets: [{ switch: 'sw' }] } }), 'ERR_PROTOCOL', 'net without kind', /"kind"/);
  refuses(t, req('vm.start.request', { target: 'x', options: { nets: [{ kind: 'switch' }] } }), 'ERR_PROTOCOL', 'switch net without switch', /"switch"/);
  for (const k of ['proto', 'hostPort', 'guestPort']) {
    const f: Msg = { proto: 'tcp', hostPort: 80, guestPort: 80 };
    delete f[k];
    refuses(t, req('vm.start.request', { target: 'x', options: { forwards: [f] } }), 'ERR_PROTOCOL', `forward without ${k}`, new RegExp(`"${k}"`));
  }
});

t.test('wrong types', async (t) => {
  // Values of every JSON type but the one each kind of field takes.
  const wrong: Record<'string' | 'boolean' | 'int' | 'object', Json[]> = {
    string: [null, 1, true, [], {}, ['x']],
    boolean: [null, 1, 0, 'true', [], {}, [true]],
    int: [null, true, '1', [], {}, [1]],
    object: [null, 1, true, 'x', [], [{}]],
  };
  const fields: Array<[RequestType, Msg, string, keyof typeof wrong]> = [
    ['vm.status.request', {}, 'target', 'string'],
    ['vm.status.request', {}, 'running', 'boolean'],
    ['vm.start.request', { options: {} }, 'target', 'string'],
    ['vm.start.request', { target: 'x' }, 'options', 'object'],
    ['vm.stop.request', { target: 'x', force: false, wait: false }, 'target', 'string'],
    ['vm.stop.request', { target: 'x', force: false, wait: false }, 'force', 'boolean'],
    ['vm.stop.request', { target: 'x', force: false, wait: false }, 'wait', 'boolean'],
    ['vm.wait.request', {}, 'target', 'string'],
    ['vm.pause.request', {}, 'target', 'string'],
    ['vm.unpause.request', {}, 'target', 'string'],
    ['vm.console.request', {}, 'target', 'string'],
    ['config.load.request', {}, 'path', 'string'],
    ['config.reset.request', {}, 'mode', 'string'],
    ['log.verbose.request', {}, 'level', 'int'],
    ['vm.links.request', {}, 'target', 'string'],
    ['vm.capture.request', { interface: 0 }, 'target', 'string'],
    ['vm.capture.request', { target: 'x' }, 'interface', 'int'],
    ['vm.capture.request', { target: 'x', interface: 0 }, 'count', 'int'],
    ['vm.capture.request', { target: 'x', interface: 0 }, 'snaplen', 'int'],
    ['vm.capture.request', { target: 'x', interface: 0 }, 'filter', 'string'],
  ];
  for (const [type, base, key, kind] of fields) {
    for (const value of wrong[kind]) {
      refuses(t, req(type, { ...base, [key]: value }), 'ERR_PROTOCOL', `${type} ${key}=${JSON.stringify(value)}`);
    }
  }
  for (const value of ['true', 'false', 0, 1]) {
    refuses(t, req('vm.stop.request', { target: 'x', force: value, wait: false }), 'ERR_PROTOCOL', `force ${JSON.stringify(value)}`, /true or false/);
  }
  refuses(t, req('log.verbose.request', { level: '1' }), 'ERR_PROTOCOL', 'level as string');
  refuses(t, req('config.reset.request', { mode: 'ALL' }), 'ERR_PROTOCOL', 'mode in capitals', /one of all, vms, switches/);
  refuses(t, req('config.reset.request', { mode: 'everything' }), 'ERR_PROTOCOL', 'unknown mode');
});

t.test('unknown keys, at the top and nested', async (t) => {
  for (const key of ['extra', 'Target', 'peer', 'uid', '', '__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'x'.repeat(10_000)]) {
    for (const [type, msgs] of Object.entries(VALID)) {
      refuses(t, withKey(msgs[0]!, [], key, 1), 'ERR_PROTOCOL', `${type} + ${key.slice(0, 20)}`, /unknown field/);
    }
    const start = req('vm.start.request', { target: 'x', options: { nets: [{ kind: 'local' }, { kind: 'switch', switch: 's' }], forwards: [{ proto: 'tcp', hostPort: 1, guestPort: 2 }] } });
    refuses(t, withKey(start, ['options'], key, 1), 'ERR_PROTOCOL', `options + ${key.slice(0, 20)}`, /options: unknown field/);
    refuses(t, withKey(start, ['options', 'nets', 0], key, 1), 'ERR_PROTOCOL', `local net + ${key.slice(0, 20)}`, /nets: unknown field/);
    refuses(t, withKey(start, ['options', 'nets', 1], key, 1), 'ERR_PROTOCOL', `switch net + ${key.slice(0, 20)}`, /nets: unknown field/);
    refuses(t, withKey(start, ['options', 'forwards', 0], key, 1), 'ERR_PROTOCOL', `forward + ${key.slice(0, 20)}`, /forwards: unknown field/);
  }
  // A local NIC carries no switch; a switch name on it is an unknown field, not something to ignore.
  refuses(t, req('vm.start.request', { target: 'x', options: { nets: [{ kind: 'local', switch: 's' }] } }), 'ERR_PROTOCOL', 'local net with switch', /unknown field "switch"/);
  // The unknown field is named, bounded, in the message.
  const longKey = withKey(req('config.reload.request'), [], 'y'.repeat(1000), 1);
  refuses(t, longKey, 'ERR_PROTOCOL', 'long unknown key', /unknown field/);
  t.throws(() => readRequest(longKey), { message: /^[\s\S]{1,199}$/ }, 'long unknown key is cut in the message');
  // JSON.parse makes __proto__ an own key: it must be refused there too, and must not change any prototype.
  refuses(t, JSON.parse('{"v":1,"id":1,"type":"config.reload.request","__proto__":{"polluted":1}}'), 'ERR_PROTOCOL', 'JSON __proto__', /unknown field "__proto__"/);
  refuses(t, JSON.parse('{"v":1,"id":1,"type":"vm.start.request","target":"x","options":{"__proto__":{"memory":1}}}'), 'ERR_PROTOCOL', 'JSON options.__proto__');
  refuses(t, JSON.parse('{"v":1,"id":1,"type":"vm.start.request","target":"x","options":{"constructor":{"prototype":{"polluted":1}}}}'), 'ERR_PROTOCOL', 'JSON options.constructor');
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype untouched');
});

t.test('strings: empty, too long, NUL', async (t) => {
  const nameFields: Array<[RequestType, Msg, string]> = [
    ['vm.status.request', {}, 'target'],
    ['vm.start.request', { options: {} }, 'target'],
    ['vm.stop.request', { force: false, wait: false }, 'target'],
    ['vm.wait.request', {}, 'target'],
    ['vm.pause.request', {}, 'target'],
    ['vm.unpause.request', {}, 'target'],
    ['vm.console.request', {}, 'target'],
    ['vm.links.request', {}, 'target'],
    ['vm.capture.request', { interface: 0 }, 'target'],
  ];
  for (const [type, base, key] of nameFields) {
    accepts(t, req(type, { ...base, [key]: 'n'.repeat(MAX_NAME) }), `${type} ${key} of ${MAX_NAME}`);
    refuses(t, req(type, { ...base, [key]: 'n'.repeat(MAX_NAME + 1) }), 'ERR_PROTOCOL', `${type} ${key} too long`, /1 to 63 characters/);
    refuses(t, req(type, { ...base, [key]: '' }), 'ERR_PROTOCOL', `${type} ${key} empty`, /1 to 63 characters/);
    refuses(t, req(type, { ...base, [key]: 'we\0b' }), 'ERR_PROTOCOL', `${type} ${key} NUL`, /NUL/);
    refuses(t, req(type, { ...base, [key]: '\0' }), 'ERR_PROTOCOL', `${type} ${key} only NUL`, /NUL/);
  }
  // Lengths count UTF-16 code units, so a name of 63 astral characters is too long (126 units).
  refuses(t, req('vm.wait.request', { target: '😀'.repeat(MAX_NAME) }), 'ERR_PROTOCOL', 'astral name');

  const opt = (options: Msg): Msg => req('vm.start.request', { target: 'x', options });
  accepts(t, opt({ instanceOf: 'i'.repeat(MAX_NAME) }));
  refuses(t, opt({ instanceOf: 'i'.repeat(MAX_NAME + 1) }), 'ERR_PROTOCOL', 'instanceOf too long', /"instanceOf"/);
  refuses(t, opt({ instanceOf: '' }), 'ERR_PROTOCOL', 'instanceOf empty');
  refuses(t, opt({ instanceOf: 'a\0' }), 'ERR_PROTOCOL', 'instanceOf NUL');
  refuses(t, opt({ nets: [{ kind: 'switch', switch: 's'.repeat(MAX_NAME + 1) }] }), 'ERR_PROTOCOL', 'switch name too long');
  refuses(t, opt({ nets: [{ kind: 'switch', switch: '' }] }), 'ERR_PROTOCOL', 'switch name empty');
  refuses(t, opt({ nets: [{ kind: 'switch', switch: 'a\0b' }] }), 'ERR_PROTOCOL', 'switch name NUL');

  accepts(t, opt({ cmdline: 'c'.repeat(MAX_STRING) }), 'cmdline of MAX_STRING');
  refuses(t, opt({ cmdline: 'c'.repeat(MAX_STRING + 1) }), 'ERR_PROTOCOL', 'cmdline too long', /"cmdline"/);
  refuses(t, opt({ cmdline: 'console=ttyS0\0init=/bin/sh' }), 'ERR_PROTOCOL', 'cmdline NUL', /"cmdline"/);
  for (const value of [1, null, true, ['a'], {}]) refuses(t, opt({ cmdline: value }), 'ERR_PROTOCOL', `cmdline ${JSON.stringify(value)}`);

  const cap = (fields: Msg): Msg => req('vm.capture.request', { target: 'x', interface: 0, ...fields });
  refuses(t, cap({ filter: 'f'.repeat(MAX_STRING + 1) }), 'ERR_PROTOCOL', 'filter too long', /"filter"/);
  refuses(t, cap({ filter: '' }), 'ERR_PROTOCOL', 'filter empty (absent means none)', /"filter"/);
  refuses(t, cap({ filter: 'icmp\0-w x' }), 'ERR_PROTOCOL', 'filter NUL', /NUL/);
});

t.test('paths: absolute, bounded, no NUL', async (t) => {
  const opt = (options: Msg): Msg => req('vm.start.request', { target: 'x', options });
  const long = `/${'p'.repeat(MAX_PATH)}`;
  for (const key of ['boot', 'initrd', 'cdrom']) {
    accepts(t, opt({ [key]: `/${'p'.repeat(MAX_PATH - 1)}` }), `${key} of ${MAX_PATH}`);
    for (const bad of ['relative.img', './x', '../x', '~/x', '', long, '/a\0b', 'raw:/x']) {
      refuses(t, opt({ [key]: bad }), 'ERR_PROTOCOL', `${key} ${JSON.stringify(bad.slice(0, 20))}`, new RegExp(`"${key}"`));
    }
    for (const value of [1, null, true, ['/x'], {}]) refuses(t, opt({ [key]: value }), 'ERR_PROTOCOL', `${key} ${JSON.stringify(value)}`);
  }
  accepts(t, req('config.load.request', { path: `/${'p'.repeat(MAX_PATH - 1)}` }), 'load path of MAX_PATH');
  for (const bad of ['vm.conf', 'etc/vm.conf', '', long, '/etc/vm.conf\0', 1, null, ['/etc/vm.conf']]) {
    refuses(t, req('config.load.request', { path: bad }), 'ERR_PROTOCOL', `load path ${JSON.stringify(bad).slice(0, 20)}`, /"path"/);
  }

  // Disks: absolute, optionally after the format vmctl -d accepts.
  for (const good of ['/d.img', 'raw:/d.img', 'qcow2:/d.qcow2', `/${'d'.repeat(MAX_PATH - 1)}`, `qcow2:/${'d'.repeat(MAX_PATH - 1)}`, 'nvme:/d.img', 'ide:qcow2:/d.qcow2', `sata:raw:/${'d'.repeat(MAX_PATH - 1)}`]) {
    accepts(t, opt({ disks: [good] }), `disk ${good.slice(0, 20)}`);
  }
  for (const bad of ['d.img', 'raw:d.img', 'qcow2:', 'vmdk:/d.img', 'RAW:/d.img', 'qcow2:nvme:/d.img', 'usb:/d.img', `nvme:/${'d'.repeat(MAX_PATH)}`, ':/d.img', '', '/d\0.img', `/${'d'.repeat(MAX_PATH + 8)}`, 1, null, ['/d'], { path: '/d' }]) {
    refuses(t, opt({ disks: [bad] }), 'ERR_PROTOCOL', `disk ${JSON.stringify(bad).slice(0, 20)}`, /disks entries/);
  }
  refuses(t, opt({ disks: ['/ok.img', 'bad.img'] }), 'ERR_PROTOCOL', 'one bad disk among good ones');
});

t.test('integers out of range', async (t) => {
  const opt = (options: Msg): Msg => req('vm.start.request', { target: 'x', options });
  for (const level of [-1, 4, 1.5, 2 ** 53, Number.NaN]) refuses(t, req('log.verbose.request', { level }), 'ERR_PROTOCOL', `level ${level}`, /from 0 to 3/);
  for (const memory of [0, -1, 1.5, 2 ** 53, 1e300, '512M']) refuses(t, opt({ memory }), 'ERR_PROTOCOL', `memory ${memory}`, /"memory"/);
  accepts(t, opt({ memory: 1 }), 'memory 1');
  for (const interfaces of [-1, 2 ** 31, 0.5, '1']) refuses(t, opt({ interfaces }), 'ERR_PROTOCOL', `interfaces ${interfaces}`, /"interfaces"/);
  const cap = (fields: Msg): Msg => req('vm.capture.request', { target: 'x', interface: 0, ...fields });
  for (const i of [-1, MAX_CAPTURE_INTERFACE + 1, 0.5, 2 ** 31]) refuses(t, cap({ interface: i }), 'ERR_PROTOCOL', `capture interface ${i}`, /"interface"/);
  for (const count of [0, -1, 2 ** 31, 1.5]) refuses(t, cap({ count }), 'ERR_PROTOCOL', `capture count ${count}`, /"count"/);
  for (const snaplen of [0, -1, MAX_SNAPLEN + 1, 1.5]) refuses(t, cap({ snaplen }), 'ERR_PROTOCOL', `capture snaplen ${snaplen}`, /"snaplen"/);
  accepts(t, opt({ interfaces: 2 ** 31 - 1 }), 'interfaces at the bound (vmd checks the NIC limit itself)');
  for (const port of [0, -1, 65536, 22.5, '22', null]) {
    refuses(t, opt({ forwards: [{ proto: 'tcp', hostPort: port, guestPort: 22 }] }), 'ERR_PROTOCOL', `hostPort ${String(port)}`, /"hostPort"/);
    refuses(t, opt({ forwards: [{ proto: 'tcp', hostPort: 22, guestPort: port }] }), 'ERR_PROTOCOL', `guestPort ${String(port)}`, /"guestPort"/);
  }
});

t.test('start options: lists, nets, forwards, boot device', async (t) => {
  const opt = (options: Msg): Msg => req('vm.start.request', { target: 'x', options });
  const got = readRequest(opt(fullOptions)) as Extract<ControlRequest, { type: 'vm.start.request' }>;
  t.same(got.options.nets, [{ kind: 'local' }, { kind: 'switch', switch: 'uplink' }]);
  t.same(got.options.forwards?.[0], { proto: 'tcp', hostPort: 2222, guestPort: 22 });

  for (const key of ['nets', 'disks', 'forwards']) {
    for (const value of [null, 1, 'x', {}, true]) refuses(t, opt({ [key]: value }), 'ERR_PROTOCOL', `${key} ${JSON.stringify(value)}`, /must be a list/);
  }
  accepts(t, opt({ nets: Array.from({ length: 64 }, () => ({ kind: 'local' })) }), '64 nets');
  refuses(t, opt({ nets: Array.from({ length: 65 }, () => ({ kind: 'local' })) }), 'ERR_PROTOCOL', '65 nets', /at most 64/);
  refuses(t, opt({ disks: Array.from({ length: 65 }, () => '/d') }), 'ERR_PROTOCOL', '65 disks', /at most 64/);
  refuses(t, opt({ forwards: Array.from({ length: 65 }, () => ({ proto: 'tcp', hostPort: 1, guestPort: 1 })) }), 'ERR_PROTOCOL', '65 forwards', /at most 64/);

  for (const n of [null, 'local', 1, ['local'], {}]) refuses(t, opt({ nets: [n] }), 'ERR_PROTOCOL', `net ${JSON.stringify(n)}`);
  for (const kind of ['tap', 'LOCAL', '', 1, null]) refuses(t, opt({ nets: [{ kind }] }), 'ERR_PROTOCOL', `net kind ${JSON.stringify(kind)}`, /"kind"/);
  for (const sw of [1, null, true, ['s'], {}]) refuses(t, opt({ nets: [{ kind: 'switch', switch: sw }] }), 'ERR_PROTOCOL', `switch ${JSON.stringify(sw)}`, /"switch"/);

  for (const f of [null, 'tcp:80:80', 1, [], ['tcp', 80, 80]]) refuses(t, opt({ forwards: [f] }), 'ERR_PROTOCOL', `forward ${JSON.stringify(f)}`);
  for (const proto of ['sctp', 'TCP', '', 6, null]) refuses(t, opt({ forwards: [{ proto, hostPort: 1, guestPort: 1 }] }), 'ERR_PROTOCOL', `proto ${JSON.stringify(proto)}`, /"proto"/);

  for (const bootDevice of ['cdrom', 'disk', 'net']) accepts(t, opt({ bootDevice }), `bootDevice ${bootDevice}`);
  for (const bootDevice of ['c', 'd', 'n', 'CDROM', 'hd', '', null, 1, ['disk']]) {
    refuses(t, opt({ bootDevice }), 'ERR_PROTOCOL', `bootDevice ${JSON.stringify(bootDevice)}`, /"bootDevice"/);
  }
});

t.test('requestIdOf', async (t) => {
  t.equal(requestIdOf(req('config.reload.request', {}, 42)), 42);
  t.equal(requestIdOf({ id: 0 }), 0);
  t.equal(requestIdOf({ id: 2 ** 31 - 1, type: 'bogus' }), 2 ** 31 - 1, 'the id even when the rest is wrong');
  for (const msg of [null, undefined, 5, 'x', [], [1], {}, { id: '5' }, { id: 1.5 }, { id: Number.NaN }, { id: Infinity }, { id: null }, { id: [5] }, { id: -1 }, { id: 2 ** 31 }, { id: 2 ** 53 }]) {
    t.equal(requestIdOf(msg), 0, `${JSON.stringify(msg) ?? String(msg)} gives 0`);
  }
  // Whatever requestIdOf gives is an id an error reply can carry and the client can read back.
  for (const id of [0, 1, 2 ** 31 - 1, -5, 2 ** 40]) {
    const reply = { type: 'error', id: requestIdOf({ id }), error: { code: 'ERR_PROTOCOL', message: 'x' } };
    acceptsReply(t, reply, `error reply for id ${id} decodes`);
  }
});

const vmInfo: VmInfo = {
  id: 1, name: 'web', pid: 4242, vcpus: 1, maxmem: 512 * 1024 ** 2, curmem: 100 * 1024 ** 2, tty: '/var/lib/vmd/run/1/console',
  owner: 'root', uid: 0, gid: null, state: 'running', started: '2026-01-01T00:00:00.000Z', origin: 'config',
};
const linkInfo: LinkInfo = {
  vmId: 1, vm: 'web', index: 0, link: 'vmd1i0', lladdr: 'fe:e1:bb:d1:2a:3b', switch: 'uplink', local: false, address: '10.0.0.23/24',
  rxPackets: 12, rxBytes: 3456, rxDropped: 0, txPackets: 2 ** 53 - 1, txBytes: 0, txDropped: 1, spoofDropped: 3, blocked: 0,
};
const firewallInfo: FirewallInfo = {
  vmId: 1, vm: 'web', index: 0, link: 'vmd1i0', switch: 'uplink', local: false, lockedLladdr: true, lockedIp: null,
  rules: [
    { n: 1, text: 'block in', action: 'block', source: '/etc/vm.conf:12', count: { packets: 3, bytes: 252 } },
    { n: 2, text: 'pass in proto tcp to any port 80', action: 'pass', source: '/etc/vm.conf:13', count: { packets: 1, bytes: 60 } },
  ],
  macSpoof: { packets: 0, bytes: 0 }, ipSpoof: null, vlan: { packets: 0, bytes: 0 }, guarded: ['dhcp'], guard: { packets: 2, bytes: 684 },
};
const stoppedFirewall: FirewallInfo = {
  ...firewallInfo, link: null, lockedLladdr: false, rules: firewallInfo.rules.map((r) => ({ ...r, count: null })), macSpoof: null, vlan: null, guarded: [], guard: null,
};
const localLinkInfo: LinkInfo = { ...linkInfo, index: 1, link: 'vmd1i1', switch: null, local: true, address: '100.64.1.3/31' };
const stoppedInfo: VmInfo = { ...vmInfo, id: 2, name: 'db', pid: null, curmem: null, tty: null, started: null, state: 'stopped', owner: 'alice:staff', uid: 1000, gid: 50, origin: 'adhoc' };

t.test('readResponse: every response type', async (t) => {
  const valid: Array<Record<string, unknown>> = [
    { type: 'vm.status.response', id: 1, vms: [vmInfo, stoppedInfo], warnings: [] },
    { type: 'vm.status.response', id: 1, vms: [], warnings: ['something'] },
    { type: 'vm.start.response', id: 2, vm: vmInfo, warnings: ['starting without disks'] },
    { type: 'vm.stop.response', id: 3, vmId: 1, name: 'web', result: 'requested' },
    { type: 'vm.stop.response', id: 3, vmId: 1, name: 'web', result: 'terminated' },
    { type: 'vm.wait.response', id: 4, vmId: 1, name: 'web' },
    { type: 'vm.pause.response', id: 5, vmId: 1, name: 'web' },
    { type: 'vm.unpause.response', id: 6, vmId: 1, name: 'web' },
    { type: 'vm.console.response', id: 7, vmId: 1, name: 'web' },
    { type: 'vm.links.response', id: 10, links: [linkInfo, localLinkInfo] },
    { type: 'vm.links.response', id: 10, links: [{ ...linkInfo, switch: null, address: null }, { ...linkInfo, address: 'fd00::3/96' }] },
    { type: 'vm.links.response', id: 10, links: [] },
    { type: 'vm.firewall.response', id: 11, interfaces: [firewallInfo, stoppedFirewall, { ...firewallInfo, index: 1, local: true, switch: null, lockedIp: '100.64.1.5', ipSpoof: { packets: 9, bytes: 900 }, rules: [] }] },
    { type: 'vm.firewall.response', id: 11, interfaces: [] },
    { type: 'vm.capture.response', id: 11, vmId: 1, name: 'web', interface: 0, link: 'vmd1i0' },
    { type: 'vm.send.response', id: 11, vmId: 1, name: 'web' },
    { type: 'vm.receive.response', id: 12, phase: 'ready', vm: vmInfo },
    { type: 'vm.receive.response', id: 12, phase: 'done', vm: vmInfo },
    { type: 'vm.receive.response', id: 12, phase: 'ready', vm: vmInfo, port: 49152 },
    { type: 'vm.migrate.response', id: 13, vmId: 1, name: 'web', phase: 'ready', config: streamConfig },
    { type: 'vm.migrate.response', id: 13, vmId: 1, name: 'web', phase: 'done' },
    { type: 'vm.receive.response', id: 12, phase: 'ready', vm: vmInfo, port: 49152, nbdPort: 10809 },
    { type: 'vm.migrate.response', id: 13, vmId: 1, name: 'web', phase: 'ready', config: streamConfig, diskSizes: [8388608] },
    { type: 'ok.response', id: 8 },
    { type: 'vm.events.response', id: 8 },
    { type: 'vm.event', id: 8, event: { time: '2026-12-07T02:40:00.123Z', event: 'stopped', vmId: 3, vm: 'web', reason: 'host-qmp-quit' } },
    { type: 'error', id: 9, error: { code: 'ERR_VM_NOT_FOUND', message: 'vm "x": not found' } },
    { type: 'error', id: 0, error: { code: 'ERR_PERMISSION', message: 'denied', hint: 'ask root' } },
  ];
  for (const msg of valid) t.same(readResponse(structuredClone(msg)), msg, String(msg.type));
  for (const state of ['running', 'stopped', 'paused', 'waiting', 'stopping', 'starting']) {
    acceptsReply(t, { type: 'vm.start.response', id: 1, vm: { ...vmInfo, state }, warnings: [] }, `state ${state}`);
  }
  for (const origin of ['config', 'adhoc', 'load', 'instance']) {
    acceptsReply(t, { type: 'vm.start.response', id: 1, vm: { ...vmInfo, origin }, warnings: [] }, `origin ${origin}`);
  }
  t.same(readResponse({ type: 'vm.status.response', id: 1 }), { type: 'vm.status.response', id: 1, vms: [], warnings: [] }, 'absent lists are empty');
  t.same(readResponse({ type: 'vm.links.response', id: 1 }), { type: 'vm.links.response', id: 1, links: [] }, 'absent links are none');
  t.same(readResponse({ type: 'vm.links.response', id: 1, links: [{ ...linkInfo, future: 1 }] }), { type: 'vm.links.response', id: 1, links: [linkInfo] },
    'a field a newer vmd adds is dropped, as for vm info');
  t.same(readResponse({ type: 'error', id: 1, error: { code: 'ERR_QEMU', message: 'x', hint: 7 } }), { type: 'error', id: 1, error: { code: 'ERR_QEMU', message: 'x' } }, 'a non-string hint is dropped');
});

t.test('readResponse: refusals', async (t) => {
  for (const msg of [null, undefined, 1, 'ok.response', [], [{ type: 'ok.response', id: 1 }]]) refusesReply(t, msg, `reply ${JSON.stringify(msg)}`);
  refusesReply(t, { id: 1 }, 'no type');
  refusesReply(t, { type: 1, id: 1 }, 'numeric type');
  refusesReply(t, { type: 'vm.bogus', id: 1 }, 'unknown type');
  refusesReply(t, { type: 'vm.status.request', id: 1 }, 'a request as reply');
  for (const id of [-1, 2 ** 31, 1.5, '1', null, undefined]) refusesReply(t, { type: 'ok.response', id }, `id ${String(id)}`);
  refusesReply(t, { type: 'error', id: 1 }, 'error without error');
  refusesReply(t, { type: 'error', id: 1, error: { code: 'ERR_BOGUS', message: 'x' } }, 'unknown error code');
  refusesReply(t, { type: 'error', id: 1, error: { code: 'ERR_QEMU' } }, 'error without message');
  refusesReply(t, { type: 'error', id: 1, error: 'ERR_QEMU' }, 'error as string');
  refusesReply(t, { type: 'vm.stop.response', id: 1, vmId: 1, name: 'web', result: 'done' }, 'unknown stop result');
  refusesReply(t, { type: 'vm.stop.response', id: 1, vmId: -1, name: 'web', result: 'requested' }, 'negative vmId');
  refusesReply(t, { type: 'vm.wait.response', id: 1, vmId: 1, name: '' }, 'empty name');
  refusesReply(t, { type: 'vm.console.response', id: 1, vmId: 1 }, 'no name');
  const capture = { type: 'vm.capture.response', id: 1, vmId: 1, name: 'web', interface: 0, link: 'vmd1i0' };
  for (const [k, value] of [['link', ''], ['link', 'l'.repeat(16)], ['link', undefined], ['interface', -1], ['interface', '0'], ['name', undefined]] as const) {
    const msg: Record<string, unknown> = { ...capture, [k]: value };
    if (value === undefined) delete msg[k];
    refusesReply(t, msg, `capture ${k}=${String(value)}`);
  }
  refusesReply(t, { type: 'vm.status.response', id: 1, vms: {} }, 'vms not a list');
  refusesReply(t, { type: 'vm.status.response', id: 1, vms: [null] }, 'vm entry null');
  refusesReply(t, { type: 'vm.start.response', id: 1, warnings: [] }, 'start without vm');
  for (const warning of [1, null, {}, { toString: 1 }, { toString: null, valueOf: null }, ['w']]) {
    refusesReply(t, { type: 'vm.status.response', id: 1, vms: [], warnings: [warning] }, `warning ${JSON.stringify(warning)}`);
  }
  const broken: Array<[string, unknown]> = [
    ['id', 0], ['id', null], ['name', ''], ['name', 'n'.repeat(MAX_NAME + 1)], ['pid', -1], ['pid', '1'], ['pid', undefined],
    ['vcpus', 0], ['vcpus', 1025], ['maxmem', -1], ['curmem', 1.5], ['tty', ''], ['tty', 1], ['owner', ''], ['owner', 'o'.repeat(65)],
    ['uid', -1], ['uid', 2 ** 32], ['gid', '0'], ['state', 'dead'], ['state', null], ['started', 5], ['origin', 'cli'], ['origin', undefined],
  ];
  for (const [k, value] of broken) {
    const vm: Record<string, unknown> = { ...vmInfo, [k]: value };
    if (value === undefined) delete vm[k];
    refusesReply(t, { type: 'vm.start.response', id: 1, vm, warnings: [] }, `vm ${k}=${String(value)}`);
  }
  refusesReply(t, { type: 'vm.links.response', id: 1, links: {} }, 'links not a list');
  for (const entry of [null, 1, 'vmd1i0', [linkInfo]]) refusesReply(t, { type: 'vm.links.response', id: 1, links: [entry] }, `link entry ${JSON.stringify(entry).slice(0, 20)}`);
  const brokenLinks: Array<[string, unknown]> = [
    ['vmId', 0], ['vmId', '1'], ['vmId', undefined], ['vm', ''], ['vm', 'n'.repeat(MAX_NAME + 1)], ['vm', null], ['index', -1], ['index', 1.5],
    ['link', ''], ['link', 'l'.repeat(16)], ['link', null], ['lladdr', 'fe:e1:bb:d1:2a'], ['lladdr', 'fe-e1-bb-d1-2a-3b'], ['lladdr', ''], ['lladdr', null],
    ['switch', ''], ['switch', 1], ['switch', undefined], ['local', 'false'], ['local', null], ['address', '10.0.0.23'], ['address', 'web/24'],
    ['address', ''], ['address', undefined], ['rxPackets', -1], ['rxBytes', 2 ** 53], ['rxDropped', '0'], ['txPackets', null], ['txBytes', 1.5],
    ['txDropped', undefined],
  ];
  for (const [k, value] of brokenLinks) {
    const link: Record<string, unknown> = { ...linkInfo, [k]: value };
    if (value === undefined) delete link[k];
    refusesReply(t, { type: 'vm.links.response', id: 1, links: [linkInfo, link] }, `link ${k}=${String(value)}`);
  }
});

// ---- property: random mutations of valid messages throw nothing but ProtocolError ----

const KEYS = ['type', 'v', 'id', 'target', 'options', 'force', 'wait', 'running', 'path', 'mode', 'level', 'memory', 'interfaces', 'nets',
  'disks', 'boot', 'initrd', 'cmdline', 'cdrom', 'bootDevice', 'instanceOf', 'forwards', 'kind', 'switch', 'proto', 'hostPort', 'guestPort',
  'vms', 'vm', 'warnings', 'links', 'count', 'snaplen', 'filter', 'interface', 'link', 'lladdr', 'local', 'address', 'index', 'rxBytes', 'error', 'code', 'message', 'hint', 'vmId', 'name', 'result', 'pid', 'state', 'origin', 'tty', 'started',
  '__proto__', 'constructor', 'prototype', 'toString', 'valueOf', 'hasOwnProperty', 'toJSON', 'length', '0', '', 'extra'];
const STRINGS = ['', 'web', '/abs/path', 'rel/path', 'raw:/d', 'qcow2:x', 'a\0b', '\0', 'x'.repeat(64), 'y'.repeat(1024), 'z'.repeat(5000),
  'vm.status.request', 'vm.start.request', 'config.load.request', 'ok.response', 'error', 'ERR_PROTOCOL', 'local', 'switch', 'tcp', 'udp',
  'cdrom', 'disk', 'net', 'all', 'running', 'config', '__proto__', 'toString', '😀', '\u2028', '-1', '1'];
/** The requests' vocabulary, for mutants that are near misses. */
const WORDS: Vocabulary = {
  keys: KEYS, strings: STRINGS, types: [...Object.keys(VALID), 'vm.status.response', 'error', 'ok.response', 'vm.stop.response'],
};

t.test('property: mutated requests are accepted or refused with ProtocolError, nothing else', async (t) => {
  const seeds = Object.values(VALID).flat();
  const runs = 6000;
  let accepted = 0;
  let refused = 0;
  const failures: string[] = [];
  for (let seed = 1; seed <= runs; seed++) {
    const r = rng(seed);
    const msg = mutate(seeds[Math.floor(r() * seeds.length)], r, WORDS);
    try {
      const got = readRequest(msg);
      accepted++;
      // Anything accepted is well-formed: it survives JSON and reads back the same.
      const again = readRequest(JSON.parse(JSON.stringify(got)));
      if (JSON.stringify(again) !== JSON.stringify(got)) failures.push(`seed ${seed}: accepted message does not read back the same`);
      if (JSON.stringify(got).includes('\\u0000')) failures.push(`seed ${seed}: accepted a NUL`);
    } catch (err) {
      if (err instanceof ProtocolError && (err.code === 'ERR_PROTOCOL' || err.code === 'ERR_VERSION')) refused++;
      else failures.push(`seed ${seed}: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)} for ${String(JSON.stringify(msg)).slice(0, 200)}`);
    }
    const id = requestIdOf(msg);
    if (!Number.isSafeInteger(id) || id < 0 || id > 2 ** 31 - 1) failures.push(`seed ${seed}: requestIdOf gave ${id}`);
  }
  t.same(failures.slice(0, 10), [], 'no other exceptions');
  t.ok(accepted > 100 && refused > 1000, `both outcomes exercised (accepted ${accepted}, refused ${refused})`);
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype untouched');
});

t.test('property: mutated replies are accepted or refused with ProtocolError, nothing else', async (t) => {
  const seeds: unknown[] = [
    { type: 'vm.status.response', id: 1, vms: [vmInfo, stoppedInfo], warnings: ['w'] },
    { type: 'vm.start.response', id: 2, vm: vmInfo, warnings: [] },
    { type: 'vm.stop.response', id: 3, vmId: 1, name: 'web', result: 'requested' },
    { type: 'vm.console.response', id: 7, vmId: 1, name: 'web' },
    { type: 'vm.links.response', id: 10, links: [linkInfo, localLinkInfo] },
    { type: 'vm.capture.response', id: 11, vmId: 1, name: 'web', interface: 0, link: 'vmd1i0' },
    { type: 'vm.receive.response', id: 12, phase: 'ready', vm: vmInfo },
    { type: 'vm.migrate.response', id: 13, vmId: 1, name: 'web', phase: 'ready', config: streamConfig },
    { type: 'ok.response', id: 8 },
    { type: 'error', id: 9, error: { code: 'ERR_VM_NOT_FOUND', message: 'not found', hint: 'h' } },
  ];
  const failures: string[] = [];
  for (let seed = 1; seed <= 3000; seed++) {
    const r = rng(seed * 7919);
    const msg = mutate(seeds[Math.floor(r() * seeds.length)], r, WORDS);
    try {
      readResponse(msg);
    } catch (err) {
      if (!(err instanceof ProtocolError)) failures.push(`seed ${seed}: ${String(err)} for ${String(JSON.stringify(msg)).slice(0, 200)}`);
    }
  }
  t.same(failures.slice(0, 10), [], 'no other exceptions');
});
