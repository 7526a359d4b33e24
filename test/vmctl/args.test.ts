// Tests for vmctl's command line: abbreviation, usage lines, global flags, and every command's argument parsing.
// start is checked message by message against OpenBSD's ctl_start()/vm_start(), in their order.
import t from 'tap';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { COMMANDS, USAGE, commandUsage, extractJson, main, parseGlobal, resolveCommand } from '../../vmctl/vmctl.js';
import { parseStart, parseSize, parseForward, validVmName, type StartArgs } from '../../vmctl/start.js';
import { parseStop } from '../../vmctl/stop.js';
import { parseStatus } from '../../vmctl/status.js';
import { parseConsole } from '../../vmctl/console.js';
import { parseWait } from '../../vmctl/wait.js';
import { parsePauseTarget } from '../../vmctl/pause.js';
import { parseLoad } from '../../vmctl/load.js';
import { parseLog } from '../../vmctl/log.js';
import { parseReset } from '../../vmctl/reset.js';
import { parseVmid, strtonum } from '../../vmctl/command.js';
import { CliError, UsageError } from '../../vmctl/errors.js';
import { captureStream } from './harness.js';

/** Runs main() in-process against a socket that does not exist: enough for everything decided before connecting. */
async function run(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = captureStream();
  const err = captureStream();
  const code = await main(argv, {
    stdin: new PassThrough() as unknown as NodeJS.ReadStream,
    stdout: out.stream,
    stderr: err.stream,
    env: { VMD_SOCKET: '/nonexistent/vmctl-test.sock', ...env },
    cwd: process.cwd(),
  });
  return { code, stdout: out.text(), stderr: err.text() };
}

t.test('command abbreviation', async (t) => {
  const name = (w: string) => {
    const r = resolveCommand(w);
    return 'command' in r ? r.command.name : r.error;
  };
  t.equal(name('st'), 'ambiguous argument: st');
  t.equal(name('re'), 'ambiguous argument: re');
  t.equal(name('sta'), 'ambiguous argument: sta', 'start and status share sta');
  t.equal(name('star'), 'start');
  t.equal(name('stat'), 'status');
  t.equal(name('sto'), 'stop');
  t.equal(name('s'), 'ambiguous argument: s');
  t.equal(name('sh'), 'show');
  t.equal(name('c'), 'ambiguous argument: c', 'capture, console and create');
  t.equal(name('ca'), 'capture');
  t.equal(name('cr'), 'create');
  t.equal(name('co'), 'console');
  t.equal(name('l'), 'ambiguous argument: l');
  t.equal(name('lo'), 'ambiguous argument: lo');
  t.equal(name('loa'), 'load');
  t.equal(name('log'), 'log');
  t.equal(name('u'), 'unpause');
  t.equal(name('w'), 'wait');
  t.equal(name('p'), 'pause');
  t.equal(name('rel'), 'reload');
  t.equal(name('res'), 'reset');
  t.equal(name('statuss'), 'unknown argument: statuss');
  t.equal(name('frobnicate'), 'unknown argument: frobnicate');
  t.equal(name('li'), 'links');
  t.equal(name('f'), 'firewall');
  t.equal(name('rec'), 'receive');
  t.equal(name('se'), 'send');
  t.equal(name('e'), 'events');
  t.equal(name('g'), 'grow');
  t.equal(name('d'), 'display');
  t.same(COMMANDS.map((c) => c.name), ['capture', 'console', 'create', 'display', 'events', 'firewall', 'grow', 'help', 'inspect', 'links', 'load', 'log', 'migrate', 'pause', 'receive', 'reload', 'reset', 'send', 'show', 'snapshot', 'start', 'status', 'stop', 'unpause', 'wait']);
});

t.test('display arguments', async (t) => {
  const usage = 'usage:\tvmctl [-v] display [-p port] id\n';
  t.same(await run(['display']), { code: 1, stdout: '', stderr: usage });
  t.same(await run(['display', 'a', 'b']), { code: 1, stdout: '', stderr: usage });
  t.same(await run(['display', '-p', '0', 'a']), { code: 1, stdout: '', stderr: 'vmctl: port is too small: 0\nvmctl: invalid port: 0\n' });
  t.same(await run(['display', '-p', '65536', 'a']), { code: 1, stdout: '', stderr: 'vmctl: port is too large: 65536\nvmctl: invalid port: 65536\n' });
});

