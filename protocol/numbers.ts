/**
 * A count with its digits grouped by commas, as `Math.round(value).toLocaleString('en-US')` writes
 * it (`13,290`), without Intl: the first call into Intl loads ICU's locale data, 45-90 ms here,
 * paid by the first progress line of a model call and by every summary at exit. Token counts and
 * forecasts are whole numbers; anything else is rounded to one first.
 */
export function groupDigits(value: number): string {
  if (!Number.isFinite(value)) return Number.isNaN(value) ? 'NaN' : value > 0 ? '∞' : '-∞';
  const rounded = Math.round(value);
  const whole = Math.abs(rounded);
  // String() writes 1e21 and above in exponent form.
  const digits = whole >= 1e21 ? BigInt(whole).toString() : String(whole);
  return `${rounded < 0 ? '-' : ''}${digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',')}`;
}
