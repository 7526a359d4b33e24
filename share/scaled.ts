// Human-readable sizes exactly as OpenBSD's libutil does them: scan_scaled(3) reads `1.5G`, fmt_scaled(3) prints `88.1M`.
// vmctl (`-m`, the status table) and the vm.conf grammar (`memory`) share it so both round and complain the same way.

/** Units in order, powers of 1024: B, K, M, G, T, P, E (libutil's scale_chars). */
const SCALE_CHARS = 'BKMGTPE';
const SCALE_FACTORS: readonly bigint[] = [0n, 1n, 2n, 3n, 4n, 5n, 6n].map((i) => 1024n ** i);
const LLONG_MAX = 2n ** 63n - 1n;
const LLONG_MIN = -(2n ** 63n);
/** libutil's MAX_DIGITS: SCALE_LENGTH * 3. */
const MAX_DIGITS = SCALE_CHARS.length * 3;

/** Why a size was refused, with the errno scan_scaled/fmt_scaled set and its strerror text as the message. */
export class ScaledError extends Error {
  readonly code: 'EINVAL' | 'ERANGE';
  constructor(code: 'EINVAL' | 'ERANGE') {
    super(code === 'EINVAL' ? 'Invalid argument' : 'Numerical result out of range');
    this.name = 'ScaledError';
    this.code = code;
  }
}

const isSpace = (c: string): boolean => c === ' ' || (c >= '\t' && c <= '\r');
const isDigit = (c: string): boolean => c >= '0' && c <= '9';
const isAlnum = (c: string): boolean => isDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
/** C integer division truncates toward zero, as BigInt division does. */
const div = (a: bigint, b: bigint): bigint => a / b;

/** scan_scaled(3) to the exact long long result; throws ScaledError (EINVAL or ERANGE) where libutil fails. */
export function scanScaledBig(input: string): bigint {
  // C stops at the first NUL; so do we.
  const nul = input.indexOf('\0');
  const s = nul === -1 ? input : input.slice(0, nul);
  let p = 0;
  const at = (i: number): string => (i < s.length ? (s[i] as string) : '');
  let sign = 0;
  let ndigits = 0;
  let fractDigits = 0;
  let whole = 0n;
  let fpart = 0n;

  while (isSpace(at(p))) p++;
  while (at(p) === '-' || at(p) === '+') {
    if (sign !== 0) throw new ScaledError('EINVAL');
    sign = at(p) === '-' ? -1 : 1;
    p++;
  }
  for (; isDigit(at(p)) || at(p) === '.'; p++) {
    if (at(p) === '.') {
      if (fractDigits > 0) throw new ScaledError('EINVAL');
      fractDigits = 1;
      continue;
    }
    const d = BigInt(at(p).charCodeAt(0) - 48);
    if (fractDigits > 0) {
      // Extra fractional digits are ignored, as in libutil.
      if (fractDigits >= MAX_DIGITS - 1) continue;
      fractDigits++;
      if (fpart > div(LLONG_MAX, 10n)) throw new ScaledError('ERANGE');
      fpart *= 10n;
      if (d > LLONG_MAX - fpart) throw new ScaledError('ERANGE');
      fpart += d;
    } else {
      if (++ndigits >= MAX_DIGITS) throw new ScaledError('ERANGE');
      if (whole > div(LLONG_MAX, 10n)) throw new ScaledError('ERANGE');
      whole *= 10n;
      if (d > LLONG_MAX - whole) throw new ScaledError('ERANGE');
      whole += d;
    }
  }
  if (sign !== 0) whole *= BigInt(sign);
  // No unit: the fraction is discarded.
  if (p >= s.length) return whole;

  const unit = at(p);
  const i = /^[BKMGTPE]$/i.test(unit) ? SCALE_CHARS.indexOf(unit.toUpperCase()) : -1;
  if (i === -1) throw new ScaledError('EINVAL');
  if (isAlnum(at(p + 1))) throw new ScaledError('EINVAL');
  const scale = SCALE_FACTORS[i] as bigint;
  if (whole > div(LLONG_MAX, scale) || whole < div(LLONG_MIN, scale)) throw new ScaledError('ERANGE');
  whole *= scale;
  while (fpart >= div(LLONG_MAX, scale) || fpart <= div(LLONG_MIN, scale)) {
    fpart = div(fpart, 10n);
    fractDigits--;
  }
  fpart *= scale;
  if (fractDigits > 0) {
    for (let k = 0; k < fractDigits - 1; k++) fpart = div(fpart, 10n);
  }
  return sign === -1 ? whole - fpart : whole + fpart;
}

