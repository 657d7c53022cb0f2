import { setTimeout as sleep } from 'node:timers/promises';
import { modelErrorFor, resendable, type Failure } from './failures.ts';
import { ModelError } from './model-error.ts';
import { currentCall, type CallLog } from './observed-fetch.ts';
import { costOf, withPrices, type PriceTable } from './prices.ts';
import type { ProviderOptions } from './provider-options.ts';
import type { ModelReply, ModelRequest, TokenUsage, ToolCall } from './provider.ts';
import { IdleWatchdog } from './stream-watchdog.ts';
import { countRequestTokens, countSourceFor, countTokens } from './token-count.ts';

/**
 * What the real providers share: the backup model, resends, local token counts and the one-line
 * errors. Retries before a reply starts are the SDKs' (408/409/429/5xx, timeouts and connection
 * errors, honouring retry-after-ms, retry-after and x-should-retry). Failures the SDKs do not retry
 * because the reply had started (a stalled stream, a reset connection, an error event or an
 * unreadable event mid-reply) are sent again here, with backoff: such a reply was never journaled,
 * so sending the request again is safe.
 */
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
