// The token stream of a vm.conf: peggy's `Tokens` rule per file, then macros and includes expanded in order.
// Reproduces parse.y's lexer: macros re-lexed where they appear, -D macros persistent, fake newline at EOF.

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse as pegParse } from './vm.conf.parser.js';
import { CODE_ERROR, CODE_NL, CODE_NUMBER, CODE_STRING, PUNCT_CODES, WORD_CODES, isStringCode } from './tokens.js';

/** What the grammar's `Tokens` rule returns: parallel arrays, one entry per token (kind, text, offset). */
interface RawTokens {
  readonly kinds: readonly string[];
  readonly texts: readonly string[];
  readonly offsets: readonly number[];
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

/**
 * The expanded token stream of a file and everything it includes. Tokens are stored as parallel arrays
 * indexed by token (the last index, codes.length, is EOF) rather than as an object each: a large config
 * has hundreds of thousands of tokens and long-lived small objects are what V8's GC is slowest at.
 */
export interface TokenStream {
  /** One code character per token before EOF (see grammar/tokens.ts): the input of the structural grammar. */
  readonly codes: string;
  /** The value: string contents (unquoted), number text, keyword, or the character. */
  readonly texts: readonly string[];
  /** True for a quoted string (used to re-quote it in a rule's text). */
  readonly quoted: readonly boolean[];
  /** Index into `files`. */
  readonly fileOf: readonly number[];
  /** The line yacc would report for the token. */
  readonly lines: readonly number[];
  /** Lexer error messages of CODE_ERROR tokens, by token index (yacc prints them when it reads the token). */
  readonly errors: ReadonlyMap<number, string>;
  /** File names as written (-f argument, include arguments), indexed by `fileOf`. */
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
export function lexRaw(text: string, expandFrom = 0): RawTokens {
  // Lexing cannot fail (any character is a token), so peggy need not record expectations: much faster.
  return pegParse(text, { startRule: 'Tokens', expandFrom, peg$silentFails: 1 } as never) as unknown as RawTokens;
}

/** A piece of text being lexed, with the line of each offset. */
interface Source {
  readonly text: string;
  readonly raw: RawTokens;
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
  private readonly codes: string[] = [];
  private readonly texts: string[] = [];
  private readonly quoted: boolean[] = [];
  private readonly fileOf: number[] = [];
  private readonly lines: number[] = [];
  private readonly errors = new Map<number, string>();
  private readonly files: string[] = [];
  private readonly macros = new Map<string, Macro>();
  private readonly includes = new Map<number, IncludeResult>();
  private depth = 0;
  /** Macro values re-lexed alone, by value: a value lexes the same every time it is used. */
  private readonly valueTokens = new Map<string, RawTokens>();

  constructor(private readonly cwd: string, macros: Readonly<Record<string, string>>) {
    for (const [name, value] of Object.entries(macros)) this.macros.set(name, { value, persistent: true, used: false });
  }

  /** Lex the top file (text already read) and everything it includes. */
  run(fileName: string, text: string): TokenStream {
    const lastLine = this.lexFile(fileName, text, true);
    // The EOF entry: no code (the structural grammar sees the end of its input), the line yacc reports there.
    this.texts.push('');
    this.quoted.push(false);
    this.fileOf.push(0);
    this.lines.push(lastLine + 1);
    return {
      codes: this.codes.join(''), texts: this.texts, quoted: this.quoted, fileOf: this.fileOf, lines: this.lines, errors: this.errors,
      files: this.files, macros: this.macros, includes: this.includes,
    };
  }

  /** Returns the line of the fake newline yacc sees at EOF. */
  private lexFile(fileName: string, text: string, top: boolean): number {
    const file = this.files.length;
    this.files.push(fileName);
    // pushfile(): an included file starts at line 0 with a pushed-back newline.
    if (!top) this.push(CODE_NL, '\n', false, file, 0);
    const src: Source = { text, raw: lexRaw(text), file, lineAt: lineCounter(text, 1) };
    if (this.lexSource(src) === 'eof') return -1;
    let lines = 1;
    for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) lines++;
    this.push(CODE_NL, '\n', false, file, lines);
    return lines;
  }

  private push(code: string, text: string, quoted: boolean, file: number, line: number): void {
    this.codes.push(code);
    this.texts.push(text);
    this.quoted.push(quoted);
    this.fileOf.push(file);
    this.lines.push(line);
    if (isStringCode(code)) this.afterString();
    else if (code === CODE_NL) this.afterNewline();
  }

  private error(src: Source, offset: number, message: string): void {
    this.errors.set(this.codes.length, message);
    this.push(CODE_ERROR, '', false, src.file, src.lineAt(offset));
  }