t.test('migrate arguments: bad ones are refused before any vmd is asked', async (t) => {
  const usage = 'usage:\tvmctl [-v] migrate [-D ms] [-s socket] [--copy-storage] id [user@]host\n';
  t.same(await run(['migrate', 'web']), { code: 1, stdout: '', stderr: usage });
  t.same(await run(['migrate', 'web', 'h', 'x']), { code: 1, stdout: '', stderr: usage });
  t.same(await run(['migrate', '-D', '0', 'web', 'h']), { code: 1, stdout: '', stderr: 'vmctl: migrate: invalid downtime: 0 (1 to 60000 ms)\n' });
  t.same(await run(['migrate', '-D', '5s', 'web', 'h']), { code: 1, stdout: '', stderr: 'vmctl: migrate: invalid downtime: 5s (1 to 60000 ms)\n' });
  t.same(await run(['migrate', '-s', '/x.sock', 'web', 'h,opt=1']), { code: 1, stdout: '', stderr: 'vmctl: migrate: invalid host: h,opt=1: give a host name, an IPv4 address or [an IPv6 address]\n' });
  t.same(await run(['migrate', '-s', '/x.sock', 'web', 'us er@h']), { code: 1, stdout: '', stderr: 'vmctl: migrate: invalid user: us er\n' });
  // Without -s the target is reached as -H reaches a host: ssh (here a program that is not there) to its relay.
  const viaSsh = await run(['migrate', 'web', 'root@h2'], { VMCTL_SSH: '/nonexistent/ssh' });
  t.equal(viaSsh.code, 1);
  t.match(viaSsh.stderr, /^vmctl: host "root@h2": /, 'the target host is named, not the source');
  t.same(await run(['migrate', '-s', '/nonexistent/t.sock', 'web', 'h2']), { code: 1, stdout: '', stderr: 'vmctl: connect: /nonexistent/t.sock: No such file or directory\n' });
});

t.test('send and receive arguments', async (t) => {
  t.same(await run(['send']), { code: 1, stdout: '', stderr: 'usage:\tvmctl [-v] send id\n' });
  t.same(await run(['send', 'a', 'b']), { code: 1, stdout: '', stderr: 'usage:\tvmctl [-v] send id\n' });
  t.same(await run(['receive']), { code: 1, stdout: '', stderr: 'usage:\tvmctl [-v] receive name\n' });
  t.same(await run(['receive', '12']), { code: 1, stdout: '', stderr: 'vmctl: invalid name: 12\n' }, 'a receive makes a new vm: a name, not an id');
  t.same(await run(['receive', '-x']), { code: 1, stdout: '', stderr: 'usage:\tvmctl [-v] receive name\n' });
  t.same(await run(['receive', 'n'.repeat(64)]), { code: 1, stdout: '', stderr: 'vmctl: name too long\n' });
});