/** scan_scaled(3) as a number, for sizes (results past 2^53 lose precision, which no memory limit reaches). */
export function scanScaled(input: string): number {
  return Number(scanScaledBig(input));
}

/** SCALE_FACTORS as numbers: powers of two, so dividing a safe integer by one and truncating is exact. */
const SCALE_NUMBERS: readonly number[] = SCALE_FACTORS.map(Number);

/**
 * fmtScaled for a safe integer, in number arithmetic: the same steps as the long long ones below, each exact for
 * |n| < 2^53 (a quotient by a power of two, truncated toward zero as C does; remainders and 10 * fract + 512 stay
 * far below 2^53), and never out of range. A `vmctl status` row formats one or two sizes, which BigInt made slow.
 */
function fmtScaledSafe(n: number): string {
  let number = n;
  const abval = Math.abs(n);
  let unit = 0;
  let fract = 0;
  for (let i = 0; i < SCALE_NUMBERS.length; i++) {
    const f = SCALE_NUMBERS[i] as number;
    if (Math.trunc(abval / 1024) < f) {
      unit = i;
      fract = i === 0 ? 0 : abval % f;
      number = Math.trunc(number / f);
      if (i > 0) fract = Math.trunc(fract / (SCALE_NUMBERS[i - 1] as number));
      break;
    }
  }
  fract = Math.trunc((10 * fract + 512) / 1024);
  if (fract >= 10) {
    number += number >= 0 ? 1 : -1;
    fract = 0;
  }
  const c = SCALE_CHARS[unit] as string;
  if (number === 0) return '0B';
  if (unit === 0 || number >= 100 || number <= -100) {
    if (fract >= 5) number += number >= 0 ? 1 : -1;
    return `${number}${c}`;
  }
  return `${number}.${fract}${c}`;
}

/** fmt_scaled(3): at most four digits and a unit (`0B`, `512B`, `1.0G`, `88.1M`, `1024M`); throws ScaledError(ERANGE). */
export function fmtScaled(value: number | bigint): string {
  if (typeof value === 'number' && Number.isSafeInteger(Math.trunc(value))) return fmtScaledSafe(Math.trunc(value));
  let number = typeof value === 'bigint' ? value : BigInt(Math.trunc(value));
  if (number === LLONG_MIN || number > LLONG_MAX || number < LLONG_MIN) throw new ScaledError('ERANGE');
  const abval = number < 0n ? -number : number;
  if (div(abval, 1024n) >= (SCALE_FACTORS[SCALE_FACTORS.length - 1] as bigint)) throw new ScaledError('ERANGE');
  let unit = 0;
  let fract = 0n;
  for (let i = 0; i < SCALE_FACTORS.length; i++) {
    const f = SCALE_FACTORS[i] as bigint;
    if (div(abval, 1024n) < f) {
      unit = i;
      fract = i === 0 ? 0n : abval % f;
      number = div(number, f);
      if (i > 0) fract = div(fract, SCALE_FACTORS[i - 1] as bigint);
      break;
    }
  }
  fract = div(10n * fract + 512n, 1024n);
  if (fract >= 10n) {
    number += number >= 0n ? 1n : -1n;
    fract = 0n;
  } else if (fract < 0n) {
    fract = 0n;
  }
  const c = SCALE_CHARS[unit] as string;
  if (number === 0n) return '0B';
  if (unit === 0 || number >= 100n || number <= -100n) {
    if (fract >= 5n) number += number >= 0n ? 1n : -1n;
    return `${number}${c}`;
  }
  return `${number}.${fract}${c}`;
}
