import { AsyncLocalStorage } from 'node:async_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { jsonrepair } from 'jsonrepair';
import { oneLine } from '../text.ts';
import { ModelError } from './model-error.ts';
import { costOf, withPrices, type PriceTable } from './prices.ts';
import type { ModelProvider, ModelReply, ModelRequest, TokenUsage, ToolCall } from './provider.ts';
import { countRequestTokens, countSourceFor, countTokens, type CountSource } from './token-count.ts';

/**
 * What the real providers share: options, retry reporting, the backup model, the idle watchdog,
 * local token counts and the one-line errors. Retries before a reply starts are the SDKs'
 * (408/409/429/5xx, timeouts and connection errors, honouring retry-after-ms, retry-after and
 * x-should-retry). Failures the SDKs do not retry because the reply had started (a stalled
 * stream, a reset connection, an error event or an unreadable event mid-reply) are retried here,
 * with backoff: such a reply was never journaled, so sending the request again is safe.
 */

/** Told before each retry the SDK makes, and when a rate-limited call moves to the backup model. */
export type RetryEvent =
  | {
      kind: 'retry';
      provider: string;
      model: string;
      /** The attempt that just failed, from 1; the SDK sends attempt + 1 next. */
      attempt: number;
      maxRetries: number;
      status?: number | undefined;
      error?: string | undefined;
      /** What the server asked for (retry-after-ms, else retry-after); absent means the SDK's backoff. */
      retryAfterMs?: number | undefined;
    }
  | { kind: 'backup_model'; provider: string; model: string; backupModel: string }
  /** A reply broke off mid-stream and is asked for again after `waitMs` (attempt counts from 1). */
  | { kind: 'resend'; provider: string; model: string; attempt: number; maxRetries: number; reason: string; waitMs: number };

/** The SDKs' logger shape (pino's methods fit). */
export interface SdkLogger {
  error(message: string, ...rest: unknown[]): void;
  warn(message: string, ...rest: unknown[]): void;
  info(message: string, ...rest: unknown[]): void;
  debug(message: string, ...rest: unknown[]): void;
}

export interface ProviderOptions {
  /** Passed to the SDK as is; the SDK never looks for a key of its own. */
  apiKey: string;
  /** The API's address; see each provider for its default and how it is normalised. */
  baseURL?: string | undefined;
  /**
   * Milliseconds to wait for the response headers of one attempt (the SDK's `timeout`, retried like
   * any timeout) and, once a reply streams, for the next event of the stream (not retried: the reply
   * was under way). Default 600000 (10 min, the SDKs' own).
   */
  timeoutMs?: number | undefined;
  /** Retries the SDK makes after the first attempt of a call. Default 4. */
  maxRetries?: number | undefined;
  /** Laid over DEFAULT_PRICES (config `model.prices`). */
  prices?: PriceTable | undefined;
  onRetry?: ((event: RetryEvent) => void) | undefined;
  /** Told once per model this provider has no price for (its calls count as $0). */
  onUnknownPrice?: ((model: string) => void) | undefined;
  /** Told once per model whose server sends no token usage: its tokens are then counted locally. */
  onNoUsage?: ((model: string, source: CountSource) => void) | undefined;
  /** One-line notices for the progress output (a server that refused structured output, ...). */
  onNotice?: ((line: string) => void) | undefined;
  /** First wait before resending a reply that broke off mid-stream, doubled per attempt up to 8 s. Default 500 ms. */
  resendBaseMs?: number | undefined;
  /** Replaces the global fetch, for tests or a proxy. */
  fetch?: typeof fetch | undefined;
  /** The environment variable the key came from, named in a rejected-key message. */
  keyVariable?: string | undefined;
  /**
   * Receives the SDK's own log lines. Without one the SDK logs nothing unless its log variable
   * (ANTHROPIC_LOG, OPENAI_LOG) is set, so a broken stream is one ModelError, not console noise.
   */
  logger?: SdkLogger | undefined;
  /**
   * Without a logger, let the SDK log as its own variable (ANTHROPIC_LOG, OPENAI_LOG) says; the
   * composition root reads that variable, since nothing under services/ reads the environment.
   */
  sdkLogging?: boolean | undefined;
}

