import { once } from '../effects.ts';
import type { ConversationItem, ToolCall } from '../llm/provider.ts';
import type { CountSource, PromptCount } from '../llm/token-count.ts';
import type { Store } from '../store/store.ts';
import { stepKeys, type CallKey } from '../../protocol/keys.ts';
import { ContextFullError } from './context-error.ts';
import { PRUNED_INTRO, shortenCall, summariseResult, summariseText, summariseTurns } from './summaries.ts';

/**
 * The zones of one conversation, as shares of `limits.max_context_tokens`: at 70% its old tool
 * results are summarised; at 85% it is pruned to the system prompt, the task, a summary and the
 * recent turns; at 95% (after both) the step stops with `context_full`.
 */
export type ContextZone = 'ok' | 'summarise' | 'prune' | 'stop';

export const ZONE_SHARES = { summarise: 0.7, prune: 0.85, stop: 0.95 } as const;

const RANK: Record<ContextZone, number> = { ok: 0, summarise: 1, prune: 2, stop: 3 };

/** Zones as numbers, for Prometheus: 0 ok, 1 summarise, 2 prune, 3 stop. */
export function zoneRank(zone: ContextZone): number {
  return RANK[zone];
}

export function zoneOf(tokens: number, limit: number): ContextZone {
  const share = tokens / limit;
  return share >= ZONE_SHARES.stop ? 'stop' : share >= ZONE_SHARES.prune ? 'prune' : share >= ZONE_SHARES.summarise ? 'summarise' : 'ok';
}

export function isContextZone(value: unknown): value is ContextZone {
  return typeof value === 'string' && value in RANK;
}

/** What was done to a conversation before one turn; journaled, so a resumed step does the same. */
export interface ContextDecision {
  /** The zone the conversation's count reached before anything was done. */
  reached: ContextZone;
  action: 'summarise' | 'prune' | 'stop';
  before: number;
  after: number;
  source: CountSource;
  /** Tool results (and long tool-call arguments) of the entries before this index are summarised. */
  summariseBefore: number;
  /** Pruned: the entries from 1 up to this index become one summary. */
  keepFrom?: number;
}

export interface WindowOptions {
  store: Store;
  runId: string;
  limit: number;
  /** Turns kept whole when old results are summarised or the conversation pruned. */
  keepTurns: number;
  /** `techlead implement T3`, for alerts and errors. */
  label: string;
  /** Counts the conversation as it would be sent, with the system prompt and tools (the gateway's counter). */
  count(items: ConversationItem[]): Promise<PromptCount>;
  /** Told the alert's text when the conversation enters a higher zone (for the progress output). */
  onAlert?: ((message: string) => void) | undefined;
}

interface Entry {
  item: ConversationItem;
  /** A user turn carrying tool results as text (a server without native tool calls). */
  textResults: boolean;
}

export interface FittedTurn {
  items: ConversationItem[];
  /** The count of what is sent; absent for a turn answered in an earlier session (nothing is sent). */
  count?: PromptCount | undefined;
  /**
   * The strongest remedy this conversation has needed so far (`summarise`, `prune`), `ok` if none:
   * a conversation pruned back from 96% is in `prune`, not `stop`, since its step carries on.
   */
  zone: ContextZone;
}

/**
 * One conversation of a step, kept within its context budget. Before each turn `fit` counts what
 * would be sent and, past 70%, summarises or prunes it; the decision is journaled under the turn's
 * key (`context:<call key>`) with the zone alert in the same transaction, and applied to the
 * conversation, which later turns build on. On resume the journaled decisions are applied again
 * in order, to the same turns rebuilt from the call and tool journals, so the step sees the same
 * prompt it would have seen without the crash; a turn answered in an earlier session with no
 * decision journaled had nothing done to it and is not counted again.
 */
export class ConversationWindow {
  private entries: Entry[];
  private reached: ContextZone = 'ok';

  constructor(
    private readonly options: WindowOptions,
    prompt: string,
  ) {
    this.entries = [{ item: { role: 'user', content: prompt }, textResults: false }];
  }

  get items(): ConversationItem[] {
    return this.entries.map((entry) => entry.item);
  }

  get zone(): ContextZone {
    return this.reached;
  }

  push(item: ConversationItem, textResults = false): void {
    this.entries.push({ item, textResults });
  }

  last(): ConversationItem | undefined {
    return this.entries.at(-1)?.item;
  }

  async fit(turnKey: CallKey): Promise<FittedTurn> {
    const { store, runId, limit } = this.options;
    const key = stepKeys.context(turnKey);
    const journaled = store.effects.get(runId, key);
    if (journaled?.status === 'done') {
      const decision = journaled.result as ContextDecision;
      this.apply(decision);
      if (decision.action === 'stop') throw this.full(decision);
      return { items: this.items, count: { tokens: decision.after, source: decision.source }, zone: this.reached };
    }
    if (store.calls.findCompleted(runId, turnKey)) return { items: this.items, zone: this.reached };

    const count = await this.options.count(this.items);
    const reached = zoneOf(count.tokens, limit);
    if (reached === 'ok') return { items: this.items, count, zone: this.reached };
    const decision = await this.decide(reached, count);
    const rose = RANK[decision.action] > RANK[this.reached];
    await once(store, runId, key, async () => decision, (decided) => {
      if (rose) store.alerts.add({ runId, level: decided.action === 'stop' ? 'critical' : 'warning', kind: 'context', message: this.alertText(decided) });
    });
    if (rose) this.options.onAlert?.(this.alertText(decision));
    this.apply(decision);
    if (decision.action === 'stop') throw this.full(decision);
    return { items: this.items, count: { tokens: decision.after, source: decision.source }, zone: this.reached };
  }

