// The one-character codes of vm.conf tokens after lexing and macro expansion: the peggy grammar's terminals.
// The code table must match the terminals of grammar/vm.conf.peggy (keywords A-Z a-m, extensions n-z 0-9).

import { KEYWORDS, EXTENSION_STRUCTURAL_WORDS } from './keywords.js';

export const CODE_STRING = '$';
export const CODE_NUMBER = '#';
export const CODE_NL = ';';
export const CODE_ERROR = '?';

const KEYWORD_CODES = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklm';
const EXTENSION_CODES = 'nopqrstuvwxyz0123456789';

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
  return code === CODE_STRING || (code >= 'n' && code <= 'z') || (code >= '0' && code <= '9');
}
