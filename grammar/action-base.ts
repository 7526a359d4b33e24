// What every semantic action of vm.conf needs: diagnostics at a token's line, yacc's YYERROR, token text, and
// the value helpers parse.y's rules share (rdomain, port, host address, owner lookup, realpath).

import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Owner, SourceLocation } from '../share/config.js';
import { strerror } from '../share/errno.js';
import type { UserDb } from '../share/users.js';
import type { OwnerNode, Tok, Toks } from './ast.js';
import type { Diagnostic } from './diagnostic.js';
import type { TokenStream } from './lexer.js';
import { parseHostAddress, strtonum } from './values.js';

/** yacc's YYERROR: abandon the statement; recovery starts at token `at` (the lookahead). */
export class YyError extends Error {
  constructor(readonly at: number) {
    super('YYERROR');
  }
}

export const PATH_MAX = 1024;
export const NAME_MAX = 64;
const RT_TABLEID_MAX = 255;
export const ACCELS: readonly string[] = ['auto', 'kvm', 'tcg'];

/** Settings of the actions that come from the caller. */
export interface ActionOptions {
  readonly cwd: string;
  readonly users: UserDb;
}

type Realpath = { path: string; error: null } | { path: null; error: string };

/** The diagnostics and token access of one parse; the statement actions build on it. */
export class ActionBase {
  readonly diagnostics: Diagnostic[] = [];
  private readonly realpaths = new Map<string, Realpath>();

  constructor(readonly stream: TokenStream, readonly options: ActionOptions) {}

  location(i: number): SourceLocation {
    return { file: this.stream.files[this.stream.fileOf[i]!]!, line: this.stream.lines[i]! };
  }

  /** yyerror(): `file:line: message` at the token yacc had last read. */
  error(i: number, message: string): void {
    const loc = this.location(i);
    this.diagnostics.push({ severity: 'error', file: loc.file, line: loc.line, message });
  }

  /** log_warnx() during parsing: `vmd: message`, part of a failure. */
  warnx(message: string): void {
    this.diagnostics.push({ severity: 'error', file: null, line: null, message });
  }

  /** log_debug(): shown with -vv. */
  debug(i: number | null, message: string): void {
    const loc = i === null ? null : this.location(i);
    this.diagnostics.push({ severity: 'debug', file: loc?.file ?? null, line: loc?.line ?? null, message });
  }

  /** Unused-macro warnings: stderr without prefix. */
  warning(message: string): void {
    this.diagnostics.push({ severity: 'warning', file: null, line: null, message });
  }

  fail(i: number, message: string, at: number): never {
    this.error(i, message);
    throw new YyError(at);
  }

  text(t: Tok): string {
    return this.stream.texts[t]!;
  }

  concat(toks: Toks): string {
    let s = '';
    for (const t of toks) s += this.stream.texts[t]!;
    return s;
  }

  rdomain(t: Tok, la: number): number {
    const v = BigInt(this.text(t));
    if (v < 0n || v > BigInt(RT_TABLEID_MAX)) this.fail(t, `invalid rdomain: ${v}`, la);
    return Number(v);
  }

  port(t: Tok, la: number): number {
    const v = this.text(t);
    const n = strtonum(v, 1, 65535);
    if (typeof n !== 'number' || !/^[0-9]+$/.test(v)) this.fail(t, `invalid port: ${v}`, la);
    return n;
  }

  hostAddress(t: Tok, la: number): string {
    const v = this.text(t);
    const a = parseHostAddress(v);
    if (a === null) this.fail(t, `invalid address: ${v}`, la);
    return a;
  }

  /** parse.y owner_id: a uid, `user`, `user:group` or `:group`, looked up now. */
  owner(node: OwnerNode, la: number): Owner {
    const text = this.text(node.tok);
    if (node.number) {
      const uid = BigInt(text);
      if (uid < 0n || uid > 0xfffffffen) this.fail(node.tok, `failed to get user: ${text}`, la);
      return { uid: Number(uid), gid: null, user: text, group: null };
    }
    const colon = text.indexOf(':');
    const user = colon < 0 ? text : text.slice(0, colon);
    const group = colon < 0 ? '' : text.slice(colon + 1);
    let uid = 0;
    let gid: number | null = null;
    if (user !== '') {
      const pw = this.options.users.getpwnam(user);
      if (pw === null) this.fail(node.tok, `failed to get user: ${user}`, la);
      uid = pw.uid;
    }
    if (group !== '') {
      const gr = this.options.users.getgrnam(group);
      if (gr === null) this.fail(node.tok, `failed to get group: ${group}`, la);
      gid = gr.gid;
    }
    return { uid, gid, user: user === '' ? null : user, group: group === '' ? null : group };
  }

  /** realpath(3) against the working directory, with OpenBSD's PATH_MAX; one answer per path and parse. */
  realpath(path: string): Realpath {
    if (Buffer.byteLength(path) >= PATH_MAX) return { path: null, error: strerror('ENAMETOOLONG') };
    const full = resolve(this.options.cwd, path);
    let r = this.realpaths.get(full);
    if (r === undefined) {
      try {
        r = { path: realpathSync.native(full), error: null };
      } catch (err) {
        r = { path: null, error: strerror((err as NodeJS.ErrnoException).code) };
      }
      this.realpaths.set(full, r);
    }
    return r;
  }
}
