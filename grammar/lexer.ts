// The token stream of a vm.conf: peggy's `Tokens` rule per file, then macros and includes expanded in order.
// Reproduces parse.y's lexer: macros re-lexed where they appear, -D macros persistent, fake newline at EOF.

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse as pegParse } from './vm.conf.parser.js';
import {
  type Token, CODE_ERROR, CODE_NL, CODE_NUMBER, CODE_STRING, PUNCT_CODES, WORD_CODES, isStringCode,
} from './tokens.js';

interface RawToken {
  readonly k: string;
  readonly t: string;
  readonly o: number;
}

/** One macro of the symbol table (parse.y `struct sym`), in definition order. */
export interface Macro {
  readonly value: string;
  readonly persistent: boolean;
  used: boolean;
}

/** What the pre-pass learnt about an `include` statement; the parser reports it when it reaches the statement. */
export interface IncludeResult {
  readonly path: string;
  readonly ok: boolean;
}

/** The expanded token stream of a file and everything it includes. */
export interface TokenStream {
  /** Tokens; the last one (index codes.length) is EOF. */
  readonly tokens: readonly Token[];
  /** One code character per token before EOF: the input of the structural grammar. */
  readonly codes: string;
  /** File names as written (-f argument, include arguments), indexed by Token.file. */
  readonly files: readonly string[];
  readonly macros: ReadonlyMap<string, Macro>;
  /** Keyed by the index of the INCLUDE token. */
  readonly includes: ReadonlyMap<number, IncludeResult>;
}

// parse.y's buffer is 8096 bytes and keeps room for the terminator.
const MAX_TOKEN = 8094;
const MAX_INCLUDE_DEPTH = 32;
const LLONG_MAX = (1n << 63n) - 1n;
const LLONG_MIN = -(1n << 63n);

/** Lex raw text with the grammar's `Tokens` rule; `$` before offset `expandFrom` is not a macro. */
export function lexRaw(text: string, expandFrom = 0): RawToken[] {
  // Lexing cannot fail (any character is a token), so peggy need not record expectations: much faster.
  return pegParse(text, { startRule: 'Tokens', expandFrom, peg$silentFails: 1 } as never) as unknown as RawToken[];
}

/** A piece of text being lexed, with the line of each offset. */
interface Source {
  readonly text: string;
  readonly raw: readonly RawToken[];
  readonly file: number;
  lineAt(offset: number): number;
}

function lineCounter(text: string, first: number): (offset: number) => number {
  let pos = 0;
  let line = first;
  return (offset: number) => {
    if (offset < pos) {
      pos = 0;
      line = first;
    }
    for (let i = text.indexOf('\n', pos); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) line++;
    pos = offset;
    return line;
  };
}

/** Builds the stream; one instance per parse. */
export class Lexer {
  private readonly tokens: Token[] = [];
  private readonly codes: string[] = [];
  private readonly files: string[] = [];
  private readonly macros = new Map<string, Macro>();
  private readonly includes = new Map<number, IncludeResult>();
  private depth = 0;
  /** Macro values re-lexed alone, by value: a value lexes the same every time it is used. */
  private readonly valueTokens = new Map<string, RawToken[]>();

  constructor(private readonly cwd: string, macros: Readonly<Record<string, string>>) {
    for (const [name, value] of Object.entries(macros)) this.macros.set(name, { value, persistent: true, used: false });
  }

  /** Lex the top file (text already read) and everything it includes. */
  run(fileName: string, text: string): TokenStream {
    const lastLine = this.lexFile(fileName, text, true);
    this.tokens.push({ code: '', text: '', quoted: false, file: 0, line: lastLine + 1 });
    return { tokens: this.tokens, codes: this.codes.join(''), files: this.files, macros: this.macros, includes: this.includes };
  }