export const DEFAULT_TIMEOUT_MS = 600_000;
export const DEFAULT_MAX_RETRIES = 4;

/** Why one SDK call failed, in terms the messages need. Each provider maps its SDK's errors here. */
export type Failure =
  | { kind: 'status'; status: number; errorType?: string | undefined; detail: string; cause: unknown }
  | { kind: 'connection'; detail: string; cause: unknown }
  | { kind: 'timeout'; cause: unknown }
  | { kind: 'idle'; cause?: unknown }
  | { kind: 'aborted'; cause: unknown }
  /** An error the API reported inside a stream that had started (Anthropic `event: error`, OpenAI `data: {"error"}`). */
  | { kind: 'stream'; errorType?: string | undefined; detail: string; cause: unknown }
  | { kind: 'malformed'; detail: string; cause?: unknown }
  /** The connection broke after the reply had started; the SDKs do not retry that. */
  | { kind: 'reset'; detail: string; cause: unknown }
  | { kind: 'other'; detail: string; cause: unknown };

/** What one SDK call produced; the shared code adds model, cost and latency. */
export interface Completion {
  text: string;
  toolCalls: ToolCall[];
  usage: TokenUsage;
  stopReason: ModelReply['stopReason'];
  /** False when the server sent no usage at all (not even zeros): the shared code counts the tokens then. */
  usageReported: boolean;
}

/** One provider's SDK behind the shared flow. */
export interface Driver {
  /** `anthropic`, `openai`. */
  name: string;
  /** For messages: `the Anthropic API rejected the key`. */
  label: string;
  baseURL: string;
  keyVariable: string;
  timeoutMs: number;
  maxRetries: number;
  /** One call (with the SDK's retries) for `model`, its stream read to the end under `watchdog`. */
  send(request: ModelRequest, model: string, watchdog: IdleWatchdog): Promise<Completion>;
  classify(error: unknown): Failure;
}

interface CallLog {
  model: string;
  attempts: number;
  signal?: AbortSignal | undefined;
}

/** The call an HTTP attempt belongs to; AsyncLocalStorage because one client serves concurrent calls. */
const currentCall = new AsyncLocalStorage<CallLog>();

/**
 * The statuses the SDKs retry (both: `shouldRetry` in their client.ts). Mirrored only to report
 * retries; the SDK decides.
 */
function sdkRetries(response: Response): boolean {
  const header = response.headers.get('x-should-retry');
  if (header === 'true') return true;
  if (header === 'false') return false;
  return response.status === 408 || response.status === 409 || response.status === 429 || response.status >= 500;
}

function retryAfterMs(headers: Headers): number | undefined {
  const ms = Number.parseFloat(headers.get('retry-after-ms') ?? '');
  if (ms > 0) return ms;
  const seconds = Number.parseFloat(headers.get('retry-after') ?? '');
  return seconds > 0 ? seconds * 1000 : undefined;
}

/**
 * The fetch given to an SDK: counts the attempts of the current call (for messages) and reports
 * each retry the SDK is about to make.
 */
export function observedFetch(options: { provider: string; maxRetries: number; fetch?: typeof fetch | undefined; onRetry?: ((event: RetryEvent) => void) | undefined }): typeof fetch {
  const base = options.fetch ?? globalThis.fetch;
  return async (input, init) => {
    const call = currentCall.getStore();
    if (call) call.attempts += 1;
    const report = (details: { status?: number; error?: string; retryAfterMs?: number | undefined }): void => {
      if (!call || !options.onRetry || call.attempts > options.maxRetries || call.signal?.aborted) return;
      options.onRetry({ kind: 'retry', provider: options.provider, model: call.model, attempt: call.attempts, maxRetries: options.maxRetries, ...details });
    };
    let response: Response;
    try {
      response = await base(input, init);
    } catch (error) {
      report({ error: describeCause(error) });
      throw error;
    }
    if (!response.ok && sdkRetries(response)) report({ status: response.status, retryAfterMs: retryAfterMs(response.headers) });
    return response;
  };
}

/**
 * Aborts a stream that has gone quiet. The SDKs' timeout covers only the wait for response
 * headers; a stream that stalls after them would otherwise hang the run.
 */
export class IdleWatchdog {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  fired = false;

