import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type { ConversationItem, ModelRequest, ToolSpec } from './provider.ts';

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

/**
 * A token estimate without a tokenizer: words of up to 8 letters count one token, longer ones one
 * per 6 letters, numbers one per 3 digits, runs of other characters one per 2, each line break
 * one. Measured against o200k on this repository's code, docs and JSON (237 files): the estimate
 * is 4% to 19% higher for 90% of files (median +13%, extremes -17% and +25%), and it reads
 * ~25 MB/s where o200k reads ~5 MB/s after a ~400 ms load. It errs high on purpose: it sizes
 * prompt sections to budgets and stands in for models no shipped tokenizer fits, where counting
 * short would let a prompt past its limit. Loading gpt-tokenizer also grows the process by
 * ~60 MB, and every later child process (each git call) then takes ~2x as long to spawn here.
 */
export function estimateTokens(text: string): number {
  let tokens = 0;
  for (const match of text.matchAll(/[A-Za-z]+|\d+|\n[ \t]*|[^\sA-Za-z\d]+/g)) {
    const piece = match[0];
    const code = piece.charCodeAt(0);
    if ((code >= 65 && code <= 90) || (code >= 97 && code <= 122)) tokens += piece.length <= 8 ? 1 : Math.ceil(piece.length / 6);
    else if (code >= 48 && code <= 57) tokens += Math.ceil(piece.length / 3);
    else if (code === 10) tokens += 1;
    else tokens += Math.ceil(piece.length / 2);
  }
  return tokens;
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

/** A request's input tokens before it is sent, and how they were counted. */
export interface PromptCount {
  tokens: number;
  /** `counted`: the provider's own count, or its exact tokenizer; `estimated`: o200k for a model it does not fit. */
  source: CountSource;
}

/** What a request is counted from: what is sent, not how (the signal is only honoured). */
export type CountableRequest = Pick<ModelRequest, 'model' | 'system' | 'messages' | 'tools' | 'responseFormat' | 'signal'>;

/**
 * The local count of a request: o200k for OpenAI's current models (exact), the estimate for any
 * other (no shipped tokenizer fits it, so o200k would be an estimate too, at its load and memory).
 */
export function countLocally(request: CountableRequest): PromptCount {
  const parts = requestText(request.system, request.messages, request.tools ?? []);
  if (request.responseFormat) parts.push(JSON.stringify(request.responseFormat.schema));
  const source = countSourceFor(request.model);
  const count = source === 'counted' ? countTokens : estimateTokens;
  return { tokens: parts.reduce((sum, part) => sum + count(part) + PER_ITEM_OVERHEAD, 0), source };
}

/** Counts kept by content: a tool loop counts the same prefix again and again, the budget check and the zones count the same request. */
const PROMPT_CACHE_LIMIT = 512;

/**
 * Counts every prompt before it is sent, for the budget check and the context zones: with the
 * provider's own counting where it has one (Anthropic's count_tokens endpoint), else locally
 * (`countLocally`). Cached by the request's content. A provider that cannot count this request
 * (an endpoint without count_tokens, a count that failed) answers undefined and the local count,
 * labelled `estimated` where o200k does not fit the model, is used instead.
 */
export class PromptCounter {
  private readonly cache = new Map<string, PromptCount>();

  constructor(private readonly provider: { countTokens?: ((request: CountableRequest) => Promise<PromptCount | undefined>) | undefined }) {}

  async count(request: CountableRequest): Promise<PromptCount> {
    const key = createHash('sha256')
      .update(JSON.stringify([request.model, request.system, request.messages, request.tools ?? [], request.responseFormat?.name ?? null]))
      .digest('base64');
    const known = this.cache.get(key);
    if (known) return known;
    const counted = (await this.provider.countTokens?.(request)) ?? countLocally(request);
    if (this.cache.size >= PROMPT_CACHE_LIMIT) this.cache.delete(this.cache.keys().next().value as string);
    this.cache.set(key, counted);
    return counted;
  }
}
