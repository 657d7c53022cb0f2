import Anthropic, { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from '@anthropic-ai/sdk';
import type { ConversationItem, ModelProvider, ModelReply, ModelRequest, ResponseFormat, ToolCall, ToolSpec } from './provider.ts';
import type { CountableRequest, PromptCount } from './token-count.ts';
import { describeCause, type Failure } from './failures.ts';
import { observedFetch } from './observed-fetch.ts';
import { DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_MS, type ProviderOptions } from './provider-options.ts';
import { ResilientCaller, type Completion, type Driver } from './resilient-caller.ts';
import { StreamStalled, assertNotCutShort, callSignal, type IdleWatchdog } from './stream-watchdog.ts';
import { parseToolInput } from './tool-input.ts';
import { oneLine } from '../text.ts';

const DEFAULT_BASE_URL = 'https://api.anthropic.com';

/**
 * Endpoints (base URLs) that refused a forced tool for structured output, for the life of the
 * process: Anthropic-compatible proxies and local servers do not all implement `tool_choice`.
 */
const refusedForcedTool = new Set<string>();

/** Endpoints without count_tokens (proxies, local servers speaking the Messages API): counted locally from then on. */
const noCountEndpoint = new Set<string>();

/** A count takes seconds at most; a slow or failing one is not worth holding the call up for. */
const COUNT_TIMEOUT_MS = 30_000;

function refusesForcedTool(error: unknown): boolean {
  if (!(error instanceof APIError) || (error.status !== 400 && error.status !== 422)) return false;
  return /tool_choice|tool|input_schema|schema/i.test(`${error.apiMessage ?? ''} ${error.message}`);
}

/**
 * The SDK appends `/v1/messages` itself, so a configured `.../v1` is dropped rather than doubled.
 * Nothing else is changed: a proxy path is kept.
 */
export function normaliseAnthropicBaseURL(url: string | undefined): string {
  if (!url) return DEFAULT_BASE_URL;
  return url.replace(/\/+$/, '').replace(/\/v1$/, '');
}

/**
 * The Anthropic Messages API through @anthropic-ai/sdk, always streaming (large `max_tokens` need
 * it). `request.temperature` is not sent (see `send`). The system prompt and the tool definitions carry `cache_control`, so the stable prefix of
 * an agent's calls is read from the prompt cache at a tenth of the input price.
 */
export class AnthropicProvider implements ModelProvider {
  readonly name = 'anthropic';
  readonly description: string;
  private readonly client: Anthropic;
  private readonly caller: ResilientCaller;
  private readonly baseURL: string;
  private readonly timeoutMs: number;
  private readonly onNotice: ((line: string) => void) | undefined;

  constructor(options: ProviderOptions) {
    const baseURL = normaliseAnthropicBaseURL(options.baseURL);
    this.baseURL = baseURL;
    this.onNotice = options.onNotice;
    const maxRetries = options.maxRetries ?? DEFAULT_MAX_RETRIES;
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.timeoutMs = timeoutMs;
    this.description = `Anthropic API at ${baseURL}`;
    this.client = new Anthropic({
      apiKey: options.apiKey,
      // Passed even when it is the default: left undefined, the SDK reads ANTHROPIC_BASE_URL.
      baseURL,
      maxRetries,
      timeout: timeoutMs,
      fetch: observedFetch({ provider: this.name, maxRetries, fetch: options.fetch, onRetry: options.onRetry }),
      ...(options.logger ? { logger: options.logger } : options.sdkLogging ? {} : { logLevel: 'off' as const }),
    });
    const driver: Driver = {
      name: this.name,
      label: 'Anthropic',
      baseURL,
      keyVariable: options.keyVariable ?? 'DUO_AGENT_API_KEY',
      timeoutMs,
      maxRetries,
      send: (request, model, watchdog) => this.send(request, model, watchdog),
      classify: classifyAnthropicError,
    };
    this.caller = new ResilientCaller(driver, options);
  }

  /** `sequence` is only for replay; a live provider ignores it. */
  complete(request: ModelRequest, _sequence?: number): Promise<ModelReply> {
    return this.caller.complete(request);
  }

  /**
   * Structured output as a forced tool: the reply schema becomes the input schema of a tool the
   * model must call, and that call's input is the answer. Not with the TechLead's own tools (they
   * cannot all be forced), nor on an endpoint that refused it once.
   */
  private async send(request: ModelRequest, model: string, watchdog: IdleWatchdog): Promise<Completion> {
    const forced = this.forcedFormat(request);
    try {
      return await this.stream(request, model, watchdog, forced);
    } catch (error) {
      if (!forced || !refusesForcedTool(error)) throw error;
      refusedForcedTool.add(this.baseURL);
      this.onNotice?.(`the server at ${this.baseURL} refused a forced tool for structured output (${(error as APIError).status}: ${oneLine((error as APIError).apiMessage ?? '', 120)}); asking for plain text from now on (replies are still repaired and validated)`);
      return this.stream(request, model, watchdog, undefined);
    }
  }

  /** Structured output goes out as a forced tool unless the request has tools of its own or the endpoint refused one. */
  private forcedFormat(request: Pick<ModelRequest, 'responseFormat' | 'tools'>): ResponseFormat | undefined {
    return request.responseFormat !== undefined && !request.tools?.length && !refusedForcedTool.has(this.baseURL) ? request.responseFormat : undefined;
  }

  /** What a request sends besides its model and limits: the same for the call and for its count. */
  private body(request: CountableRequest, forced: ResponseFormat | undefined) {
    const tools = forced
      ? [{ name: forced.name, description: 'Give your answer: its input is the whole reply.', input_schema: { type: 'object' as const, ...forced.schema } }]
      : request.tools?.length ? toAnthropicTools(request.tools) : undefined;
    return {
      ...(request.system ? { system: [{ type: 'text' as const, text: request.system, cache_control: { type: 'ephemeral' as const } }] } : {}),
      ...(tools ? { tools } : {}),
      ...(forced ? { tool_choice: { type: 'tool' as const, name: forced.name } } : {}),
      messages: toAnthropicMessages(request.messages),
    };
  }

  /**
   * The request's input tokens by the Messages API's own count (POST /v1/messages/count_tokens:
   * free, rate-limited apart from messages), with what the call itself would send. An endpoint
   * without it (404/405, as many proxies and local servers answer) is said once and counted
   * locally from then on; a count that fails otherwise is counted locally this time.
   */
  async countTokens(request: CountableRequest): Promise<PromptCount | undefined> {
    if (noCountEndpoint.has(this.baseURL)) return undefined;
    try {
      const counted = await this.client.messages.countTokens(
        { model: request.model, ...this.body(request, this.forcedFormat(request)) },
        { signal: request.signal, maxRetries: 1, timeout: Math.min(COUNT_TIMEOUT_MS, this.timeoutMs) },
      );
      return { tokens: counted.input_tokens, source: 'counted' };
    } catch (error) {
      request.signal?.throwIfAborted();
      if (error instanceof APIError && (error.status === 404 || error.status === 405)) {
        noCountEndpoint.add(this.baseURL);
        this.onNotice?.(`the server at ${this.baseURL} does not count tokens (count_tokens: ${error.status}); prompts are counted locally from now on, as estimates`);
      }
      return undefined;
    }
  }

  private async stream(request: ModelRequest, model: string, watchdog: IdleWatchdog, forced: ResponseFormat | undefined): Promise<Completion> {
    const stream = await this.client.messages.create(
      {
        model,
        max_tokens: request.maxTokens,
        // No `temperature`: API version 2026-10-21 (what SDK 1.x sends) refuses any sampling
        // parameter with a 400, even at its default, and the SDK's types no longer have them.
        ...this.body(request, forced),
        stream: true,
      },
      { signal: callSignal(request, watchdog) },
    );
    watchdog.touch();
    const reader = new MessageAssembler();
    for await (const event of stream) {
      watchdog.touch();
      reader.add(event);
    }
    assertNotCutShort(request, watchdog);
    const completion = reader.finish();
    return forced ? answerOfForcedTool(completion, forced.name) : completion;
  }
}

/** The forced tool's input is the answer: it becomes the reply's text, and no tool call is left to run. */
function answerOfForcedTool(completion: Completion, name: string): Completion {
  const answer = completion.toolCalls.find((call) => call.name === name);
  if (!answer) return completion;
  const text = answer.inputError ? completion.text : JSON.stringify(answer.input);
  return { ...completion, text, toolCalls: [], stopReason: completion.stopReason === 'max_tokens' ? 'max_tokens' : 'end' };
}

/** Tool definitions; the last one carries the cache breakpoint that covers all of them. */
export function toAnthropicTools(tools: ToolSpec[]): Anthropic.Tool[] {
  return tools.map((tool, index) => ({
    name: tool.name,
    description: tool.description,
    input_schema: { type: 'object', ...tool.inputSchema },
    ...(index === tools.length - 1 ? { cache_control: { type: 'ephemeral' as const } } : {}),
  }));
}

/**
 * Provider-neutral turns as Messages API turns: tool results become a user turn of `tool_result`
 * blocks, an assistant's tool calls become `tool_use` blocks. Adjacent user turns (tool results then
 * the user's text) are merged into one, results first, as the API expects after a `tool_use`.
 */
export function toAnthropicMessages(items: ConversationItem[]): Anthropic.MessageParam[] {
  const messages: Anthropic.MessageParam[] = [];
  const pushUser = (blocks: Anthropic.ContentBlockParam[]): void => {
    const last = messages.at(-1);
    if (last?.role === 'user' && Array.isArray(last.content)) last.content.push(...blocks);
    else messages.push({ role: 'user', content: blocks });
  };
  for (const item of items) {
    if (item.role === 'user') {
      pushUser([{ type: 'text', text: item.content }]);
    } else if (item.role === 'tool') {
      pushUser(
        item.results.map((result) => ({
          type: 'tool_result' as const,
          tool_use_id: result.id,
          content: result.content,
          ...(result.isError ? { is_error: true } : {}),
        })),
      );
    } else {
      const blocks: Anthropic.ContentBlockParam[] = [];
      if (item.content) blocks.push({ type: 'text', text: item.content });
      for (const call of item.toolCalls ?? []) blocks.push({ type: 'tool_use', id: call.id, name: call.name, input: call.input ?? {} });
      messages.push({ role: 'assistant', content: blocks });
    }
  }
  return messages;
}

const STOP_REASONS: Record<string, ModelReply['stopReason']> = {
  end_turn: 'end',
  stop_sequence: 'end',
  refusal: 'end',
  pause_turn: 'end',
  tool_use: 'tool_use',
  max_tokens: 'max_tokens',
  model_context_window_exceeded: 'max_tokens',
};

/**
 * Builds the reply from stream events. Usage arrives split: input and cache tokens in
 * `message_start`, the final output count in `message_delta` (which may also restate the input).
 */
class MessageAssembler {
  private started = false;
  private stopped = false;
  private readonly blocks = new Map<number, { type: 'text'; text: string } | { type: 'tool_use'; id: string; name: string; json: string }>();
  private usage = { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 };
  private stopReason: string | null = null;
  private usageReported = false;

  add(event: Anthropic.RawMessageStreamEvent): void {
    switch (event.type) {
      case 'message_start': {
        this.started = true;
        const usage = event.message.usage;
        this.usageReported ||= usage !== undefined && usage !== null;
        this.usage = {
          inputTokens: usage?.input_tokens ?? 0,
          outputTokens: usage?.output_tokens ?? 0,
          cacheReadTokens: usage?.cache_read_input_tokens ?? 0,
          cacheWriteTokens: usage?.cache_creation_input_tokens ?? 0,
        };
        break;
      }
      case 'content_block_start': {
        const block = event.content_block;
        if (block.type === 'text') this.blocks.set(event.index, { type: 'text', text: block.text ?? '' });
        else if (block.type === 'tool_use') this.blocks.set(event.index, { type: 'tool_use', id: block.id, name: block.name, json: '' });
        break;
      }
      case 'content_block_delta': {
        const block = this.blocks.get(event.index);
        if (block?.type === 'text' && event.delta.type === 'text_delta') block.text += event.delta.text;
        else if (block?.type === 'tool_use' && event.delta.type === 'input_json_delta') block.json += event.delta.partial_json;
        break;
      }
      case 'message_delta': {
        const usage = event.usage;
        this.stopReason = event.delta.stop_reason ?? this.stopReason;
        if (usage) {
          this.usageReported = true;
          this.usage = {
            inputTokens: usage.input_tokens ?? this.usage.inputTokens,
            outputTokens: usage.output_tokens ?? this.usage.outputTokens,
            cacheReadTokens: usage.cache_read_input_tokens ?? this.usage.cacheReadTokens,
            cacheWriteTokens: usage.cache_creation_input_tokens ?? this.usage.cacheWriteTokens,
          };
        }
        break;
      }
      case 'message_stop':
        this.stopped = true;
        break;
      case 'content_block_stop':
        break;
    }
  }

  finish(): Completion {
    if (!this.started || !this.stopped) {
      throw new MalformedStream(this.started ? 'the message stream ended before message_stop' : 'no message_start event (is the base URL an Anthropic Messages API?)');
    }
    const texts: string[] = [];
    const toolCalls: ToolCall[] = [];
    for (const index of [...this.blocks.keys()].sort((a, b) => a - b)) {
      const block = this.blocks.get(index);
      if (block?.type === 'text') texts.push(block.text);
      else if (block) toolCalls.push({ id: block.id, name: block.name, ...parseToolInput(block.json, block.name) });
    }
    return {
      text: texts.join(''),
      toolCalls,
      usage: this.usage,
      usageReported: this.usageReported,
      stopReason: this.stopReason === null ? undefined : (STOP_REASONS[this.stopReason] ?? 'end'),
    };
  }
}

/** A response that is not the stream it should be. */
export class MalformedStream extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MalformedStream';
  }
}

