// One request and its reply without node:net: the way listing commands reach vmd, whose run is mostly vmctl's start-up.
// Loading net and Node's stream modules was a fifth of `vmctl status`; vmd's addon does the exchange in one blocking call.

import { join } from 'node:path';
import { encodeFrame, FrameDecoder, MAX_RESPONSE_FRAME_BYTES } from '../share/frame.js';
import { packageRoot, socketPathTooLong } from '../share/paths.js';
import { PROTOCOL_VERSION, ProtocolError, type ControlResponse } from '../share/protocol.js';
import type { ControlClient, Reply, RequestBody } from './client.js';
import { CliError, longSocketError, strerror } from './errors.js';

/** The one function of vmd's addon (vmd/native/unix_request.c) that vmctl uses. */
export interface Exchange {
  unixRequest(path: string, frame: Buffer, maxBytes: number): Buffer;
}

/** Where share/build.mjs leaves the addon (the same place vmd/native.ts loads it from). */
const ADDON_PATH = join(packageRoot, 'vmd', 'native', 'build', 'Release', 'vmd_native.node');

let addon: Exchange | null | undefined;

/** The addon, or null where it is not built or is of another Node ABI: then the client goes through node:net. */
export function loadExchange(): Exchange | null {
  if (addon !== undefined) return addon;
  try {
    // process.dlopen, not require(): no module resolution, realpath or cache entry for a path that is already absolute.
    const module = { exports: {} as Partial<Exchange> };
    process.dlopen(module, ADDON_PATH);
    const loaded = module.exports;
    addon = typeof loaded.unixRequest === 'function' ? (loaded as Exchange) : null;
  } catch {
    addon = null;
  }
  return addon;
}

/** The request id a one-shot connection uses: its only request. */
const ONESHOT_ID = 1;

/** A blocking exchange's failure in the words ControlClient uses for the same failure. */
function exchangeError(path: string, err: unknown): Error {
  const e = err as NodeJS.ErrnoException;
  if (e.syscall === 'connect') return new CliError(`connect: ${path}: ${strerror(e.code)}`, 'ERR_CONNECT');
  if (e.code === 'EPIPE' || e.code === 'ECONNRESET') return new CliError('pipe closed');
  if (e.code === 'EMSGSIZE') return new CliError(`unexpected response received from vmd: frame exceeds the limit of ${MAX_RESPONSE_FRAME_BYTES}`);
  if (typeof e.code === 'string') return new CliError(`read error: ${strerror(e.code)}`);
  return err instanceof Error ? err : new Error(String(err));
}

/**
 * A reply's reader: readResponse (share/read-response.ts) for any command, or a listing's own reader, which loads
 * none of the other replies' readers (share/read-status.ts).
 */
export type ReplyReader = (msg: unknown) => ControlResponse;

/** Decodes the reply frame as ControlClient would: strict framing, the response reader, the request's id (or 0). */
export function decodeReply(frame: Buffer, read: ReplyReader): Reply {
  const { messages, error } = new FrameDecoder({ maxFrameBytes: MAX_RESPONSE_FRAME_BYTES }).decode(frame);
  if (error !== undefined) throw new CliError(`unexpected response received from vmd: ${error.message}`);
  const raw = messages[0];
  if (messages.length !== 1) throw new CliError('unexpected response received from vmd: no whole frame');
  let response;
  try {
    response = read(raw);
  } catch (err) {
    throw new CliError(`unexpected response received from vmd: ${err instanceof ProtocolError ? err.message : String(err)}`);
  }
  // An error about a request vmd could not even read carries id 0: it belongs to the only request.
  if (response.id !== ONESHOT_ID && !(response.type === 'error' && response.id === 0)) {
    throw new CliError(`unexpected response received from vmd: reply to request ${response.id}`);
  }
  return { response, raw };
}

/**
 * Sends one request on a connection of its own and returns the reply. Through the addon when it loads; through
 * `connect` (ControlClient) otherwise, so vmctl works the same where the addon is missing.
 */
export async function exchangeOnce(
  path: string,
  body: RequestBody,
  connect: () => Promise<ControlClient>,
  exchange: Exchange | null,
  read: ReplyReader,
): Promise<Reply> {
  if (exchange === null) {
    const client = await connect();
    try {
      return await client.request(body);
    } finally {
      client.close();
    }
  }
  if (socketPathTooLong(path)) throw longSocketError(path);
  let frame: Buffer;
  try {
    frame = exchange.unixRequest(path, encodeFrame({ v: PROTOCOL_VERSION, id: ONESHOT_ID, ...body }), MAX_RESPONSE_FRAME_BYTES);
  } catch (err) {
    throw exchangeError(path, err);
  }
  return decodeReply(frame, read);
}