  /**
   * Emit the tokens of a source. Returns 'findeol' when a lexer error must skip the rest of the line
   * beyond this source, 'eof' when lexing must stop (EOF inside quotes), else 'ok'.
   */
  private lexSource(src: Source): 'ok' | 'findeol' | 'eof' {
    const { kinds, texts, offsets } = src.raw;
    const file = src.file;
    let skipping = false;
    for (let i = 0; i < kinds.length; i++) {
      const k = kinds[i]!;
      if (skipping) {
        if (k === '\n') skipping = false;
        continue;
      }
      const t = texts[i]!;
      const o = offsets[i]!;
      switch (k) {
        case '\n':
          this.push(CODE_NL, '\n', false, file, src.lineAt(o));
          break;
        case 'q':
        case 'w': {
          if (t.length > MAX_TOKEN) {
            this.error(src, o, 'string too long');
            skipping = true;
            break;
          }
          const code = k === 'w' ? (WORD_CODES.get(t) ?? CODE_STRING) : CODE_STRING;
          this.push(code, t, k === 'q', file, src.lineAt(o));
          break;
        }
        case 'n': {
          // Up to 18 characters ("-" and 17 digits) always fits a long long: skip the BigInt then.
          if (t.length > 18) {
            const v = BigInt(t);
            if (v > LLONG_MAX || v < LLONG_MIN) {
              this.error(src, o, `"${t}" invalid number: ${v > 0n ? 'too large' : 'too small'}`);
              skipping = true;
              break;
            }
          }
          this.push(CODE_NUMBER, t, false, file, src.lineAt(o));
          break;
        }
        case 'c':
          this.push(PUNCT_CODES.get(t) ?? CODE_ERROR, t, false, file, src.lineAt(o));
          break;
        case 'e':
          this.error(src, o, t);
          return 'eof';
        case '$': {
          const [res, next] = this.lexMacro(src, i);
          if (res === 'eof') return res;
          if (res === 'findeol') skipping = true;
          i = next;
          break;
        }
        default:
          throw new Error(`unknown raw token kind ${k}`);
      }
    }
    return skipping ? 'findeol' : 'ok';
  }

  /**
   * Expand the macro at raw token `i` of a source; returns lexSource's verdict and the index of the last raw
   * token used (further than `i` when the value was lexed together with the rest of its line).
   */
  private lexMacro(src: Source, i: number): ['ok' | 'findeol' | 'eof', number] {
    const { kinds, texts, offsets } = src.raw;
    const file = src.file;
    const t = texts[i]!;
    const o = offsets[i]!;
    const macro = this.macros.get(t);
    if (macro === undefined) {
      this.error(src, o, `macro '${t}' not defined`);
      return ['findeol', i];
    }
    macro.used = true;
    const line = src.lineAt(o);
    const end = o + 1 + t.length;
    const adjacent = i + 1 < kinds.length && offsets[i + 1] === end && kinds[i + 1] !== '\n';
    if (!adjacent && !/[#"'\\]/.test(macro.value)) {
      // The common case: the value alone, every token on the line of the `$`.
      let valueRaw = this.valueTokens.get(macro.value);
      if (valueRaw === undefined) {
        valueRaw = lexRaw(macro.value, Infinity);
        this.valueTokens.set(macro.value, valueRaw);
      }
      const sub: Source = { text: macro.value, raw: valueRaw, file, lineAt: () => line };
      return [this.lexSource(sub), i];
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
      file,
      lineAt: (o) => (o < valueLen ? line : src.lineAt(end + o - valueLen)),
    };
    while (i + 1 < kinds.length && offsets[i + 1]! < lineEnd) i++;
    return [this.lexSource(sub), i];
  }

  /** `name = value` at the start of a line defines a macro before the next token is read (yacc reduces first). */
  private afterString(): void {
    const n = this.codes.length;
    if (n < 3 || this.codes[n - 2] !== '=' || !isStringCode(this.codes[n - 3]!)) return;
    if (n > 3 && this.codes[n - 4] !== CODE_NL) return;
    const name = this.texts[n - 3]!;
    // parse.y's whitespace check skips the first character; the action reports the error itself.
    if (/\s/.test(name.slice(1))) return;
    const old = this.macros.get(name);
    if (old?.persistent) return;
    this.macros.delete(name);
    this.macros.set(name, { value: this.texts[n - 1]!, persistent: false, used: false });
  }

  /** `include STRING…` followed by its newline: read the file now so its tokens follow that newline. */
  private afterNewline(): void {
    const n = this.codes.length - 1;
    let k = n - 1;
    while (k >= 0 && isStringCode(this.codes[k]!)) k--;
    if (k < 0 || k === n - 1 || this.codes[k] !== 'P' || (k > 0 && this.codes[k - 1] !== CODE_NL)) return;
    let path = '';
    for (let j = k + 1; j < n; j++) path += this.texts[j]!;
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
