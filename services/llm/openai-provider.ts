import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from 'openai';
import type { ConversationItem, ModelProvider, ModelReply, ModelRequest, ToolCall, ToolSpec } from './provider.ts';
import { describeCause, type Failure } from './failures.ts';
import { observedFetch } from './observed-fetch.ts';
import { DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_MS, type ProviderOptions } from './provider-options.ts';
import { ResilientCaller, type Completion, type Driver } from './resilient-caller.ts';
import { StreamStalled, assertNotCutShort, callSignal, type IdleWatchdog } from './stream-watchdog.ts';
import { parseToolInput } from './tool-input.ts';
import { oneLine } from '../text.ts';

const DEFAULT_BASE_URL = 'https://api.openai.com/v1';

/**
 * The SDK sends requests to `<baseURL>/chat/completions`, so the base URL must include the API's
 * version path. A configured address without a path (`http://127.0.0.1:1234`, how local model
 * servers are usually given) gets `/v1`; an address with a path is used as written (less a
 * trailing slash), since some servers mount the API elsewhere (`.../api/v1`, `.../v1beta/openai`).
 */
export function normaliseOpenAIBaseURL(url: string | undefined): string {
  if (!url) return DEFAULT_BASE_URL;
  const parsed = new URL(url);
  const path = parsed.pathname.replace(/\/+$/, '');
  parsed.pathname = path === '' ? '/v1' : path;
  return parsed.toString().replace(/\/+$/, '');
}

/** How a server takes structured output, best first; a server that refuses one is asked the next way. */
export type StructuredMode = 'json_schema' | 'json_object' | 'text';

/**
 * What each endpoint (base URL) accepted, for the life of the process: a server that refused
 * `json_schema` once is not asked again on every call.
 */
const structuredModes = new Map<string, StructuredMode>();

/** A 400/422 that names the structured-output field: the server does not take that form of it. */
function refusesResponseFormat(error: unknown): boolean {
  if (!(error instanceof APIError) || (error.status !== 400 && error.status !== 422)) return false;
  const body = error.error as { message?: unknown } | undefined;
  const text = `${typeof body?.message === 'string' ? body.message : ''} ${error.message}`;
  return /response_format|json_schema|json_object|structured|grammar|schema/i.test(text);
}

export interface OpenAIProviderOptions extends ProviderOptions {
  /**
   * How the token limit is sent. OpenAI's own API takes `max_completion_tokens` (its reasoning models
   * refuse `max_tokens`); OpenAI-compatible servers mostly know only `max_tokens`. Default: the
   * first for api.openai.com, the second for any other address.
   */
  maxTokensField?: 'max_tokens' | 'max_completion_tokens' | undefined;
}

/**
 * OpenAI Chat Completions through the `openai` SDK, streaming, with usage requested in the stream.
 * Works with any OpenAI-compatible server given its base URL.
 */
export class OpenAIProvider implements ModelProvider {
  readonly name = 'openai';
  readonly description: string;
  private readonly client: OpenAI;
  private readonly caller: ResilientCaller;
  private readonly maxTokensField: 'max_tokens' | 'max_completion_tokens';
  private readonly baseURL: string;
  private readonly onNotice: ((line: string) => void) | undefined;

  constructor(options: OpenAIProviderOptions) {
    const baseURL = normaliseOpenAIBaseURL(options.baseURL);
    this.baseURL = baseURL;
    this.onNotice = options.onNotice;
    const maxRetries = options.maxRetries ?? DEFAULT_MAX_RETRIES;
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.maxTokensField = options.maxTokensField ?? (new URL(baseURL).hostname === 'api.openai.com' ? 'max_completion_tokens' : 'max_tokens');
    this.description = `OpenAI-compatible API at ${baseURL}`;
    this.client = new OpenAI({
      apiKey: options.apiKey,
      // All passed explicitly: left undefined, the SDK reads OPENAI_BASE_URL, OPENAI_ORG_ID, OPENAI_PROJECT_ID.
      baseURL,
      organization: null,
      project: null,
      maxRetries,
      timeout: timeoutMs,
      fetch: observedFetch({ provider: this.name, maxRetries, fetch: options.fetch, onRetry: options.onRetry }),
      ...(options.logger ? { logger: options.logger } : options.sdkLogging ? {} : { logLevel: 'off' as const }),
    });
    const driver: Driver = {
      name: this.name,
      label: 'OpenAI',
      baseURL,
      keyVariable: options.keyVariable ?? 'OPENAI_API_KEY',
      timeoutMs,
      maxRetries,
      send: (request, model, watchdog) => this.send(request, model, watchdog),
      classify: classifyOpenAIError,
    };
    this.caller = new ResilientCaller(driver, options);
  }

