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
