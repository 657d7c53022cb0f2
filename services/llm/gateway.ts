import type { Store } from '../store/store.ts';
import { BudgetExhaustedError, ModelError } from './model-error.ts';
import { DEFAULT_PRICES, priceOf, type PriceTable } from './prices.ts';
import type { ModelProvider, ModelReply, ModelRequest } from './provider.ts';
import { PromptCounter, type CountableRequest, type PromptCount } from './token-count.ts';
import { messageOf } from '../../errors.ts';
import type { CallKey } from '../../protocol/keys.ts';

export interface Budget {
  maxTokensTotal: number;
  maxCostUsd?: number | undefined;
  /** What a call's worst case costs, for the cost reservation; the built-in table by default. */
  prices?: PriceTable | undefined;
}

/** A call waiting for the budget that calls in flight hold. */
interface Waiter {
  wake: () => void;
}

/** What a call in flight holds of the budget: its worst case, until its reply says what it used. */
interface Reservation {
  tokens: number;
  costUsd: number;
}

export interface CallReport {
  callKey: string;
  agent: string;
  purpose: string;
  taskId?: string | undefined;
  /** True when the reply came from the journal of an earlier session: nothing was sent. */
  fromJournal: boolean;
  reply?: ModelReply;
  error?: string;
}

/** What the context manager knows of a call's conversation, journaled with the call. */
export interface CallContext {
  /** The highest context zone the call's conversation has reached (services/context/window.ts). */
  zone: string;
}

/**
 * Every model call of a run goes through here. A call has a deterministic key (`techlead:implement:T2:1`);
 * its reply is journaled in `model_calls`, so a step re-run after a crash gets the journaled reply
 * and pays nothing. Every prompt is counted before it is sent (the provider's own count where it
 * has one, else locally; see PromptCounter).
 *
 * Budgets hold with calls in parallel: before a call is sent it reserves its worst case (its
 * counted prompt and all of `max_tokens`, in tokens and in dollars), and it is only sent if what
 * was used plus what calls in flight reserved plus its own worst case stays within the budget. A call that
 * would fit once the calls in flight return waits for them (in the order calls asked); one that
 * could not fit even then is refused. The unused part of a reservation is released when the
 * reply is journaled, so concurrent calls can never together pass `max_tokens_total` or
 * `max_cost_usd`.
 */
export class ModelGateway {
  private readonly store: Store;
  private readonly runId: string;
  private readonly provider: ModelProvider;
  private readonly budget: Budget;
  private readonly onCall: (report: CallReport) => void;
  private readonly prices: PriceTable;
  private readonly counter: PromptCounter;
  private readonly reservations = new Set<Reservation>();
  /** Calls waiting for reservations to be released, oldest first. */
  private readonly waiting: Waiter[] = [];

  constructor(options: { store: Store; runId: string; provider: ModelProvider; budget: Budget; onCall?: (report: CallReport) => void }) {
    this.store = options.store;
    this.runId = options.runId;
    this.provider = options.provider;
    this.budget = options.budget;
    this.onCall = options.onCall ?? (() => {});
    this.prices = options.budget.prices ?? DEFAULT_PRICES;
    this.counter = new PromptCounter(options.provider);
  }

  /** The request's input tokens as they would be sent (cached by content: counting again is free). */
  count(request: CountableRequest): Promise<PromptCount> {
    return this.counter.count(request);
  }

  /** Calls sent and not yet answered, and what they hold of the budget: for the metrics. */
  inFlight(): { calls: number; reservedTokens: number; reservedCostUsd: number; waiting: number } {
    let reservedTokens = 0;
    let reservedCostUsd = 0;
    for (const reservation of this.reservations) {
      reservedTokens += reservation.tokens;
      reservedCostUsd += reservation.costUsd;
    }
    return { calls: this.reservations.size, reservedTokens, reservedCostUsd, waiting: this.waiting.length };
  }

  get providerName(): string {
    return this.provider.name;
  }

  async call(callKey: CallKey, request: ModelRequest, context?: CallContext): Promise<ModelReply> {
    const journaled = this.store.calls.findCompleted(this.runId, callKey);
    if (journaled) {
      const reply = journaled.reply as Pick<ModelReply, 'text' | 'toolCalls' | 'stopReason'>;
      const restored: ModelReply = {
        text: reply.text,
        toolCalls: reply.toolCalls ?? [],
        stopReason: reply.stopReason,
        model: journaled.model,
        usage: {
          inputTokens: journaled.inputTokens,
          outputTokens: journaled.outputTokens,
          cacheReadTokens: journaled.cacheReadTokens,
          cacheWriteTokens: journaled.cacheWriteTokens,
          ...(journaled.source ? { source: journaled.source } : {}),
        },
        costUsd: journaled.costUsd,
        latencyMs: journaled.latencyMs ?? 0,
      };
      this.onCall({ callKey, agent: request.agent, purpose: request.purpose, taskId: request.taskId, fromJournal: true, reply: restored });
      return restored;
    }

    const prompt = await this.count(request);
    const reservation = await this.reserve(request, prompt);
    try {
      return await this.send(callKey, request, prompt, context);
    } finally {
      this.release(reservation);
    }
  }