  /** `sequence` is only for replay; a live provider ignores it. */
  complete(request: ModelRequest, _sequence?: number): Promise<ModelReply> {
    return this.caller.complete(request);
  }

  /** How this endpoint is asked for structured output now (json_schema until it refuses). */
  structuredMode(): StructuredMode {
    return structuredModes.get(this.baseURL) ?? 'json_schema';
  }

  private async send(request: ModelRequest, model: string, watchdog: IdleWatchdog): Promise<Completion> {
    // With tools the final answer comes after tool turns; a grammar over the whole reply would
    // forbid the tool calls on servers that implement it with one (llama.cpp), so tools go without.
    const wantsFormat = request.responseFormat !== undefined && !request.tools?.length;
    for (;;) {
      const mode = wantsFormat ? this.structuredMode() : 'text';
      try {
        return await this.stream(request, model, watchdog, mode);
      } catch (error) {
        if (mode === 'text' || !refusesResponseFormat(error)) throw error;
        const next: StructuredMode = mode === 'json_schema' ? 'json_object' : 'text';
        structuredModes.set(this.baseURL, next);
        const detail = oneLine(((error as APIError).error as { message?: string } | undefined)?.message ?? (error as Error).message, 120);
        this.onNotice?.(`the server at ${this.baseURL} refused response_format ${mode} (${(error as APIError).status}: ${detail}); asking it for ${next === 'text' ? 'plain text (replies are still repaired and validated)' : 'json_object'} from now on`);
      }
    }
  }

  private async stream(request: ModelRequest, model: string, watchdog: IdleWatchdog, mode: StructuredMode): Promise<Completion> {
    const format = request.responseFormat;
    const responseFormat =
      mode === 'json_schema' && format
        ? { response_format: { type: 'json_schema' as const, json_schema: { name: format.name, schema: format.schema, strict: true } } }
        : mode === 'json_object'
          ? { response_format: { type: 'json_object' as const } }
          : {};
    const stream = await this.client.chat.completions.create(
      {
        model,
        [this.maxTokensField]: request.maxTokens,
        temperature: request.temperature,
        messages: toOpenAIMessages(request.system, request.messages),
        ...(request.tools?.length ? { tools: toOpenAITools(request.tools) } : {}),
        ...responseFormat,
        stream: true,
        stream_options: { include_usage: true },
      },
      { signal: callSignal(request, watchdog) },
    );
    watchdog.touch();
    const reader = new ChunkAssembler();
    for await (const chunk of stream) {
      watchdog.touch();
      reader.add(chunk);
    }
    assertNotCutShort(request, watchdog);
    return reader.finish();
  }
}

export function toOpenAITools(tools: ToolSpec[]): OpenAI.ChatCompletionFunctionTool[] {
  return tools.map((tool) => ({ type: 'function', function: { name: tool.name, description: tool.description, parameters: tool.inputSchema } }));
}

/** The system prompt first, then one message per turn and one `tool` message per tool result. */
export function toOpenAIMessages(system: string, items: ConversationItem[]): OpenAI.ChatCompletionMessageParam[] {
  const messages: OpenAI.ChatCompletionMessageParam[] = system ? [{ role: 'system', content: system }] : [];
  for (const item of items) {
    if (item.role === 'user') {
      messages.push({ role: 'user', content: item.content });
    } else if (item.role === 'tool') {
      for (const result of item.results) {
        // Chat Completions has no error flag on a tool result; the model reads it from the text.
        messages.push({ role: 'tool', tool_call_id: result.id, content: result.isError ? `error: ${result.content}` : result.content });
      }
    } else if (item.toolCalls?.length) {
      messages.push({
        role: 'assistant',
        content: item.content || null,
        tool_calls: item.toolCalls.map((call) => ({ id: call.id, type: 'function', function: { name: call.name, arguments: JSON.stringify(call.input ?? {}) } })),
      });
    } else {
      messages.push({ role: 'assistant', content: item.content });
    }
  }
  return messages;
}