  constructor(private readonly ms: number) {}

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Starts or restarts the countdown; call it on every stream event. */
  touch(): void {
    if (this.timer) {
      this.timer.refresh();
      return;
    }
    this.timer = setTimeout(() => {
      this.fired = true;
      this.controller.abort(new Error(`no stream event for ${this.ms} ms`));
    }, this.ms);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
  }
}

/** The deepest useful message of an error chain: `connect ECONNREFUSED 127.0.0.1:9` rather than `fetch failed`. */
export function describeCause(error: unknown): string {
  let best = error instanceof Error ? error.message : String(error);
  let current: unknown = error;
  for (let depth = 0; depth < 8 && current instanceof Error; depth += 1) {
    const code = (current as NodeJS.ErrnoException).code;
    if (current.message && current.message !== 'fetch failed') best = current.message;
    else if (code) best = code;
    current = current.cause ?? ((current as Partial<AggregateError>).errors ?? [])[0];
  }
  return oneLine(best);
}

export { oneLine } from '../text.ts';

function seconds(ms: number): string {
  return ms >= 1000 ? `${Math.round(ms / 100) / 10} s` : `${ms} ms`;
}

/** Error types an API may report inside a stream that trying again will not fix. */
const PERMANENT_STREAM_ERRORS = new Set(['invalid_request_error', 'authentication_error', 'permission_error', 'not_found_error']);

/** The one-line ModelError for a failure, saying what to do next. */
export function modelErrorFor(failure: Failure, context: { driver: Driver; model: string; attempts: number }): ModelError {
  const { driver, model } = context;
  const api = `the ${driver.label} API`;
  const tries = context.attempts > 1 ? ` after ${context.attempts} attempts` : '';
  switch (failure.kind) {
    case 'status': {
      const { status, cause } = failure;
      const detail = failure.detail ? `: ${failure.detail}` : '';
      if (status === 401 || status === 403) {
        return new ModelError('model', `${api} rejected the key (${status}): check ${driver.keyVariable}`, { cause, retryable: false });
      }
      if (status === 429) {
        return new ModelError('model', `${api} kept rate-limiting ${model} (429)${tries}: resume later, or set a backup_model for this agent`, { cause, retryable: true });
      }
      if (status === 529 || failure.errorType === 'overloaded_error') {
        return new ModelError('model', `${api} is overloaded (${status})${tries}: resume later`, { cause, retryable: true });
      }
      if (status === 404) {
        return new ModelError('model', `${api} at ${driver.baseURL} answered 404 for ${model}${detail}: check the model name and model.base_url`, { cause, retryable: false });
      }
      if (status >= 500 || status === 408 || status === 409) {
        return new ModelError('model', `${api} failed with ${status}${tries}${detail}: resume later`, { cause, retryable: true });
      }
      return new ModelError('model', `${api} refused the request for ${model} (${status})${detail}`, { cause, retryable: false });
    }
    case 'connection':
      return new ModelError('model', `cannot reach ${driver.baseURL}: ${failure.detail}`, { cause: failure.cause, retryable: true });
    case 'reset':
      return new ModelError('model', `the connection to ${driver.baseURL} broke mid-reply${tries}: ${failure.detail}`, { cause: failure.cause, retryable: true });
    case 'timeout':
      return new ModelError('model', `no answer from ${driver.baseURL} within ${seconds(driver.timeoutMs)}${tries}: check the server, or raise the timeout`, { cause: failure.cause, retryable: true });
    case 'idle':
      return new ModelError('model', `the reply from ${driver.baseURL} stalled: no data for ${seconds(driver.timeoutMs)}${tries}`, { cause: failure.cause, retryable: true });
    case 'stream': {
      const type = failure.errorType ? `${failure.errorType}: ` : '';
      return new ModelError('model', `${api} broke off the reply of ${model}: ${type}${failure.detail}`, {
        cause: failure.cause,
        retryable: !PERMANENT_STREAM_ERRORS.has(failure.errorType ?? ''),
      });
    }
    case 'malformed':
      return new ModelError('malformed_reply', `${api} at ${driver.baseURL} sent a reply it could not read${tries}: ${failure.detail}`, { cause: failure.cause, retryable: true });
    case 'aborted':
    case 'other':
      return new ModelError('model', `${driver.label} call for ${model} failed: ${failure.kind === 'other' ? failure.detail : 'aborted'}`, { cause: failure.cause, retryable: false });
  }
}

