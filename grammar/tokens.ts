// Tokens of vm.conf after lexing and macro expansion, and their one-character codes for the peggy grammar.
// The code table must match the terminals of grammar/vm.conf.peggy (keywords A-Z a-m, extensions n-z 0-7).

import { KEYWORDS, EXTENSION_STRUCTURAL_WORDS } from './keywords.js';

/** One token as the structural grammar sees it, with the file and line yacc would report for it. */
export interface Token {
  /** One-character code (see CODE_*). */
  readonly code: string;
  /** The value: string contents (unquoted), number text, keyword, or the character. */
  readonly text: string;
  /** True for a quoted string (used to re-quote it in a rule's text). */
  readonly quoted: boolean;
  /** Index into the parse's file list. */
  readonly file: number;
  readonly line: number;
  /** Lexer error message for CODE_ERROR tokens (yacc prints it when the token is read). */
  readonly error?: string;
}

export const CODE_STRING = '$';
export const CODE_NUMBER = '#';
export const CODE_NL = ';';
export const CODE_ERROR = '?';

const KEYWORD_CODES = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklm';
const EXTENSION_CODES = 'nopqrstuvwxyz01234567';

/** Unquoted word to token code: keywords always, extension words as their own code (still strings). */
export const WORD_CODES: ReadonlyMap<string, string> = new Map([
  ...KEYWORDS.map((w, i) => [w, KEYWORD_CODES[i]!] as const),
  ...EXTENSION_STRUCTURAL_WORDS.map((w, i) => [w, EXTENSION_CODES[i]!] as const),
]);

/** Codes of punctuation the grammar uses; every other character becomes CODE_ERROR. */
export const PUNCT_CODES: ReadonlyMap<string, string> = new Map([
  ['{', '{'], ['}', '}'], [',', ','], ['=', '='],
]);

/** Whether a token is a STRING to yacc (plain, quoted, or an extension word). */
export function isStringCode(code: string): boolean {
  return code === CODE_STRING || (code >= 'n' && code <= 'z') || (code >= '0' && code <= '7');
}
