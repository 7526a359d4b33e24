// Helpers for tests that build network namespaces: `ip -n`, and tiny Node servers and clients run inside them
// (busybox's tools are not enough: its static wget crashes here), each request bounded by a timeout.

import { execa, type ResultPromise } from 'execa';

export const ip = (netns: string, ...args: string[]) => execa('ip', ['-n', netns, ...args]);

// A TCP and UDP server that answers `NAME PEER-ADDRESS` on each port given; prints "ready" once listening.
const serverSource = `
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
const [name, ...ports] = process.argv.slice(1);
let pending = 0;
const ready = () => { if (--pending === 0) console.log('ready'); };
for (const p of ports) {
  const [proto, port] = p.split('/');
  pending += 1;
  if (proto === 'tcp') {
    createServer((s) => { s.end(name + ' ' + s.remoteAddress.replace('::ffff:', '') + '\\n'); s.on('error', () => {}); })
      .listen(Number(port), '0.0.0.0', ready);
  } else {
    const u = createSocket('udp4');
    u.on('message', (m, r) => u.send(name + ' ' + r.address + '\\n', r.port, r.address));
    u.bind(Number(port), '0.0.0.0', ready);
  }
}
`;

// One request from inside a namespace: the server's answer, or "timeout"/"error CODE"; from a local IPv4
// address, and port, when given as `ADDR` or `ADDR:PORT`.
const clientSource = `
import { connect } from 'node:net';
import { createSocket } from 'node:dgram';
const [proto, host, port, local] = process.argv.slice(1);
const done = (s) => { console.log(s); process.exit(0); };
setTimeout(() => done('timeout'), 1500);
if (proto === 'tcp') {
  const opts = { host, port: Number(port) };
  if (local) { const [addr, lport] = local.split(':'); opts.localAddress = addr; if (lport) opts.localPort = Number(lport); }
  let data = '';
  const s = connect(opts);
  s.on('data', (d) => { data += d; });
  s.on('end', () => done(data.trim()));
  s.on('error', (e) => done('error ' + e.code));
} else {
  const u = createSocket('udp4');
  u.on('message', (m) => done(String(m).trim()));
  u.send('x', Number(port), host);
}
`;

export async function request(netns: string, proto: 'tcp' | 'udp', host: string, port: number, local?: string): Promise<string> {
  const args = ['netns', 'exec', netns, process.execPath, '--input-type=module', '-e', clientSource, proto, host, String(port)];
  if (local !== undefined) args.push(local);
  const r = await execa('ip', args, { reject: false, timeout: 10_000 });
  return r.stdout.trim();
}

/** Servers started by server(); a test's teardown kills them with stopServers(). */
const servers: ResultPromise[] = [];

export async function server(netns: string, name: string, ports: string[]): Promise<void> {
  const child = execa('ip', ['netns', 'exec', netns, process.execPath, '--input-type=module', '-e', serverSource, name, ...ports], {
    reject: false, buffer: false,
  });
  servers.push(child);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server ${name} did not start`)), 10_000);
    child.stdout!.on('data', (d: Buffer) => { if (String(d).includes('ready')) { clearTimeout(timer); resolve(); } });
    void child.then(() => { clearTimeout(timer); reject(new Error(`server ${name} exited`)); });
  });
}

/** Kills every server started by server() and waits for them. */
export async function stopServers(): Promise<void> {
  for (const s of servers) s.kill('SIGKILL');
  await Promise.allSettled(servers);
  servers.length = 0;
}

/** Creates each namespace with its loopback up (the caller removes them, `ip netns del`). */
export async function addNetns(...names: string[]): Promise<void> {
  for (const n of names) {
    await execa('ip', ['netns', 'add', n]);
    await ip(n, 'link', 'set', 'lo', 'up');
  }
}

/** A `GET /` over HTTP/1.0 from inside a namespace: the body, or "FAIL" (no connection, or none within 3 s). */
export async function httpGet(netns: string, host: string, port: number): Promise<string> {
  const r = await execa('ip', ['netns', 'exec', netns, process.execPath, '-e',
    `const s = require('net').connect(${port}, ${JSON.stringify(host)}); s.setTimeout(3000, () => { console.log('FAIL'); process.exit(0); });
     s.on('connect', () => s.write('GET / HTTP/1.0\\r\\n\\r\\n')); let d = ''; s.on('data', (c) => { d += c; });
     s.on('end', () => { console.log(d.split('\\r\\n\\r\\n')[1] ?? d); process.exit(0); }); s.on('error', () => { console.log('FAIL'); process.exit(0); });`,
  ], { reject: false, timeout: 15_000, all: true });
  return String(r.all ?? '').trim();
}