const FINISH_REASONS: Record<string, ModelReply['stopReason']> = {
  stop: 'end',
  content_filter: 'end',
  tool_calls: 'tool_use',
  function_call: 'tool_use',
  length: 'max_tokens',
};

/**
 * Builds the reply from chunks. Tool calls arrive in pieces keyed by `index`: the first piece has
 * the id and name, the rest append to the arguments. Usage comes in a last chunk without choices;
 * `prompt_tokens` includes the cached tokens, which are counted apart here as on Anthropic.
 */
class ChunkAssembler {
  private chunks = 0;
  private usageReported = false;
  private text = '';
  private readonly calls = new Map<number, { id: string; name: string; json: string }>();
  private finishReason: string | null = null;
  private usage = { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 };

  add(chunk: OpenAI.ChatCompletionChunk): void {
    this.chunks += 1;
    for (const choice of chunk.choices ?? []) {
      if (choice.index !== 0) continue;
      const delta = choice.delta;
      if (delta?.content) this.text += delta.content;
      for (const piece of delta?.tool_calls ?? []) {
        const call = this.calls.get(piece.index) ?? { id: '', name: '', json: '' };
        if (piece.id) call.id = piece.id;
        if (piece.function?.name) call.name += piece.function.name;
        if (piece.function?.arguments) call.json += piece.function.arguments;
        this.calls.set(piece.index, call);
      }
      if (choice.finish_reason) this.finishReason = choice.finish_reason;
    }
    if (chunk.usage) {
      this.usageReported = true;
      const cached = chunk.usage.prompt_tokens_details?.cached_tokens ?? 0;
      const written = chunk.usage.prompt_tokens_details?.cache_write_tokens ?? 0;
      this.usage = {
        inputTokens: Math.max(0, (chunk.usage.prompt_tokens ?? 0) - cached - written),
        outputTokens: chunk.usage.completion_tokens ?? 0,
        cacheReadTokens: cached,
        cacheWriteTokens: written,
      };
    }
  }

  finish(): Completion {
    if (this.chunks === 0) throw new MalformedChunks('no chunks (is the base URL an OpenAI-compatible /v1 API?)');
    // Every server sends a finish_reason last; without it the reply was cut short.
    if (this.finishReason === null) throw new MalformedChunks('the stream ended before a finish_reason');
    const toolCalls: ToolCall[] = [...this.calls.entries()]
      .sort(([a], [b]) => a - b)
      .map(([index, call]) => ({ id: call.id || `call_${index}`, name: call.name, ...parseToolInput(call.json, call.name) }));
    return {
      text: this.text,
      toolCalls,
      usage: this.usage,
      usageReported: this.usageReported,
      stopReason: FINISH_REASONS[this.finishReason] ?? 'end',
    };
  }
}

export class MalformedChunks extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MalformedChunks';
  }
}

export function classifyOpenAIError(error: unknown): Failure {
  if (error instanceof APIUserAbortError) return { kind: 'aborted', cause: error };
  if (error instanceof APIConnectionTimeoutError) return { kind: 'timeout', cause: error };
  if (error instanceof APIConnectionError) return { kind: 'connection', detail: describeCause(error), cause: error };
  if (error instanceof APIError) {
    // The SDK keeps the body's inner `error` object here: { message, type, code, param }.
    const body = error.error as { message?: unknown; type?: unknown; code?: unknown } | undefined;
    const detail = oneLine(typeof body?.message === 'string' ? body.message : '');
    const errorType = typeof body?.type === 'string' ? body.type : typeof body?.code === 'string' ? body.code : undefined;
    if (error.status === undefined) return { kind: 'stream', errorType, detail: detail || oneLine(error.message), cause: error };
    return { kind: 'status', status: error.status, errorType, detail, cause: error };
  }
  if (error instanceof MalformedChunks) return { kind: 'malformed', detail: error.message, cause: error };
  if (error instanceof SyntaxError) return { kind: 'malformed', detail: `a stream chunk is not JSON (${oneLine(error.message, 80)})`, cause: error };
  if (error instanceof StreamStalled) return { kind: 'idle', cause: error };
  if (error instanceof TypeError && error.message === 'terminated') return { kind: 'reset', detail: describeCause(error), cause: error };
  return { kind: 'other', detail: describeCause(error), cause: error };
}
