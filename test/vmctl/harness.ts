// Test helpers for vmctl: a throwaway vmd stand-in that speaks the real framing, and runs of the compiled vmctl.
// The stand-in answers with scripted replies; it tests vmctl's side of the protocol, not any daemon behaviour.

import { createServer, type Server, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { execa } from 'execa';
import { encodeFrame, MAX_RESPONSE_FRAME_BYTES, readFrames } from '../../share/frame.js';
import { vmctlEntry } from '../../share/paths.js';
import type { VmInfo } from '../../share/protocol.js';

/** What a scripted handler may do with a request: answer with objects, or take over the socket. */
export type Handler = (request: Record<string, unknown>, conn: FakeConnection) => unknown | unknown[] | undefined;

/** One accepted connection of the stand-in. */
export interface FakeConnection {
  readonly socket: Socket;
  send(message: unknown): void;
  /** Stop decoding frames: the rest of the connection is raw bytes (the console hand-off). */
  switchToRaw(): Buffer;
}

/** A listening stand-in and everything it was asked. */
export interface FakeVmd {
  readonly path: string;
  readonly requests: Record<string, unknown>[];
  close(): Promise<void>;
}

/** Starts a stand-in vmd on a fresh socket in a temp directory, or at `at`. */
export async function fakeVmd(handler: Handler, at?: string): Promise<FakeVmd> {
  const dir = mkdtempSync(join(tmpdir(), 'vmctl-test-'));
  const path = at ?? join(dir, 'vmd.sock');
  const requests: Record<string, unknown>[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const reader = readFrames(socket);
    const conn: FakeConnection = {
      socket,
      send: (m) => socket.write(encodeFrame(m, { maxFrameBytes: MAX_RESPONSE_FRAME_BYTES })),
      switchToRaw: () => reader.switchToRaw(),
    };
    reader.on('message', (m) => {
      const req = m as Record<string, unknown>;
      requests.push(req);
      const out = handler(req, conn);
      if (out === undefined) return;
      for (const r of Array.isArray(out) ? out : [out]) conn.send(r);
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return {
    path,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => {
          rmSync(dir, { recursive: true, force: true });
          resolve();
        });
      }),
  };
}

/** Runs the compiled vmctl against a socket path; never rejects on a non-zero exit. */
export async function runVmctl(
  args: readonly string[],
  options: { socket: string; input?: string; cwd?: string; timeout?: number; stdin?: 'pipe' | 'ignore' } ,
): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const r = await execa(process.execPath, [vmctlEntry, ...args], {
    env: { ...process.env, VMD_SOCKET: options.socket },
    reject: false,
    stripFinalNewline: false,
    timeout: options.timeout ?? 20_000,
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    ...(options.input === undefined ? { stdin: options.stdin ?? 'ignore' } : { input: options.input }),
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** A writable that remembers what was written, standing in for stdout or stderr in in-process runs. */
export function captureStream(): { stream: NodeJS.WriteStream; text: () => string } {
  const chunks: Buffer[] = [];
  const s = new PassThrough();
  s.on('data', (c: Buffer) => chunks.push(c));
  return { stream: s as unknown as NodeJS.WriteStream, text: () => Buffer.concat(chunks).toString('utf8') };
}

const MIB = 1024 * 1024;

/** The VMs the status golden files show: every state, both row layouts, long owners and tty paths. */
export const STATUS_FIXTURE: VmInfo[] = [
  { id: 1, name: 'example', pid: 72118, vcpus: 1, maxmem: 1024 * MIB, curmem: 92379545, tty: '/dev/ttyp8', owner: 'root', uid: 0, gid: null, state: 'running', started: '2026-11-22T10:00:00Z', origin: 'config' },
  { id: 2, name: 'vm2', pid: null, vcpus: 1, maxmem: 512 * MIB, curmem: null, tty: null, owner: 'joe:wheel', uid: 1000, gid: 0, state: 'stopped', started: null, origin: 'config' },
  { id: 3, name: 'db.example.com', pid: 4711, vcpus: 4, maxmem: 8 * 1024 * MIB, curmem: 1073217536, tty: '/var/lib/vmd/run/3/console.sock', owner: 'averyverylongusername:staff', uid: 1001, gid: 50, state: 'paused', started: '2026-11-22T10:01:00Z', origin: 'adhoc' },
  { id: 4, name: 'booting', pid: null, vcpus: 2, maxmem: 2 * 1024 * MIB, curmem: null, tty: null, owner: 'root', uid: 0, gid: null, state: 'starting', started: null, origin: 'adhoc' },
  { id: 5, name: 'queued', pid: null, vcpus: 1, maxmem: 1023 * MIB + 512 * 1024, curmem: null, tty: null, owner: 'root', uid: 0, gid: null, state: 'waiting', started: null, origin: 'config' },
  { id: 16, name: 'leaving', pid: 123456, vcpus: 1, maxmem: 128 * 1024 * MIB, curmem: null, tty: '/dev/pts/12', owner: 'alice', uid: 1002, gid: null, state: 'stopping', started: '2026-11-22T10:02:00Z', origin: 'instance' },
  { id: 17, name: 'tiny', pid: null, vcpus: 1, maxmem: 1 * MIB, curmem: null, tty: null, owner: '1005:100', uid: 1005, gid: 100, state: 'stopped', started: null, origin: 'load' },
];
