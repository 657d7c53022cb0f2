import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type { ConversationItem, ToolSpec } from './provider.ts';

/**
 * Token counts made here, for replies whose server sent no usage (many local servers, some
 * proxies): a run must never count such calls as 0 tokens and sail past its budget.
 *
 * gpt-tokenizer's o200k_base is the tokenizer of OpenAI's current models, so for them the count is
 * the real one (`counted`); for any other model (Claude, Llama, Qwen, ...) no tokenizer shipped
 * with a library fits, and the same count is an estimate (`estimated`), labelled as such wherever
 * it is shown. Loading the tokenizer costs ~400 ms, so it is loaded on first use only.
 */

export type CountSource = 'counted' | 'estimated';

interface Tokenizer {
  countTokens(text: string): number;
}

let tokenizer: Tokenizer | undefined;
const cache = new Map<string, number>();
const CACHE_LIMIT = 2048;

function load(): Tokenizer {
  // Synchronous on purpose: counting happens inside the reply path, which is already async but
  // must not interleave a half-loaded module with other calls.
  tokenizer ??= createRequire(import.meta.url)('gpt-tokenizer') as Tokenizer;
  return tokenizer;
}

/** Tokens of `text` under o200k_base, cached by content (prompts repeat their system text). */
export function countTokens(text: string): number {
  if (text === '') return 0;
  const key = text.length < 64 ? text : createHash('sha1').update(text).digest('base64');
  const known = cache.get(key);
  if (known !== undefined) return known;
  const count = load().countTokens(text);
  if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value as string);
  cache.set(key, count);
  return count;
}

/** OpenAI models whose tokenizer is o200k_base: their counts are exact, anything else is an estimate. */
export function countSourceFor(model: string): CountSource {
  return /^(gpt-4o|gpt-4\.1|gpt-5|o1|o3|o4|chatgpt-4o)/i.test(model) ? 'counted' : 'estimated';
}

/** The text a request sends, item by item, as the tokenizer should see it. */
export function requestText(system: string, messages: readonly ConversationItem[], tools: readonly ToolSpec[] = []): string[] {
  const parts = [system];
  for (const item of messages) {
    if (item.role === 'tool') parts.push(...item.results.map((result) => result.content));
    else parts.push(item.content, ...(item.role === 'assistant' ? (item.toolCalls ?? []).map((call) => `${call.name} ${JSON.stringify(call.input ?? {})}`) : []));
  }
  for (const tool of tools) parts.push(`${tool.name} ${tool.description} ${JSON.stringify(tool.inputSchema)}`);
  return parts;
}

/** Per-message framing the chat templates add around each item (role markers, separators). */
const PER_ITEM_OVERHEAD = 4;

/** Input tokens of a request: each item counted (and cached) on its own, plus framing. */
export function countRequestTokens(system: string, messages: readonly ConversationItem[], tools: readonly ToolSpec[] = []): number {
  return requestText(system, messages, tools).reduce((sum, part) => sum + countTokens(part) + PER_ITEM_OVERHEAD, 0);
}
