import type { Store } from '../store/store.ts';
import { BudgetExhaustedError, ModelError } from './model-error.ts';
import type { ModelProvider, ModelReply, ModelRequest } from './provider.ts';
import { PromptCounter, type CountableRequest, type PromptCount } from './token-count.ts';
import { messageOf } from '../../errors.ts';
import type { CallKey } from '../../protocol/keys.ts';

export interface Budget {
  maxTokensTotal: number;
  maxCostUsd?: number | undefined;
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
 * has one, else locally; see PromptCounter), and a call whose prompt and `max_tokens` could take
 * the run past its budget is refused before it is sent.
 */
export class ModelGateway {
  private readonly store: Store;
  private readonly runId: string;
  private readonly provider: ModelProvider;
  private readonly budget: Budget;
  private readonly onCall: (report: CallReport) => void;
  private readonly counter: PromptCounter;

  constructor(options: { store: Store; runId: string; provider: ModelProvider; budget: Budget; onCall?: (report: CallReport) => void }) {
    this.store = options.store;
    this.runId = options.runId;
    this.provider = options.provider;
    this.budget = options.budget;
    this.onCall = options.onCall ?? (() => {});
    this.counter = new PromptCounter(options.provider);
  }

  /** The request's input tokens as they would be sent (cached by content: counting again is free). */
  count(request: CountableRequest): Promise<PromptCount> {
    return this.counter.count(request);
  }

  get providerName(): string {
    return this.provider.name;
  }

  async call(callKey: CallKey, request: ModelRequest, context?: CallContext): Promise<ModelReply> {
    const journaled = this.store.findCompletedCall(this.runId, callKey);
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
    this.checkBudget(request, prompt);
    const sequence = this.store.countCompletedCalls(this.runId, request.agent);
    const id = this.store.beginModelCall({
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
      reply = await this.provider.complete(request, sequence);
    } catch (error) {
      // An aborted call (the actor was stopped) stays "sent": it may have been paid for.
      if (!request.signal?.aborted) {
        this.store.finishModelCall(id, { status: 'error', error: messageOf(error) });
        this.onCall({ callKey, agent: request.agent, purpose: request.purpose, taskId: request.taskId, fromJournal: false, error: messageOf(error) });
      }
      if (error instanceof ModelError || request.signal?.aborted) throw error;
      throw new ModelError('model', `${request.agent} ${request.purpose}: ${messageOf(error)}`, { cause: error });
    }
    this.store.finishModelCall(id, {
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

  private checkBudget(request: ModelRequest, prompt: PromptCount): void {
    const totals = this.store.totals(this.runId);
    const worstCase = totals.tokensUsed + prompt.tokens + request.maxTokens;
    if (worstCase > this.budget.maxTokensTotal) {
      throw new BudgetExhaustedError(
        `token budget: ${totals.tokensUsed} used of ${this.budget.maxTokensTotal}; ${request.agent} ${request.purpose} may need up to ${worstCase - totals.tokensUsed} more (a prompt of ${prompt.tokens} tokens${prompt.source === 'estimated' ? ', estimated' : ''} and max_tokens ${request.maxTokens}), so it was not sent`,
      );
    }
    if (this.budget.maxCostUsd !== undefined && totals.costUsd >= this.budget.maxCostUsd) {
      throw new BudgetExhaustedError(`cost budget: $${totals.costUsd.toFixed(4)} spent of $${this.budget.maxCostUsd}`);
    }
  }
}
