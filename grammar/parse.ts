// Facade of the vm.conf parser: text in, a checked readonly Config plus diagnostics out.
// Drives the peggy grammar statement by statement and emulates yacc's error recovery so output matches vmd.

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Config } from '../share/config.js';
import { type UserDb, systemUserDb } from '../share/users.js';
import { parse as pegParse } from './vm.conf.parser.js';
import type { PartialBlock, Statement } from './ast.js';
import { YyError } from './action-base.js';
import { Builder } from './actions.js';
import { checkConfig } from './check.js';
import { Lexer, type TokenStream } from './lexer.js';
import { CODE_NL } from './tokens.js';
import { strerror } from '../share/errno.js';
import type { Diagnostic } from './diagnostic.js';

export type { Diagnostic } from './diagnostic.js';

export interface ParseOptions {
  /** `vmd -D name=value` macros: persistent, they win over definitions in the file. */
  readonly macros?: Readonly<Record<string, string>>;
  /** Directory relative paths (include, disk, boot, initrd) resolve against; default process.cwd(). */
  readonly cwd?: string;
  /** User and group databases for owner names; default the host's name service (NSS). */
  readonly users?: UserDb;
}

export interface ParseResult {
  /** null when there were errors. */
  readonly config: Config | null;
  readonly diagnostics: readonly Diagnostic[];
}

/** What peggy's library mode returns (peggy 5 `peg$library`): the result and where parsing stopped. */
interface LibraryResult<T> {
  readonly peg$result: T | object;
  readonly peg$currPos: number;
  readonly peg$FAILED: object;
  readonly peg$maxFailPos: number;
}

/**
 * `silent` skips peggy's expectation bookkeeping (fast, but then peg$maxFailPos is not tracked).
 * `onStatement` receives each statement `Statements` parses, as soon as it is parsed (see the grammar).
 */
function pegRun<T>(
  startRule: string, codes: string, pos: number, silent = false, onStatement?: (s: Statement) => void,
): LibraryResult<T> {
  const options = { startRule, peg$library: true, peg$currPos: pos, peg$silentFails: silent ? 1 : 0, onStatement };
  return pegParse(codes, options as never) as unknown as LibraryResult<T>;
}

/** yacc's `error` recovery, in the three-token form byacc implements. */
class Recovery {
  /** yyerrflag: syntax errors are silent while it is non-zero; each shifted token decrements it. */
  errflag = 0;
  /** Lexer errors are printed when yacc reads their token; remember which ones were. */
  private printed = -1;

  constructor(private readonly stream: TokenStream, private readonly b: Builder) {}

  lexerError(i: number): void {
    const error = this.stream.errors.get(i);
    if (error !== undefined && i > this.printed) {
      this.b.error(i, error);
      this.printed = i;
    }
  }

  shifted(n: number): void {
    this.errflag = Math.max(0, this.errflag - n);
  }

  /** Pop to `grammar`, shift `error`, discard tokens up to the next newline and shift it; returns where to go on. */
  recover(from: number): number {
    const codes = this.stream.codes;
    for (let j = from; j < codes.length; j++) {
      this.lexerError(j);
      if (codes[j] === CODE_NL) {
        this.errflag = 2;
        return j + 1;
      }
    }
    // EOF while recovering: yacc aborts.
    return codes.length;
  }
}

function runParser(stream: TokenStream, b: Builder): void {
  const codes = stream.codes;
  const r = new Recovery(stream, b);
  let pos = 0;
  // Each statement runs its actions as soon as it is parsed; a failing action (YyError) abandons the parse
  // there, and parsing starts again after yacc's recovery.
  const onStatement = (s: Statement): void => {
    b.statement(s);
    r.shifted(s.end - s.start);
  };
  while (pos < codes.length) {
    let run: LibraryResult<Statement[]>;
    try {
      run = pegRun<Statement[]>('Statements', codes, pos, true, onStatement);
    } catch (err) {
      if (!(err instanceof YyError)) throw err;
      pos = r.recover(err.at);
      continue;
    }
    pos = run.peg$currPos;
    if (pos >= codes.length) break;
    // A statement with a syntax error: yacc detects it at the first token that cannot continue it.
    const errPos = Math.max(pegRun<Statement>('Statement', codes, pos).peg$maxFailPos, pos);
    const partial = pegRun<PartialBlock>('Partial', codes, pos);
    if (partial.peg$result !== partial.peg$FAILED) {
      try {
        b.partial(partial.peg$result as PartialBlock, errPos);
      } catch (err) {
        if (!(err instanceof YyError)) throw err;
        pos = r.recover(err.at);
        continue;
      }
    }
    r.shifted(errPos - pos);
    r.lexerError(errPos);
    if (r.errflag === 0) b.error(errPos, 'syntax error');
    pos = r.recover(errPos);
  }
}

/** Parse vm.conf text as if read from `fileName` (used in messages and as the first of `files`). */
export function parseConfigText(text: string, fileName: string, options: ParseOptions = {}): ParseResult {
  const cwd = options.cwd ?? process.cwd();
  const stream = new Lexer(cwd, options.macros ?? {}).run(fileName, text);
  const b = new Builder(stream, { cwd, users: options.users ?? systemUserDb() });
  runParser(stream, b);
  for (const [name, macro] of stream.macros) if (!macro.used) b.warning(`warning: macro '${name}' not used`);
  const parseFailed = b.diagnostics.some((d) => d.severity === 'error');
  const config = b.config();
  // The load-time checks only make sense on a file that parsed; they would echo its errors otherwise.
  const checks = parseFailed ? [] : checkConfig(config);
  const diagnostics = [...b.diagnostics, ...checks];
  return { config: parseFailed || checks.length > 0 ? null : config, diagnostics };
}

/** Read and parse a vm.conf; an unreadable file is a `failed to open FILE: reason` error. */
export function parseConfigFile(path: string, options: ParseOptions = {}): ParseResult {
  let text: string;
  try {
    text = readFileSync(resolve(options.cwd ?? process.cwd(), path), 'utf8');
  } catch (err) {
    const message = `failed to open ${path}: ${strerror((err as NodeJS.ErrnoException).code)}`;
    return { config: null, diagnostics: [{ severity: 'error', file: null, line: null, message }] };
  }
  return parseConfigText(text, path, options);
}

/** One diagnostic as vmd prints it on stderr: `vmd: FILE:LINE: msg`, `vmd: msg`, or a bare warning. */
export function formatDiagnostic(d: Diagnostic): string {
  if (d.severity === 'warning') return d.message;
  return d.file === null ? `vmd: ${d.message}` : `vmd: ${d.file}:${d.line}: ${d.message}`;
}