t.test('usage output and exit status', async (t) => {
  t.equal(USAGE, 'usage:\tvmctl [-v] command [arg ...]\n');
  t.same(await run([]), { code: 1, stdout: '', stderr: USAGE });
  t.same(await run(['-x', 'status']), { code: 1, stdout: '', stderr: USAGE });
  t.same(await run(['st']), { code: 1, stdout: '', stderr: `ambiguous argument: st\n${USAGE}` });
  t.same(await run(['nope']), { code: 1, stdout: '', stderr: `unknown argument: nope\n${USAGE}` });
  const usageOf = (n: string) => commandUsage(COMMANDS.find((c) => c.name === n)!);
  t.equal(usageOf('stop'), 'usage:\tvmctl [-v] stop [-fw] [id | -a]\n');
  t.equal(usageOf('status'), 'usage:\tvmctl [-v] status [-r] [id]\n');
  t.equal(usageOf('show'), 'usage:\tvmctl [-v] show [id]\n');
  t.equal(usageOf('reload'), 'usage:\tvmctl [-v] reload \n');
  t.equal(usageOf('reset'), 'usage:\tvmctl [-v] reset [all | switches | vms]\n');
  t.equal(usageOf('log'), 'usage:\tvmctl [-v] log brief | verbose | id\n');
  t.equal(usageOf('wait'), 'usage:\tvmctl [-v] wait id\n');
  t.equal(usageOf('migrate'), 'usage:\tvmctl [-v] migrate [-D ms] [-s socket] [--copy-storage] id [user@]host\n');
  t.match(usageOf('start'), /^usage:\tvmctl \[-v\] start \[-cL\] \[-B device\] \[-b path\] \[-d disk\] \[-i count\]\n\t\t\[-m size\] \[-n switch\] \[-r path\] \[-t name\]\n/);
  t.same(await run(['reload', 'x']), { code: 1, stdout: '', stderr: usageOf('reload') });
  t.same(await run(['stop']), { code: 1, stdout: '', stderr: usageOf('stop') });
  t.same(await run(['stop', '-a', 'web']), { code: 1, stdout: '', stderr: usageOf('stop') });
  t.same(await run(['stop', '-x', 'web']), { code: 1, stdout: '', stderr: usageOf('stop') });
  t.same(await run(['star']), { code: 1, stdout: '', stderr: usageOf('start') });
  t.same(await run(['start', '-m']), { code: 1, stdout: '', stderr: usageOf('start') });
  t.same(await run(['log']), { code: 1, stdout: '', stderr: usageOf('log') });
  t.same(await run(['log', 'brief', 'web']), { code: 1, stdout: '', stderr: usageOf('log') });
  t.same(await run(['reset', 'everything']), { code: 1, stdout: '', stderr: usageOf('reset') });
  t.same(await run(['pause']), { code: 1, stdout: '', stderr: usageOf('pause') });
  t.same(await run(['wait', 'a', 'b']), { code: 1, stdout: '', stderr: usageOf('wait') });
  t.same(await run(['console']), { code: 1, stdout: '', stderr: usageOf('console') });
  t.same(await run(['load']), { code: 1, stdout: '', stderr: usageOf('load') });
  t.same(await run(['status', 'a', 'b']), { code: 1, stdout: '', stderr: usageOf('status') });
});

t.test('parse errors are reported before connecting', async (t) => {
  t.same(await run(['wait', '-x']), { code: 1, stdout: '', stderr: 'vmctl: invalid id: -x\n' });
  t.same(await run(['status', 'x'.repeat(64)]), { code: 1, stdout: '', stderr: `vmctl: name too long\nvmctl: invalid id: ${'x'.repeat(64)}\n` });
  t.same(await run(['start', '-m', '1G', '-m', '2G', 'web']), { code: 1, stdout: '', stderr: 'vmctl: memory specified multiple times\n' });
  t.same(await run(['console', '-t', 'soon', 'web']), { code: 1, stdout: '', stderr: 'vmctl: invalid timeout: soon\n' });
});

t.test('after parsing, a missing daemon is a connect error', async (t) => {
  const r = await run(['status']);
  t.same(r, { code: 1, stdout: '', stderr: 'vmctl: connect: /nonexistent/vmctl-test.sock: No such file or directory\n' });
  const s = await run(['stop', 'web']);
  t.equal(s.stderr, 'vmctl: connect: /nonexistent/vmctl-test.sock: No such file or directory\n', 'no dangling "stopping vm" prefix');
});

