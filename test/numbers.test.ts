import test from 'ava';
import { groupDigits } from '../protocol/numbers.ts';

test('groupDigits writes a count as toLocaleString("en-US") writes it rounded', (t) => {
  const values = [0, -0, 1, 12, 999, 1000, 1001, 12_345, 999_999, 1_000_000, 1_234_567, 2 ** 53 - 1, -1234, 1234.5, 1234.4, -1234.6, 0.4, NaN, Infinity, -Infinity];
  // A seeded spread of integers of every length, and some with fractions.
  let seed = 20_261_201;
  const next = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
  for (let index = 0; index < 2000; index += 1) {
    const whole = Math.floor(next() * 10 ** (1 + Math.floor(next() * 15)));
    values.push(whole, -whole, whole + next(), -whole - next(), whole + 0.5, -whole - 0.5);
  }
  for (const value of values) t.is(groupDigits(value), (Number.isFinite(value) ? Math.round(value) : value).toLocaleString('en-US').replace(/^-0$/, '0'), String(value));
});

test('groupDigits keeps large counts out of exponent form', (t) => {
  t.is(groupDigits(1e21), '1,000,000,000,000,000,000,000');
  t.is(groupDigits(-5e21), '-5,000,000,000,000,000,000,000');
});