  /** Returns the line of the fake newline yacc sees at EOF. */
  private lexFile(fileName: string, text: string, top: boolean): number {
    const file = this.files.length;
    this.files.push(fileName);
    // pushfile(): an included file starts at line 0 with a pushed-back newline.
    if (!top) this.push({ code: CODE_NL, text: '\n', quoted: false, file, line: 0 });
    const src: Source = { text, raw: lexRaw(text), file, lineAt: lineCounter(text, 1) };
    if (this.lexSource(src) === 'eof') return -1;
    let lines = 1;
    for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) lines++;
    this.push({ code: CODE_NL, text: '\n', quoted: false, file, line: lines });
    return lines;
  }

  private push(tok: Token): void {
    this.tokens.push(tok);
    this.codes.push(tok.code);
    if (tok.code === CODE_STRING || isStringCode(tok.code)) this.afterString();
    else if (tok.code === CODE_NL) this.afterNewline();
  }

  private error(src: Source, offset: number, message: string): void {
    this.push({ code: CODE_ERROR, text: '', quoted: false, file: src.file, line: src.lineAt(offset), error: message });
  }

  /**
   * Emit the tokens of a source. Returns 'findeol' when a lexer error must skip the rest of the line
   * beyond this source, 'eof' when lexing must stop (EOF inside quotes), else 'ok'.
   */
  private lexSource(src: Source): 'ok' | 'findeol' | 'eof' {
    const raw = src.raw;
    let skipping = false;
    for (let i = 0; i < raw.length; i++) {
      const r = raw[i]!;
      if (skipping) {
        if (r.k === '\n') skipping = false;
        continue;
      }
      switch (r.k) {
        case '\n':
          this.push({ code: CODE_NL, text: '\n', quoted: false, file: src.file, line: src.lineAt(r.o) });
          break;
        case 'q':
        case 'w': {
          if (r.t.length > MAX_TOKEN) {
            this.error(src, r.o, 'string too long');
            skipping = true;
            break;
          }
          const code = r.k === 'w' ? (WORD_CODES.get(r.t) ?? CODE_STRING) : CODE_STRING;
          this.push({ code, text: r.t, quoted: r.k === 'q', file: src.file, line: src.lineAt(r.o) });
          break;
        }
        case 'n': {
          const v = BigInt(r.t);
          if (v > LLONG_MAX || v < LLONG_MIN) {
            this.error(src, r.o, `"${r.t}" invalid number: ${v > 0n ? 'too large' : 'too small'}`);
            skipping = true;
            break;
          }
          this.push({ code: CODE_NUMBER, text: r.t, quoted: false, file: src.file, line: src.lineAt(r.o) });
          break;
        }
        case 'c':
          this.push({ code: PUNCT_CODES.get(r.t) ?? CODE_ERROR, text: r.t, quoted: false, file: src.file, line: src.lineAt(r.o) });
          break;
        case 'e':
          this.error(src, r.o, r.t);
          return 'eof';
        case '$': {
          const macro = this.macros.get(r.t);
          if (macro === undefined) {
            this.error(src, r.o, `macro '${r.t}' not defined`);
            skipping = true;
            break;
          }
          macro.used = true;
          const line = src.lineAt(r.o);
          const end = r.o + 1 + r.t.length;
          const next = raw[i + 1];
          const adjacent = next !== undefined && next.o === end && next.k !== '\n';
          if (!adjacent && !/[#"'\\]/.test(macro.value)) {
            // The common case: the value alone, every token on the line of the `$`.
            let valueRaw = this.valueTokens.get(macro.value);
            if (valueRaw === undefined) {
              valueRaw = lexRaw(macro.value, Infinity);
              this.valueTokens.set(macro.value, valueRaw);
            }
            const sub: Source = { text: macro.value, raw: valueRaw, file: src.file, lineAt: () => line };
            const res = this.lexSource(sub);
            if (res === 'eof') return res;
            if (res === 'findeol') skipping = true;
            break;
          }
          // The value continues into the following text (`$a"b"`, `$x.img`) or holds a comment or quote:
          // lex the value and the rest of the line together, as parse.y's push-back does.
          const nl = src.text.indexOf('\n', end);
          const lineEnd = nl === -1 ? src.text.length : nl;
          const combined = macro.value + src.text.slice(end, lineEnd);
          const valueLen = macro.value.length;
          const sub: Source = {
            text: combined,
            raw: lexRaw(combined, valueLen),
            file: src.file,
            lineAt: (o) => (o < valueLen ? line : src.lineAt(end + o - valueLen)),
          };
          while (i + 1 < raw.length && raw[i + 1]!.o < lineEnd) i++;
          const res = this.lexSource(sub);
          if (res === 'eof') return res;
          if (res === 'findeol') skipping = true;
          break;
        }
        default:
          throw new Error(`unknown raw token kind ${r.k}`);
      }
    }
    return skipping ? 'findeol' : 'ok';
  }

  /** `name = value` at the start of a line defines a macro before the next token is read (yacc reduces first). */
  private afterString(): void {
    const n = this.tokens.length;
    if (n < 3 || this.codes[n - 2] !== '=' || !isStringCode(this.codes[n - 3]!)) return;
    if (n > 3 && this.codes[n - 4] !== CODE_NL) return;
    const name = this.tokens[n - 3]!.text;
    // parse.y's whitespace check skips the first character; the action reports the error itself.
    if (/\s/.test(name.slice(1))) return;
    const old = this.macros.get(name);
    if (old?.persistent) return;
    this.macros.delete(name);
    this.macros.set(name, { value: this.tokens[n - 1]!.text, persistent: false, used: false });
  }

  /** `include STRING…` followed by its newline: read the file now so its tokens follow that newline. */
  private afterNewline(): void {
    const n = this.tokens.length - 1;
    let k = n - 1;
    while (k >= 0 && isStringCode(this.codes[k]!)) k--;
    if (k < 0 || k === n - 1 || this.codes[k] !== 'P' || (k > 0 && this.codes[k - 1] !== CODE_NL)) return;
    let path = '';
    for (let j = k + 1; j < n; j++) path += this.tokens[j]!.text;
    let text: string | null = null;
    if (this.depth < MAX_INCLUDE_DEPTH) {
      try {
        text = readFileSync(resolve(this.cwd, path), 'utf8');
      } catch {
        text = null;
      }
    }
    this.includes.set(k, { path, ok: text !== null });
    if (text === null) return;
    this.depth++;
    this.lexFile(path, text, false);
    this.depth--;
  }
}