/**
 * The flow both real providers run: one call through the SDK (with its retries), then, if the model
 * is still rate limited and the request names a backup model, one more call with that model.
 * Usage, cost and the model that answered come back in the reply.
 */
export class ResilientCaller {
  private readonly prices: PriceTable;
  private readonly unpriced = new Set<string>();
  private readonly uncounted = new Set<string>();
  private readonly resendBaseMs: number;

  constructor(
    private readonly driver: Driver,
    private readonly options: Pick<ProviderOptions, 'prices' | 'onRetry' | 'onUnknownPrice' | 'onNoUsage' | 'resendBaseMs'>,
  ) {
    this.prices = withPrices(options.prices);
    this.resendBaseMs = options.resendBaseMs ?? 500;
  }

  async complete(request: ModelRequest): Promise<ModelReply> {
    const started = performance.now();
    const first = await this.attemptWithResends(request, request.model);
    let answer = first;
    const backup = request.backupModel;
    if ('failure' in first && first.failure.kind === 'status' && first.failure.status === 429 && backup && backup !== request.model) {
      this.options.onRetry?.({ kind: 'backup_model', provider: this.driver.name, model: request.model, backupModel: backup });
      answer = await this.attemptWithResends(request, backup);
    }
    if ('failure' in answer) {
      if (answer.failure.kind === 'aborted' || request.signal?.aborted) {
        request.signal?.throwIfAborted();
        throw answer.failure.cause;
      }
      const error = modelErrorFor(answer.failure, { driver: this.driver, model: answer.model, attempts: answer.attempts });
      if (answer !== first) {
        const code = error.code as ConstructorParameters<typeof ModelError>[0];
        throw new ModelError(code, `${request.model} stayed rate-limited and its backup ${answer.model} failed too: ${error.message}`, { cause: error.cause, retryable: error.retryable });
      }
      throw error;
    }
    const { completion, model } = answer;
    const usage = completion.usageReported ? completion.usage : this.countLocally(request, completion, model);
    const cost = costOf(model, usage, this.prices);
    if (!cost.known && !this.unpriced.has(model)) {
      this.unpriced.add(model);
      this.options.onUnknownPrice?.(model);
    }
    return {
      text: completion.text,
      toolCalls: completion.toolCalls,
      stopReason: completion.stopReason,
      model,
      usage,
      costUsd: cost.usd,
      latencyMs: Math.round(performance.now() - started),
    };
  }

  /** A server that sent no usage: the tokens are counted here, never taken as zero (budgets hold on the count). */
  private countLocally(request: ModelRequest, completion: Completion, model: string): TokenUsage {
    const source = countSourceFor(model);
    if (!this.uncounted.has(model)) {
      this.uncounted.add(model);
      this.options.onNoUsage?.(model, source);
    }
    const calls = completion.toolCalls.reduce((sum, call) => sum + countTokens(`${call.name} ${JSON.stringify(call.input ?? {})}`), 0);
    return {
      inputTokens: countRequestTokens(request.system, request.messages, request.tools),
      outputTokens: countTokens(completion.text) + calls,
      cacheReadTokens: 0,
      cacheWriteTokens: 0,
      source,
    };
  }

  /**
   * One attempt, sent again (up to the driver's `maxRetries`, with backoff) when the reply broke off
   * after it had started: those failures happen past the point where the SDK retries.
   */
  private async attemptWithResends(request: ModelRequest, model: string): ReturnType<ResilientCaller['attempt']> {
    for (let resends = 0; ; resends += 1) {
      const answer = await this.attempt(request, model);
      if (!('failure' in answer)) return answer;
      const attempts = answer.attempts + resends;
      if (!resendable(answer.failure) || resends >= this.driver.maxRetries || request.signal?.aborted) return { ...answer, attempts };
      const waitMs = Math.min(8000, this.resendBaseMs * 2 ** resends);
      const reason = modelErrorFor(answer.failure, { driver: this.driver, model, attempts: 1 }).message;
      this.options.onRetry?.({ kind: 'resend', provider: this.driver.name, model, attempt: resends + 1, maxRetries: this.driver.maxRetries, reason, waitMs });
      // An abort during the wait ends it early; the next round sees the signal and gives up.
      await sleep(waitMs, undefined, { signal: request.signal }).catch(() => undefined);
    }
  }