interface AnthropicErrorBody {
  error?: { type?: string; message?: string };
}

export function classifyAnthropicError(error: unknown): Failure {
  if (error instanceof APIUserAbortError) return { kind: 'aborted', cause: error };
  if (error instanceof APIConnectionTimeoutError) return { kind: 'timeout', cause: error };
  if (error instanceof APIConnectionError) return { kind: 'connection', detail: describeCause(error), cause: error };
  if (error instanceof APIError) {
    const body = error.error as AnthropicErrorBody | undefined;
    const errorType = error.type ?? body?.error?.type;
    const detail = oneLine(error.apiMessage ?? body?.error?.message ?? '');
    if (error.status === undefined) return { kind: 'stream', errorType, detail: detail || oneLine(error.message), cause: error };
    return { kind: 'status', status: error.status, errorType, detail, cause: error };
  }
  if (error instanceof MalformedStream) return { kind: 'malformed', detail: error.message, cause: error };
  if (error instanceof SyntaxError) return { kind: 'malformed', detail: `a stream event is not JSON (${oneLine(error.message, 80)})`, cause: error };
  if (error instanceof StreamStalled) return { kind: 'idle', cause: error };
  // A connection dropped mid-stream surfaces as undici's TypeError('terminated'): not retried by the SDK.
  if (error instanceof TypeError && error.message === 'terminated') return { kind: 'reset', detail: describeCause(error), cause: error };
  return { kind: 'other', detail: describeCause(error), cause: error };
}
