// Tests for share/scaled: fmt_scaled and scan_scaled must agree with OpenBSD's libutil to the byte.
// share/scaled serves vmctl and the vm.conf grammar (`memory`); the cases marked vm.conf came from the grammar's tests.
// Expected values follow the C code's integer arithmetic (fmt_scaled.c 1.23), including its rounding quirks.
import t from 'tap';
import { fmtScaled, scanScaled, scanScaledBig, ScaledError } from '../../share/scaled.js';

const K = 1024;
const M = K * K;
const G = M * K;

t.test('fmt_scaled', async (t) => {
  const cases: [number | bigint, string][] = [
    [0, '0B'],
    [1, '1B'],
    [512, '512B'],
    [1023, '1023B'],
    [1024, '1.0K'],
    [1536, '1.5K'],
    [G, '1.0G'],
    [92379545, '88.1M'],
    [512 * M, '512M'],
    [1023 * M + 512 * K, '1024M'],
    [99 * M + 1023 * K, '100M'],
    [128 * G, '128G'],
    [10483892, '10.0M'],
    [-1536, '-1.5K'],
    [-512 * M, '-512M'],
    [2n ** 60n, '1.0E'],
    [2n ** 63n - 1n, '8.0E'],
    // vm.conf: the memory limit and rounding messages.
    [1023 * M, '1023M'],
    [92379136, '88.1M'],
  ];
  for (const [n, want] of cases) t.equal(fmtScaled(n), want, `${n} -> ${want}`);
  for (const bad of [-(2n ** 63n), 2n ** 63n, 1024n * 2n ** 60n]) {
    t.throws(() => fmtScaled(bad), { code: 'ERANGE' }, `${bad} is out of range`);
  }
});

t.test('fmt_scaled of a safe integer (number arithmetic) prints what the long long arithmetic prints', async (t) => {
  const values: number[] = [];
  // Around every unit's edges and every rounding step of the tenths, both signs.
  for (let u = 0; u <= 5; u++) {
    const f = 1024 ** u;
    for (const m of [1, 9, 10, 99, 100, 999, 1000, 1023, 1024]) {
      for (const d of [-513, -512, -511, -103, -102, -52, -51, -1, 0, 1, 51, 52, 102, 103, 511, 512, 513]) {
        const v = m * f + Math.trunc((d * f) / 1024);
        if (Number.isSafeInteger(v)) values.push(v, -v);
      }
    }
  }
  values.push(Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 2 ** 52, 1.9, -1.9, 1535.99);
  // And a spread of others: a fixed linear congruential sequence, so a failure reproduces.
  let x = 12345;
  for (let i = 0; i < 20_000; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    values.push(Math.trunc((x / 2 ** 31) * 2 ** (i % 53)) * (i % 2 === 0 ? 1 : -1));
  }
  let differ = 0;
  for (const v of values) {
    const want = fmtScaled(BigInt(Math.trunc(v)));
    if (fmtScaled(v) !== want) {
      differ++;
      if (differ <= 5) t.fail(`${v}: ${fmtScaled(v)} where the long long arithmetic gives ${want}`);
    }
  }
  t.equal(differ, 0, `${values.length} values`);
});

t.test('scan_scaled', async (t) => {
  const cases: [string, bigint][] = [
    ['0', 0n],
    ['512', 512n],
    ['512.7', 512n],
    ['1.5K', 1536n],
    ['1k', 1024n],
    ['1G', 2n ** 30n],
    ['1g', 2n ** 30n],
    ['1.5G', 3n * 2n ** 29n],
    ['0.5M', 524288n],
    ['  +2M', 2n * 2n ** 20n],
    ['-1K', -1024n],
    ['1G ', 2n ** 30n],
    ['1G-', 2n ** 30n],
    ['7E', 7n * 2n ** 60n],
    ['1.999B', 1n],
    ['B', 0n],
    ['', 0n],
    ['.5K', 512n],
    ['1.00000000000000000000000001K', 1024n],
    ['1023.5M', 1023n * 2n ** 20n + 2n ** 19n],
    // vm.conf
    ['1.5g', 1610612736n],
    ['1048575K', 1073740800n],
    ['1.9', 1n],
    [' -2M', -2097152n],
  ];
  for (const [s, want] of cases) t.equal(scanScaledBig(s), want, JSON.stringify(s));
  t.equal(scanScaled('512M'), 512 * M);
  const errors: [string, 'EINVAL' | 'ERANGE'][] = [
    ['1GB', 'EINVAL'],
    ['1 G', 'EINVAL'],
    ['abc', 'EINVAL'],
    ['1.2.3', 'EINVAL'],
    ['--1', 'EINVAL'],
    ['+-1', 'EINVAL'],
    ['1X', 'EINVAL'],
    ['1G2', 'EINVAL'],
    ['8E', 'ERANGE'],
    ['99999999999999999999', 'ERANGE'],
    ['123456789012345678901', 'ERANGE'],
    ['9000000P', 'ERANGE'],
    // vm.conf
    ['9999999999999999999G', 'ERANGE'],
  ];
  for (const [s, code] of errors) t.throws(() => scanScaledBig(s), { code }, `${JSON.stringify(s)} is ${code}`);
  const e = (() => {
    try {
      scanScaled('x');
    } catch (err) {
      return err;
    }
    return undefined;
  })();
  t.ok(e instanceof ScaledError);
  t.equal((e as Error).message, 'Invalid argument', 'the message is strerror(EINVAL)');
});

t.test('round trip of whole units', async (t) => {
  for (const s of ['1K', '2M', '3G', '100M', '512M', '128G']) t.equal(fmtScaled(scanScaledBig(s)), s.length < 4 ? `${s[0]}.0${s.slice(1)}` : s);
});