  private async attempt(
    request: ModelRequest,
    model: string,
  ): Promise<{ completion: Completion; model: string } | { failure: Failure; model: string; attempts: number }> {
    const log: CallLog = { model, attempts: 0, signal: request.signal };
    const watchdog = new IdleWatchdog(this.driver.timeoutMs);
    try {
      const completion = await currentCall.run(log, () => this.driver.send(request, model, watchdog));
      return { completion, model };
    } catch (error) {
      if (error instanceof ModelError) throw error;
      let failure = this.driver.classify(error);
      if (watchdog.fired && !request.signal?.aborted) failure = { kind: 'idle', cause: error };
      return { failure, model, attempts: Math.max(log.attempts, 1) };
    } finally {
      watchdog.stop();
    }
  }
}

/** Failures of a reply that had started, which the SDKs leave alone and a resend may cure. */
function resendable(failure: Failure): boolean {
  if (failure.kind === 'stream') return !PERMANENT_STREAM_ERRORS.has(failure.errorType ?? '');
  return failure.kind === 'idle' || failure.kind === 'reset' || failure.kind === 'malformed';
}

/** The signal an SDK call gets: the caller's cancellation and the idle watchdog. */
export function callSignal(request: ModelRequest, watchdog: IdleWatchdog): AbortSignal {
  return request.signal ? AbortSignal.any([request.signal, watchdog.signal]) : watchdog.signal;
}

/**
 * Throws when a stream ended early because it was aborted: the SDKs end the iteration quietly
 * when their signal fires mid-stream, which would otherwise look like a short, complete reply.
 */
export function assertNotCutShort(request: ModelRequest, watchdog: IdleWatchdog): void {
  request.signal?.throwIfAborted();
  if (watchdog.fired) throw new StreamStalled();
}

/** Thrown when the idle watchdog ended a stream; classified as `idle`. */
export class StreamStalled extends Error {
  constructor() {
    super('the stream stalled');
    this.name = 'StreamStalled';
  }
}

/**
 * A tool call's JSON arguments; the empty string (a call without arguments) is `{}`. Arguments
 * that are not JSON (trailing commas, single quotes, a missing brace) are repaired; what cannot be
 * repaired comes back as `inputError`, for the model to be told in the tool's result.
 */
export function parseToolInput(json: string, name: string): { input: unknown; inputError?: string } {
  if (json.trim() === '') return { input: {} };
  const refused = { input: {}, inputError: `the arguments of your ${name} call are not a JSON object (${oneLine(json, 80)}): call it again with a JSON object` };
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    try {
      value = JSON.parse(jsonrepair(json));
    } catch {
      return refused;
    }
  }
  // Tools take objects: what repair made of something else (a bare word, a list) is not a call.
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? { input: value } : refused;
}

export interface ConnectionCheck {
  ok: boolean;
  /** One line: who answered and how fast, or the ModelError's message. */
  message: string;
  latencyMs: number;
}

/**
 * The smallest real call (max_tokens 1), for `moderator doctor`: it proves the key, the address and
 * the model name at the price of a few tokens. Give it a provider built with few retries, or a rate
 * limit makes it wait out the SDK's backoff.
 */
export async function checkConnection(provider: ModelProvider, model: string, options: { signal?: AbortSignal } = {}): Promise<ConnectionCheck> {
  const started = performance.now();
  try {
    const reply = await provider.complete(
      {
        agent: 'moderator',
        purpose: 'doctor',
        model,
        system: '',
        messages: [{ role: 'user', content: 'Reply with the single word: ok' }],
        temperature: 0,
        maxTokens: 1,
        signal: options.signal,
      },
      0,
    );
    const latencyMs = Math.round(performance.now() - started);
    return { ok: true, message: `${provider.name}: ${reply.model} answered in ${latencyMs} ms`, latencyMs };
  } catch (error) {
    const latencyMs = Math.round(performance.now() - started);
    return { ok: false, message: error instanceof Error ? error.message : String(error), latencyMs };
  }
}