t.test('global flags', async (t) => {
  t.same(extractJson(['status', '--json']), { json: true, rest: ['status'] });
  t.same(extractJson(['--json', '-v', 'status']), { json: true, rest: ['-v', 'status'] });
  t.same(extractJson(['start', '--cmdline', '--json', 'x']), { json: false, rest: ['start', '--cmdline', '--json', 'x'] });
  t.same(extractJson(['start', '--', '--json']), { json: false, rest: ['start', '--', '--json'] });
  t.same(extractJson(['capture', '-w', '--json', 'web']), { json: false, rest: ['capture', '-w', '--json', 'web'] }, 'a file named --json');
  t.same(parseGlobal(['-v', 'status']), { verbose: 1, rest: ['status'] });
  t.same(parseGlobal(['-vv', '-v', 'status', '-r']), { verbose: 3, rest: ['status', '-r'] });
  t.same(parseGlobal(['--', '-v']), { verbose: 0, rest: ['-v'] });
  t.equal(parseGlobal(['-x', 'status']), undefined);
});

t.test('vm ids and names as parse_vmid reads them', async (t) => {
  const warnings: string[] = [];
  const w = (m: string) => warnings.push(m);
  t.same(parseVmid('1', w), { id: 1, name: undefined, target: '1' });
  t.same(parseVmid('007', w), { id: 7, name: undefined, target: '7' });
  t.same(parseVmid('web', w), { id: undefined, name: 'web', target: 'web' });
  t.same(parseVmid('4294967296', w), { id: undefined, name: '4294967296', target: '4294967296' }, 'past UINT32_MAX it is a name');
  t.equal(parseVmid('-1', w), undefined);
  t.equal(parseVmid('a'.repeat(64), w), undefined);
  t.same(warnings, ['name too long']);
  t.same(strtonum('0', 1, 10), { error: 'too small' });
  t.same(strtonum('11', 1, 10), { error: 'too large' });
  t.same(strtonum('1x', 1, 10), { error: 'invalid' });
  t.same(strtonum(' +5', 1, 10), { value: 5 });
});

