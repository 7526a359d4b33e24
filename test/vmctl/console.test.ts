// Tests for the console's cu(1)-style escape filter: what reaches the guest, and when `~.` detaches.
// Pipe mode and the raw hand-off are tested end to end in client.test.ts.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { EscapeFilter } from '../../vmctl/console.js';

const feed = (f: EscapeFilter, s: string) => {
  const r = f.feed(Buffer.from(s, 'latin1'));
  return { send: r.send.toString('latin1'), detach: r.detach };
};

t.test('~. at the start of a line detaches', async (t) => {
  t.same(feed(new EscapeFilter(), '~.'), { send: '', detach: true }, 'at the very start');
  t.same(feed(new EscapeFilter(), 'ls\r~.rest'), { send: 'ls\r', detach: true }, 'after a carriage return; the rest is dropped');
  t.same(feed(new EscapeFilter(), 'ls\n~.'), { send: 'ls\n', detach: true }, 'after a newline');
});

t.test('a tilde elsewhere is just a tilde', async (t) => {
  t.same(feed(new EscapeFilter(), 'cd ~.'), { send: 'cd ~.', detach: false });
  t.same(feed(new EscapeFilter(), '~~'), { send: '~', detach: false }, '~~ sends one tilde');
  t.same(feed(new EscapeFilter(), '~x'), { send: '~x', detach: false }, '~x sends both');
  t.same(feed(new EscapeFilter(), '~/bin\r'), { send: '~/bin\r', detach: false });
});

t.test('the escape may be split across reads', async (t) => {
  const f = new EscapeFilter();
  t.same(feed(f, 'echo\r'), { send: 'echo\r', detach: false });
  t.same(feed(f, '~'), { send: '', detach: false }, 'the tilde is held back');
  t.same(feed(f, '.'), { send: '', detach: true });
  const g = new EscapeFilter();
  feed(g, '~');
  t.same(feed(g, 'a~.'), { send: '~a~.', detach: false }, 'not at a line start after ~a');
});

// script(1) (util-linux's bsdutils) gives the console a pty; share/setup does not install it, so it is optional.
const noScript = spawnSync('script', ['--version']).status !== 0 && 'script(1) from util-linux is not installed: nothing to run the console on';

t.test('on a terminal: raw mode, ~. detaches, exit 0 (under script(1) for a pty)', { skip: noScript }, async (t) => {
  const { execa } = await import('execa');
  const { fakeVmd } = await import('./harness.js');
  const { encodeFrame } = await import('../../share/frame.js');
  const { vmctlEntry } = await import('../../share/paths.js');
  const vmd = await fakeVmd((req, conn) => {
    conn.switchToRaw();
    conn.socket.write(Buffer.concat([encodeFrame({ type: 'vm.console.response', id: req.id, vmId: 1, name: 'web' }), Buffer.from('hello\r\n')]));
    conn.socket.on('data', (d: Buffer) => conn.socket.write(`<${d.toString('latin1')}>`));
    conn.socket.resume();
    return undefined;
  });
  t.teardown(() => vmd.close());
  const inner = `${process.execPath} ${vmctlEntry} console web; echo rc=$?`;
  // Input only once vmctl says it is connected, which it says after putting the terminal in raw mode: sent
  // earlier, the pty would still cook it (a fixed two seconds was too short for a loaded machine).
  const child = execa('script', ['-qfec', inner, '/dev/null'], { env: { ...process.env, VMD_SOCKET: vmd.path }, reject: false, timeout: 20_000, stdin: 'pipe' });
  let seen = '';
  child.stdout?.on('data', (d: Buffer) => {
    const before = seen;
    seen += d.toString('latin1');
    if (!/connected to vm web/.test(before) && /connected to vm web/.test(seen)) child.stdin?.write('ab\r');
    if (!/<ab\r>/.test(before) && /<ab\r>/.test(seen)) child.stdin?.write('~.');
  });
  const r = await child;
  child.stdin?.destroy();
  t.match(r.stdout, /connected to vm web \(~\. to detach\)/);
  t.match(r.stdout, /<ab\r>/, 'input reaches the guest unechoed and unchanged');
  t.notMatch(r.stdout, /<[^>]*~/, 'the escape itself is not sent');
  t.match(r.stdout, /\[EOT\][\s\S]*rc=0/, 'detached with status 0');
});
