// The one error of the `vmctl send` stream: what is wrong with a stream, worded for the reader's context.
// Its own file so that the stream's framing (stream.ts) and its configuration reader (stream-config.ts) share it.

import { VmdError } from './errors.js';

export type StreamErrorReason = 'magic' | 'version' | 'truncated-header' | 'config' | 'truncated-body' | 'corrupt';

/**
 * A stream that is not one, is too new, or ends early; each reason has its own message. The message is
 * `stream: DETAIL`; a reader that words it in its own context (vmm's `vm "x": receive: stream DETAIL`) uses `detail`.
 */
export class StreamError extends VmdError {
  readonly reason: StreamErrorReason;
  readonly detail: string;
  constructor(reason: StreamErrorReason, detail: string, hint?: string, subject = 'stream') {
    super('ERR_STREAM', `${subject}: ${detail}`, hint === undefined ? undefined : { hint });
    this.name = 'StreamError';
    this.reason = reason;
    this.detail = detail;
  }
}