t.test('start', async (t) => {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'vmctl-start-')));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const f of ['disk0.img', 'disk1.qcow2', 'disk2.img', 'disk3.img', 'disk4.img', 'cd.iso', 'bsd.rd', 'initrd.img']) {
    writeFileSync(join(dir, f), '');
  }
  mkdirSync(join(dir, 'adir'));

  const parse = (args: string[]): { result?: StartArgs; error?: string; usage?: boolean; warnings: string[] } => {
    const warnings: string[] = [];
    try {
      return { result: parseStart(args, { cwd: dir, warn: (m) => warnings.push(m) }), warnings };
    } catch (err) {
      if (err instanceof UsageError) return { usage: true, warnings };
      if (err instanceof CliError) return { error: err.message, warnings };
      throw err;
    }
  };

  t.test('options may follow the name, in the order people type them', async (t) => {
    const r = parse(['web', '-b', 'bsd.rd', '--initrd', 'initrd.img', '-m', '256M', '-i', '1']);
    t.same(r.warnings, []);
    t.equal(r.result?.ref.target, 'web');
    t.same(r.result?.options, { memory: 256 * 1024 * 1024, interfaces: 1, boot: join(dir, 'bsd.rd'), initrd: join(dir, 'initrd.img') });
  });

  t.test('a new VM, every option', async (t) => {
    const r = parse([
      '-cL', '-m', '1.5G', '-n', 'uplink', '-i', '4', '-d', 'disk0.img', '-d', 'qcow2:disk1.qcow2', '-r', 'cd.iso', '-B', 'cdrom',
      '-b', 'bsd.rd', '--initrd', 'initrd.img', '--cmdline', 'console=ttyS0 quiet', '--forward', 'tcp:8080:80', '--forward', 'udp:5353:53',
      'web',
    ]);
    t.same(r.warnings, []);
    t.same(r.result, {
      ref: { id: undefined, name: 'web', target: 'web' },
      console: true,
      options: {
        memory: 1536 * 1024 * 1024,
        interfaces: 4,
        nets: [{ kind: 'local' }, { kind: 'switch', switch: 'uplink' }],
        disks: [join(dir, 'disk0.img'), `qcow2:${join(dir, 'disk1.qcow2')}`],
        boot: join(dir, 'bsd.rd'),
        initrd: join(dir, 'initrd.img'),
        cmdline: 'console=ttyS0 quiet',
        cdrom: join(dir, 'cd.iso'),
        bootDevice: 'cdrom',
        forwards: [{ proto: 'tcp', hostPort: 8080, guestPort: 80 }, { proto: 'udp', hostPort: 5353, guestPort: 53 }],
      },
    });
  });

  t.test('existing VMs and instances', async (t) => {
    t.same(parse(['web']).result, { ref: { id: undefined, name: 'web', target: 'web' }, console: false, options: {} });
    t.same(parse(['3']).result, { ref: { id: 3, name: undefined, target: '3' }, console: false, options: {} });
    t.same(parse(['-B', 'net', 'web']).result?.options, { bootDevice: 'net' });
    t.same(parse(['-b', 'bsd.rd', 'web']), { result: { ref: { id: undefined, name: 'web', target: 'web' }, console: false, options: { boot: join(dir, 'bsd.rd') } }, warnings: [] });
    const inst = parse(['-t', 'base', '-m', '1G', 'child']);
    t.same(inst.result?.options, { memory: 1024 ** 3, instanceOf: 'base' }, 'an instance needs nothing bootable of its own');
    t.same(inst.warnings, []);
  });

  t.test('the NIC layout: -L and -n in order, -i fills up with plain ones', async (t) => {
    t.same(parse(['-i', '3', '-n', 'a', '-L', '-d', 'disk0.img', 'x']).result?.options, {
      interfaces: 3, nets: [{ kind: 'switch', switch: 'a' }, { kind: 'local' }], disks: [join(dir, 'disk0.img')],
    });
    t.same(parse(['-i', '1', '-L', '-L', '-d', 'disk0.img', 'x']).result?.options.interfaces, 2, 'more -L/-n than -i raise the count');
    t.same(parse(['-i', '2', '-d', 'disk0.img', 'x']).result?.options, { interfaces: 2, disks: [join(dir, 'disk0.img')] });
  });

  t.test('warnings', async (t) => {
    const r = parse(['-m', '1.5M', '-r', 'cd.iso', 'x']);
    t.same(r.warnings, ['memory size rounded to 1.0M'], 'starting without disks/interfaces is vmd\'s to say, once');
    t.equal(r.result?.options.memory, 1024 * 1024);
    t.same(parse(['-m', '1023.5M', '-d', 'disk0.img', '-L', 'x']).warnings, ['memory size rounded to 1023M']);
    t.same(parse(['-b', 'bsd.rd', 'x']).warnings, [], 'a kernel needs neither disks nor NICs');
    t.same(parse(['--machine', 'pc', '-d', 'ide:disk0.img', '-d', 'nvme:qcow2:disk1.qcow2', 'x']).result?.options,
      { machine: 'pc', disks: [`ide:${join(dir, 'disk0.img')}`, `nvme:qcow2:${join(dir, 'disk1.qcow2')}`] }, 'a bus, then a format, before the path');
    t.equal(parse(['--machine', 'isapc', 'x']).error, 'unknown machine isapc: q35, pc, microvm');
    t.equal(parse(['--machine', 'pc', '--machine', 'q35', 'x']).error, 'machine specified multiple times');
    // `vmctl start EXISTING -m 2G` must reach vmd, which says that the VM exists; only vmd knows whether it does.
    t.same(parse(['-m', '2G', 'x']), { result: { ref: { id: undefined, name: 'x', target: 'x' }, console: false, options: { memory: 2 * 1024 ** 3 } }, warnings: [] });
  });

  t.test('every error, with the warnings that come before it', async (t) => {
    const disks = ['-d', 'disk0.img'];
    const cases: [string[], string, string[]?][] = [
      [['-m', '1G', '-m', '2G', 'x'], 'memory specified multiple times'],
      [['-m', 'lots', 'x'], 'invalid memory size: lots: Invalid argument'],
      [['-m', '8E', 'x'], 'invalid memory size: 8E: Numerical result out of range'],
      [['-m', '1023K', 'x'], 'memory size must be at least 1MB'],
      [['-m', '129G', 'x'], 'memory size too large (limit is 128G)'],
      [['-m', '1.5M', '-m', '2M', 'x'], 'memory specified multiple times', ['memory size rounded to 1.0M']],
      [['-i', '2', '-i', '3', 'x'], 'interfaces specified multiple times'],
      [['-i', '0', 'x'], 'invalid interface count: 0', ['count is too small: 0']],
      [['-i', 'four', 'x'], 'invalid interface count: four', ['count is invalid: four']],
      [['-i', '2147483648', 'x'], 'invalid interface count: 2147483648', ['count is too large: 2147483648']],
      [['-i', '5', ...disks, 'x'], 'too many network interfaces'],
      [['-L', '-L', '-L', '-L', '-n', 'sw', ...disks, 'x'], 'too many network interfaces'],
      [['-d', 'disk0.img', '-d', 'disk1.qcow2', '-d', 'disk2.img', '-d', 'disk3.img', '-d', 'disk4.img', 'x'], 'too many disks'],
      [['-d', 'missing.img', 'x'], 'invalid disk path: missing.img: No such file or directory'],
      [['-d', 'raw:missing.img', 'x'], 'invalid disk path: missing.img: No such file or directory'],
      [['-d', 'disk0.img/x', 'x'], 'invalid disk path: disk0.img/x: Not a directory'],
      [['-r', 'missing.iso', 'x'], 'invalid iso image path: missing.iso: No such file or directory'],
      [['-r', 'cd.iso', '-r', 'cd.iso', 'x'], 'iso image specified multiple times'],
      [['-b', 'missing', 'x'], 'invalid boot image path: No such file or directory'],
      [['-b', 'bsd.rd', '-b', 'bsd.rd', 'x'], 'boot image specified multiple times'],
      [['-b', 'adir', 'x'], 'kernel must be a regular file'],
      [['-b', 'bsd.rd', '--initrd', 'adir', 'x'], 'initrd must be a regular file'],
      [['--initrd', 'missing', 'x'], 'invalid initrd path: missing: No such file or directory'],
      [['--initrd', 'initrd.img', '--initrd', 'initrd.img', 'x'], 'initrd specified multiple times'],
      [['--cmdline', 'a', '--cmdline', 'b', 'x'], 'cmdline specified multiple times'],
      [['-B', 'floppy', 'x'], 'unknown boot device floppy'],
      [['-B', 'disk', '-B', 'net', 'x'], 'boot device specified multiple times'],
      [['-t', 'p'.repeat(64), 'x'], `invalid name: ${'p'.repeat(64)}`, ['instance vm name too long']],
      [[...disks, '-L', '.hidden'], 'invalid VM name'],
      [[...disks, '-L', '_x'], 'invalid VM name'],
      [[...disks, '-L', 'a/b'], 'invalid VM name'],
      [[...disks, '-L', 'n'.repeat(64)], `invalid id: ${'n'.repeat(64)}`, ['name too long']],
      [['-n', 's'.repeat(64), ...disks, 'x'], 'interface name too long'],
      [['--forward', 'tcp:80', 'x'], 'invalid forward: tcp:80'],
      [['--forward', 'sctp:1:2', 'x'], 'invalid forward: sctp:1:2'],
      [['--forward', 'tcp:0:80', 'x'], 'invalid forward: tcp:0:80'],
      [['--forward', 'tcp:8080:65536', 'x'], 'invalid forward: tcp:8080:65536'],
      [['--', '-x'], 'invalid id: -x'],
    ];
    for (const [args, error, warnings] of cases) {
      const r = parse(args);
      t.equal(r.error, error, args.join(' '));
      t.same(r.warnings, warnings ?? [], `warnings of ${args.join(' ')}`);
    }
    t.equal(parse([]).usage, true);
    t.equal(parse(['a', 'b']).usage, true);
    t.equal(parse(['-Z', 'a']).usage, true);
  });

  t.test('helpers', async (t) => {
    t.equal(parseSize('512M', 'memory', () => t.fail('no warning')), 512 * 1024 * 1024);
    t.same(parseForward('udp:1:65535'), { proto: 'udp', hostPort: 1, guestPort: 65535 });
    for (const ok of ['web', 'a', 'vm1.example.com', '1vm', 'a-b_c']) t.ok(validVmName(ok), ok);
    for (const bad of ['', '-a', '.a', '_a', 'a b', 'ä', 'a/b']) t.notOk(validVmName(bad), bad);
  });
});

