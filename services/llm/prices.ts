import type { TokenUsage } from './provider.ts';

/**
 * USD per million tokens. `cache_read` and `cache_write` default to `input` when absent: an
 * unknown discount is charged at the full input rate, so a budget is never underestimated.
 * The field names are the config file's (snake_case), so a configured table is used as written.
 */
export interface ModelPrice {
  input: number;
  output: number;
  cache_read?: number | undefined;
  cache_write?: number | undefined;
}

/** Model name (or name prefix) to price. */
export type PriceTable = Record<string, ModelPrice>;

/**
 * List prices of the public APIs, checked against platform.claude.com/docs/en/about-claude/pricing
 * and openai.com/api/pricing in October 2026. A key matches a model name exactly or as a prefix
 * ending at a separator, the longest key winning: `claude-sonnet-4` prices `claude-sonnet-4-5-20250929`,
 * `claude-sonnet-5-5` wins over `claude-sonnet-5` for `claude-sonnet-5-5`. Anthropic `cache_write` is
 * the 5-minute write (what `cache_control: ephemeral` buys). Prices change: a config table overrides
 * any entry, and a model no key matches costs 0 and is reported as unknown.
 * Not modelled: Haiku 5.5 bills prompts over 100k tokens at 5x, and OpenAI bills contexts over 270k
 * higher; both are priced at the base rate here.
 */
export const DEFAULT_PRICES: PriceTable = {
  // Anthropic
  'claude-fable-5-1': { input: 10, output: 50, cache_read: 0.25, cache_write: 12.5 },
  'claude-mythos-5-1': { input: 10, output: 50, cache_read: 0.25, cache_write: 12.5 },
  'claude-fable-5': { input: 10, output: 50, cache_read: 1, cache_write: 12.5 },
  'claude-mythos-5': { input: 10, output: 50, cache_read: 1, cache_write: 12.5 },
  'claude-opus-5-5': { input: 4, output: 20, cache_read: 0.2, cache_write: 5 },
  'claude-opus-5': { input: 5, output: 25, cache_read: 0.5, cache_write: 6.25 },
  'claude-opus-4-8': { input: 5, output: 25, cache_read: 0.5, cache_write: 6.25 },
  'claude-opus-4-7': { input: 5, output: 25, cache_read: 0.5, cache_write: 6.25 },
  'claude-opus-4-6': { input: 5, output: 25, cache_read: 0.5, cache_write: 6.25 },
  'claude-opus-4-5': { input: 5, output: 25, cache_read: 0.5, cache_write: 6.25 },
  'claude-opus-4': { input: 15, output: 75, cache_read: 1.5, cache_write: 18.75 },
  'claude-sonnet-5-5': { input: 2, output: 10, cache_read: 0.1, cache_write: 2.5 },
  'claude-sonnet-5': { input: 2, output: 10, cache_read: 0.2, cache_write: 2.5 },
  'claude-sonnet-4': { input: 3, output: 15, cache_read: 0.3, cache_write: 3.75 },
  'claude-3-7-sonnet': { input: 3, output: 15, cache_read: 0.3, cache_write: 3.75 },
  'claude-haiku-5-5': { input: 0.1, output: 0.5, cache_read: 0.01, cache_write: 0.125 },
  'claude-haiku-4-5': { input: 1, output: 5, cache_read: 0.1, cache_write: 1.25 },
  'claude-3-5-haiku': { input: 0.8, output: 4, cache_read: 0.08, cache_write: 1 },
  'claude-3-haiku': { input: 0.25, output: 1.25, cache_read: 0.03, cache_write: 0.3 },
  // OpenAI (cached input is `cache_read`; OpenAI charges nothing extra to write its cache)
  'gpt-5.5': { input: 5, output: 30, cache_read: 0.5, cache_write: 5 },
  'gpt-5.5-pro': { input: 30, output: 180 },
  'gpt-5.4': { input: 2.5, output: 15, cache_read: 0.25, cache_write: 2.5 },
  'gpt-5.4-mini': { input: 0.75, output: 4.5, cache_read: 0.075, cache_write: 0.75 },
  'gpt-5.4-nano': { input: 0.2, output: 1.25, cache_read: 0.02, cache_write: 0.2 },
  'gpt-5.4-pro': { input: 30, output: 180 },
  'gpt-5.2': { input: 1.75, output: 14, cache_read: 0.175, cache_write: 1.75 },
  'gpt-5.2-pro': { input: 21, output: 168 },
  'gpt-5.1': { input: 1.25, output: 10, cache_read: 0.125, cache_write: 1.25 },
  'gpt-5': { input: 1.25, output: 10, cache_read: 0.125, cache_write: 1.25 },
  'gpt-5-mini': { input: 0.25, output: 2, cache_read: 0.025, cache_write: 0.25 },
  'gpt-5-nano': { input: 0.05, output: 0.4, cache_read: 0.005, cache_write: 0.05 },
  'gpt-5-pro': { input: 15, output: 120 },
  'gpt-4.1': { input: 2, output: 8, cache_read: 0.5, cache_write: 2 },
  'gpt-4.1-mini': { input: 0.4, output: 1.6, cache_read: 0.1, cache_write: 0.4 },
  'gpt-4.1-nano': { input: 0.1, output: 0.4, cache_read: 0.025, cache_write: 0.1 },
  'gpt-4o': { input: 2.5, output: 10, cache_read: 1.25, cache_write: 2.5 },
  'gpt-4o-mini': { input: 0.15, output: 0.6, cache_read: 0.075, cache_write: 0.15 },
};

/** The defaults with a configured table laid over them (a configured key replaces a default one). */
export function withPrices(overrides: PriceTable | undefined, defaults: PriceTable = DEFAULT_PRICES): PriceTable {
  return { ...defaults, ...overrides };
}

/** A character that may follow a key inside a longer model name: a date, a variant, a `[1m]` suffix. */
const SEPARATOR = /^[-_:@[/ ]/;

/**
 * The price of a model: an exact key, else the longest key that is a prefix of the name ending at
 * a separator. A routed name (`anthropic/claude-sonnet-4-5`) is also tried without its route.
 */
export function priceOf(model: string, table: PriceTable): { key: string; price: ModelPrice } | undefined {
  const names = model.includes('/') ? [model, model.slice(model.lastIndexOf('/') + 1)] : [model];
  for (const name of names) {
    const exact = table[name];
    if (exact) return { key: name, price: exact };
    let best: string | undefined;
    for (const key of Object.keys(table)) {
      if (name.startsWith(key) && SEPARATOR.test(name.slice(key.length)) && (best === undefined || key.length > best.length)) best = key;
    }
    const found = best === undefined ? undefined : table[best];
    if (best !== undefined && found) return { key: best, price: found };
  }
  return undefined;
}

/**
 * What a call cost. `known: false` means no price matched the model: the cost is 0 and the caller
 * should say so once, since a budget in dollars cannot hold for that model.
 */
export function costOf(model: string, usage: TokenUsage, table: PriceTable = DEFAULT_PRICES): { usd: number; known: boolean } {
  const found = priceOf(model, table);
  if (!found) return { usd: 0, known: false };
  const { price } = found;
  const micro =
    usage.inputTokens * price.input +
    usage.outputTokens * price.output +
    usage.cacheReadTokens * (price.cache_read ?? price.input) +
    usage.cacheWriteTokens * (price.cache_write ?? price.input);
  // Rounded to a billionth of a dollar so sums of many calls do not show float noise.
  return { usd: Math.round((micro / 1_000_000) * 1e9) / 1e9, known: true };
}