  /** The cheapest remedy that brings the count under the next zone, escalating as far as pruning to the last turn. */
  private async decide(reached: ContextZone, count: PromptCount): Promise<ContextDecision> {
    const { limit, keepTurns } = this.options;
    const recent = this.turnStart(keepTurns);
    let trial = summarised(this.entries, recent);
    let after = await this.options.count(trial.map((entry) => entry.item));
    let decision: ContextDecision = { reached, action: 'summarise', before: count.tokens, after: after.tokens, source: after.source, summariseBefore: recent };
    if (RANK[reached] >= RANK.prune || RANK[zoneOf(after.tokens, limit)] >= RANK.prune) {
      trial = pruned(trial, recent);
      after = await this.options.count(trial.map((entry) => entry.item));
      decision = { ...decision, action: 'prune', after: after.tokens, source: after.source, keepFrom: recent };
      if (zoneOf(after.tokens, limit) === 'stop') {
        const last = this.turnStart(1);
        after = await this.options.count(pruned(summarised(this.entries, last), last).map((entry) => entry.item));
        decision = { ...decision, after: after.tokens, source: after.source, summariseBefore: last, keepFrom: last };
      }
    }
    return zoneOf(decision.after, limit) === 'stop' ? { ...decision, action: 'stop' } : decision;
  }

  private apply(decision: ContextDecision): void {
    let entries = summarised(this.entries, decision.summariseBefore);
    if (decision.keepFrom !== undefined) entries = pruned(entries, decision.keepFrom);
    this.entries = entries;
    if (RANK[decision.action] > RANK[this.reached]) this.reached = decision.action;
  }

  /** Where the last `turns` turns start: each turn begins with the model's reply. 1 (nothing older) when there are no more. */
  private turnStart(turns: number): number {
    const starts = this.entries.flatMap((entry, index) => (index > 0 && entry.item.role === 'assistant' ? [index] : []));
    return starts.length > turns ? (starts[starts.length - turns] ?? 1) : 1;
  }

  private percent(tokens: number): string {
    return `${Math.round((tokens / this.options.limit) * 100)}%`;
  }

  private alertText(decision: ContextDecision): string {
    const { label, limit } = this.options;
    const reached = `${label}: the conversation reached ${this.percent(decision.before)} of limits.max_context_tokens (${limit})`;
    const figures = `${decision.before} -> ${decision.after} tokens`;
    switch (decision.action) {
      case 'summarise':
        return `${reached}: old tool results summarised (${figures})`;
      case 'prune':
        return `${reached}: pruned to the task, a summary and the recent turns (${figures})`;
      case 'stop':
        return `${reached} and is still at ${this.percent(decision.after)} pruned to its last turn: the step stopped`;
    }
  }

  private full(decision: ContextDecision): ContextFullError {
    const { label, limit, runId } = this.options;
    return new ContextFullError(
      `${label}: the conversation needs ${decision.after} tokens, ${this.percent(decision.after)} of limits.max_context_tokens (${limit}), even pruned to the task and its last turn: the step stopped; raise limits.max_context_tokens or split the task, then \`moderator retry ${runId}\``,
      { tokens: decision.after, limit },
    );
  }
}

/** The entries with the tool results and long tool-call arguments of those before `before` (the task excepted) summarised. */
function summarised(entries: readonly Entry[], before: number): Entry[] {
  const calls = new Map<string, ToolCall>();
  return entries.map((entry, index) => {
    const { item } = entry;
    if (item.role === 'assistant') for (const call of item.toolCalls ?? []) calls.set(call.id, call);
    if (index === 0 || index >= before) return entry;
    if (item.role === 'tool') return { ...entry, item: { role: 'tool', results: item.results.map((result) => summariseResult(calls.get(result.id), result)) } };
    if (item.role === 'assistant' && item.toolCalls?.length) return { ...entry, item: { ...item, toolCalls: item.toolCalls.map(shortenCall) } };
    if (item.role === 'user' && entry.textResults) return { ...entry, item: { role: 'user', content: summariseText(item.content) } };
    return entry;
  });
}

/** The task, one summary of the entries from 1 up to `keepFrom`, then the entries from `keepFrom` on. */
function pruned(entries: readonly Entry[], keepFrom: number): Entry[] {
  if (keepFrom <= 1) return [...entries];
  const [task, ...rest] = entries;
  if (!task) return [];
  const dropped = rest.slice(0, keepFrom - 1).map((entry) => entry.item);
  const lines = summariseTurns(dropped);
  // The summary stays bounded however often a conversation is pruned: the oldest lines go first.
  const kept = lines.length > 40 ? [`- (${lines.length - 40} earlier steps left out)`, ...lines.slice(-40)] : lines;
  const summary: Entry = { item: { role: 'user', content: [PRUNED_INTRO, ...kept].join('\n') }, textResults: false };
  return [task, summary, ...entries.slice(keepFrom)];
}