t.test('the other commands', async (t) => {
  const none = () => t.fail('no warning expected');
  t.same(parseStop(['-fw', 'web'], none), { all: false, force: true, wait: true, ref: { id: undefined, name: 'web', target: 'web' } });
  t.same(parseStop(['-a'], none), { all: true, force: false, wait: false, ref: undefined });
  t.same(parseStop(['-w', '-a', '-f'], none), { all: true, force: true, wait: true, ref: undefined });
  t.same(parseStop(['web', '-f'], none), { all: false, force: true, wait: false, ref: { id: undefined, name: 'web', target: 'web' } }, 'options may follow the name');
  t.throws(() => parseStop(['--', '-f'], none), { message: 'invalid id: -f' }, '-- ends the options: "-f" is then an operand');
  t.same(parseStatus([], none), { running: false, ref: undefined });
  t.same(parseStatus(['-r', '2'], none), { running: true, ref: { id: 2, name: undefined, target: '2' } });
  t.same(parseConsole(['-t', '2.5', 'web'], none), { target: 'web', options: { timeoutMs: 2500 } });
  t.same(parseConsole(['web'], none), { target: 'web', options: {} });
  t.throws(() => parseConsole(['-t', '0', 'web'], none), { message: 'invalid timeout: 0' });
  t.same(parseWait(['5'], none), { ref: { id: 5, name: undefined, target: '5' } });
  t.same(parsePauseTarget(['web'], none), { id: undefined, name: 'web', target: 'web' });
  t.equal(parseLoad(['x.conf'], '/etc/vmd'), '/etc/vmd/x.conf');
  t.equal(parseLoad(['/abs/x.conf'], '/etc'), '/abs/x.conf');
  for (const [w, level] of [['brief', 0], ['b', 0], ['BRIEF', 0], ['verbose', 2], ['v', 2], ['VeRb', 2]] as const) t.equal(parseLog([w]), level, w);
  t.throws(() => parseLog(['briefly']), UsageError);
  t.throws(() => parseLog([]), UsageError);
  t.equal(parseReset([]), 'all');
  t.equal(parseReset(['VMS']), 'vms');
  t.equal(parseReset(['switches']), 'switches');
  t.throws(() => parseReset(['vm']), UsageError, 'no abbreviation for reset modes');
});