  private async send(callKey: CallKey, request: ModelRequest, prompt: PromptCount, context: CallContext | undefined): Promise<ModelReply> {
    const sequence = this.store.calls.countCompleted(this.runId, request.agent);
    const taskSequence = this.store.calls.countCompleted(this.runId, request.agent, request.taskId ?? null);
    const id = this.store.calls.begin({
      runId: this.runId,
      callKey,
      agent: request.agent,
      purpose: request.purpose,
      taskId: request.taskId ?? null,
      provider: this.provider.name,
      model: request.model,
      promptTokens: prompt.tokens,
      promptSource: prompt.source,
      contextZone: context?.zone ?? null,
    });
    let reply: ModelReply;
    try {
      reply = await this.provider.complete(request, sequence, taskSequence);
    } catch (error) {
      // An aborted call (the actor was stopped) stays "sent": it may have been paid for.
      if (!request.signal?.aborted) {
        this.store.calls.finish(id, { status: 'error', error: messageOf(error) });
        this.onCall({ callKey, agent: request.agent, purpose: request.purpose, taskId: request.taskId, fromJournal: false, error: messageOf(error) });
      }
      if (error instanceof ModelError || request.signal?.aborted) throw error;
      throw new ModelError('model', `${request.agent} ${request.purpose}: ${messageOf(error)}`, { cause: error });
    }
    this.store.calls.finish(id, {
      status: 'ok',
      model: reply.model,
      usage: reply.usage,
      costUsd: reply.costUsd,
      latencyMs: reply.latencyMs,
      reply: { text: reply.text, toolCalls: reply.toolCalls ?? [], stopReason: reply.stopReason },
    });
    this.onCall({ callKey, agent: request.agent, purpose: request.purpose, taskId: request.taskId, fromJournal: false, reply });
    return reply;
  }

  /** The worst case of a call: its counted prompt and all of max_tokens, in tokens and dollars. */
  private worstCase(request: ModelRequest, prompt: PromptCount): Reservation {
    const input = prompt.tokens;
    const price = priceOf(request.model, this.prices)?.price;
    // The prompt at the dearer of the input and cache-write rates: a cached prompt may be written.
    const inputRate = price ? Math.max(price.input, price.cache_write ?? price.input) : 0;
    const costUsd = price ? (input * inputRate + request.maxTokens * price.output) / 1_000_000 : 0;
    return { tokens: input + request.maxTokens, costUsd };
  }

  /**
   * Holds the call's worst case of the budget, waiting (first come, first served) while calls in
   * flight hold what it needs; refuses it (BudgetExhaustedError) when it could not fit even with
   * nothing in flight.
   */
  private async reserve(request: ModelRequest, prompt: PromptCount): Promise<Reservation> {
    const needed = this.worstCase(request, prompt);
    const entry: Waiter = { wake: () => {} };
    let queued = false;
    try {
      for (;;) {
        if (this.fits(request, prompt, needed, queued ? entry : null)) {
          this.reservations.add(needed);
          return needed;
        }
        if (!queued) this.waiting.push(entry);
        queued = true;
        await new Promise<void>((resolve, reject) => {
          const signal = request.signal;
          if (signal?.aborted) return reject(signal.reason ?? new Error('aborted'));
          const abort = () => reject(signal?.reason ?? new Error('aborted'));
          signal?.addEventListener('abort', abort, { once: true });
          entry.wake = () => {
            signal?.removeEventListener('abort', abort);
            resolve();
          };
        });
      }
    } finally {
      // Sent, refused or aborted: out of the line, and the next in line looks again.
      if (queued) {
        this.waiting.splice(this.waiting.indexOf(entry), 1);
        this.wakeNext();
      }
    }
  }

  /** Whether the call fits now (true) or must wait for calls in flight (false); throws when it never can. */
  private fits(request: ModelRequest, prompt: PromptCount, needed: Reservation, entry: Waiter | null): boolean {
    const totals = this.store.calls.totals(this.runId);
    const held = this.inFlight();
    const label = `${request.agent} ${request.purpose}${request.taskId ? ` ${request.taskId}` : ''}`;
    if (totals.tokensUsed + needed.tokens > this.budget.maxTokensTotal) {
      throw new BudgetExhaustedError(
        `token budget: ${totals.tokensUsed} used of ${this.budget.maxTokensTotal}; ${label} may need up to ${needed.tokens} more (a prompt of ${prompt.tokens} tokens${prompt.source === 'estimated' ? ', estimated' : ''} and max_tokens ${request.maxTokens}), so it was not sent`,
      );
    }
    const maxCost = this.budget.maxCostUsd;
    if (maxCost !== undefined && (totals.costUsd >= maxCost || totals.costUsd + needed.costUsd > maxCost)) {
      throw new BudgetExhaustedError(
        totals.costUsd >= maxCost
          ? `cost budget: $${totals.costUsd.toFixed(4)} spent of $${maxCost}`
          : `cost budget: $${totals.costUsd.toFixed(4)} spent of $${maxCost}; ${label} may cost up to $${needed.costUsd.toFixed(4)} more, so it was not sent`,
      );
    }
    // Calls that asked earlier go first: none overtakes the call at the head of the line.
    if (this.waiting.length > 0 && this.waiting[0] !== entry) return false;
    if (totals.tokensUsed + held.reservedTokens + needed.tokens > this.budget.maxTokensTotal) return false;
    return maxCost === undefined || totals.costUsd + held.reservedCostUsd + needed.costUsd <= maxCost;
  }

  private release(reservation: Reservation): void {
    this.reservations.delete(reservation);
    this.wakeNext();
  }

  private wakeNext(): void {
    this.waiting[0]?.wake();
  }
}
