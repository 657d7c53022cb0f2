import type { Store } from '../store/store.ts';
import { BudgetExhaustedError, ModelError } from './model-error.ts';
import type { ModelProvider, ModelReply, ModelRequest } from './provider.ts';
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

/** A rough token count for the budget check before sending: ~4 characters a token. */
export function estimateTokens(text: string): number {
  return Math.ceil(text.length / 4);
}

/**
 * Every model call of a run goes through here. A call has a deterministic key (`techlead:implement:T2:1`);
 * its reply is journaled in `model_calls`, so a step re-run after a crash gets the journaled reply
 * and pays nothing. A call that could take the run past its budget is refused before it is sent.
 */
export class ModelGateway {
  private readonly store: Store;
  private readonly runId: string;
  private readonly provider: ModelProvider;
  private readonly budget: Budget;
  private readonly onCall: (report: CallReport) => void;

  constructor(options: { store: Store; runId: string; provider: ModelProvider; budget: Budget; onCall?: (report: CallReport) => void }) {
    this.store = options.store;
    this.runId = options.runId;
    this.provider = options.provider;
    this.budget = options.budget;
    this.onCall = options.onCall ?? (() => {});
  }

  get providerName(): string {
    return this.provider.name;
  }

  async call(callKey: CallKey, request: ModelRequest): Promise<ModelReply> {
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

    this.checkBudget(request);
    const sequence = this.store.countCompletedCalls(this.runId, request.agent);
    const id = this.store.beginModelCall({
      runId: this.runId,
      callKey,
      agent: request.agent,
      purpose: request.purpose,
      taskId: request.taskId ?? null,
      provider: this.provider.name,
      model: request.model,
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

  private checkBudget(request: ModelRequest): void {
    const totals = this.store.totals(this.runId);
    const prompt = request.system + request.messages.map((item) => (item.role === 'tool' ? item.results.map((result) => result.content).join('\n') : item.content)).join('\n');
    const worstCase = totals.tokensUsed + estimateTokens(prompt) + request.maxTokens;
    if (worstCase > this.budget.maxTokensTotal) {
      throw new BudgetExhaustedError(
        `token budget: ${totals.tokensUsed} used of ${this.budget.maxTokensTotal}; ${request.agent} ${request.purpose} may need up to ${worstCase - totals.tokensUsed} more, so it was not sent`,
      );
    }
    if (this.budget.maxCostUsd !== undefined && totals.costUsd >= this.budget.maxCostUsd) {
      throw new BudgetExhaustedError(`cost budget: $${totals.costUsd.toFixed(4)} spent of $${this.budget.maxCostUsd}`);
    }
  }
}