t.test('help, -h, did you mean, and --json for the errors vmctl finds itself', async (t) => {
  const help = await run(['help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /^usage:\tvmctl \[-v\] command \[arg \.\.\.\]\ncommands:\n\tcapture\t/);
  for (const c of COMMANDS) t.match(help.stdout, new RegExp(`\\n\\t${c.name}\\t`), `${c.name} listed`);
  t.same(await run(['help', 'stop']), { code: 0, stdout: 'usage:\tvmctl [-v] stop [-fw] [id | -a]\n', stderr: '' });
  t.same(await run(['stop', '-h']), { code: 0, stdout: 'usage:\tvmctl [-v] stop [-fw] [id | -a]\n', stderr: '' });
  t.same(await run(['stauts']), { code: 1, stdout: '', stderr: `unknown argument: stauts\nvmctl: did you mean "status"?\n${USAGE}` });
  const typo = await run(['--json', 'stauts']);
  t.same(JSON.parse(typo.stdout), { type: 'error', id: 0, error: { code: 'ERR_USAGE', message: 'unknown argument: stauts', hint: 'did you mean "status"?' } });
  const usage = await run(['--json', 'stop', '-x']);
  t.equal(JSON.parse(usage.stdout).error.code, 'ERR_USAGE');
  const conn = await run(['--json', 'status']);
  t.equal(conn.code, 1);
  t.equal(JSON.parse(conn.stdout).error.code, 'ERR_CONNECT');
});
