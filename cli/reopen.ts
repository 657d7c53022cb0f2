import type { Config } from '../config/index.ts';
import type { TaskRef } from '../machines/events.ts';
import type { RetryPlan } from '../machines/orchestrator.machine.ts';
import { CONTEXT_STOP_AT } from '../machines/monitor-rules.ts';
import { forecastPasses } from '../protocol/forecast.ts';
import { STOP_CONDITIONS, isStopCondition, type StopCondition, type StopRecord } from '../protocol/stops.ts';
import type { Store } from '../services/store/store.ts';
import { forecastOf } from './monitor-records.ts';
import { groupDigits } from '../protocol/numbers.ts';

/**
 * A run a limit stopped is finished (its outcome is kept, its exit status is the outcome's), and
 * `--resume` continues it once that limit is relaxed (`--limit max_cost_usd=10`, `--max-tokens`):
 * its final checkpoint is set aside and a fresh tree starts from where the run was, with the
 * tasks in flight pending again at the round they were in. Every effect is journaled, so the
 * steps already done are read back, not done again (DESIGN, checkpoint rule 2).
 */

/** Phases before any task exists to continue: the run starts over, replaying clarify and plan from the journal. */
const BEFORE_TASKS = new Set(['starting', 'clarifying', 'awaitingAnswers', 'planning', 'awaitingApproval']);

/**
 * The plan a continued run starts from: the tasks in flight (in progress, in review) pending again
 * at the round they were in, with the stage they need; an improvement cycle in flight entered
 * again (its measurement and analysis are journaled). Undefined: start from the beginning.
 */
export function continuationPlan(stop: StopRecord, tasks: readonly TaskRef[], improvementCycle: number): RetryPlan | undefined {
  if (tasks.length === 0 || BEFORE_TASKS.has(stop.phase)) return undefined;
  const next = tasks.map((task) => continued(task));
  return { tasks: next, improvementCycle: stop.phase === 'improving' ? Math.max(0, improvementCycle - 1) : improvementCycle };
}

/** A task in flight, pending again at its round with the stage it was at; others as they are. */
export function continued(task: TaskRef): TaskRef {
  if (task.status !== 'in_progress' && task.status !== 'in_review') return task;
  const stage = task.status === 'in_review' && task.prNumber !== null ? 'review' : task.prNumber !== null ? 'revise' : 'implement';
  return { ...task, status: 'pending', stage };
}

export interface Facts {
  tokensUsed: number;
  costUsd: number;
  activeMs: number;
  largestPrompt: number;
  callsSent: number;
  callErrors: number;
  /** The measured magnitude of the latest improvement cycle measured. */
  lastMagnitude: number | null;
  /** Whether the forecast to finish fits the (new) budget. */
  forecastFits: boolean;
}

export function factsOf(store: Store, runId: string, config: Config): Facts {
  const totals = store.calls.totals(runId);
  const forecast = forecastOf(store, runId);
  const measured = store.improvementCycles.list(runId).filter((cycle) => cycle.magnitude !== null);
  return {
    tokensUsed: totals.tokensUsed,
    costUsd: totals.costUsd,
    activeMs: store.runs.get(runId)?.activeMs ?? 0,
    largestPrompt: store.calls.largestPrompt(runId),
    callsSent: totals.callsSent,
    callErrors: totals.callErrors,
    lastMagnitude: measured.at(-1)?.magnitude ?? null,
    forecastFits: forecast === null || forecastPasses(forecast, { maxTokensTotal: config.limits.max_tokens_total, maxCostUsd: config.limits.max_cost_usd ?? null }) === null,
  };
}

const n = groupDigits;

/**
 * Whether the condition that stopped the run still holds under `config` (the stored settings with
 * this resume's flags over them), and what to change if it does. `before` is the config the run
 * stopped under, for limits that are relaxed by moving them (a floor lowered, a count raised).
 */
export function stillHolds(stop: StopRecord, before: Config, config: Config, facts: Facts): string | null {
  const limits = config.limits;
  const was = before.limits;
  const raise = (setting: string, now: string) => `raise ${setting} (${now}) with --limit, e.g. --limit ${setting.replace('limits.', '')}=<more>`;
  const cost = limits.max_cost_usd;
  switch (stop.condition) {
    case 'tokens':
      return facts.tokensUsed >= limits.max_tokens_total ? `${n(facts.tokensUsed)} tokens used: ${raise('limits.max_tokens_total', n(limits.max_tokens_total))} or --max-tokens` : null;
    case 'cost':
      return cost !== undefined && facts.costUsd >= cost ? `$${facts.costUsd.toFixed(2)} spent: ${raise('limits.max_cost_usd', `$${cost}`)}` : null;
    case 'budget': {
      // The gateway refused a call that might not fit: which budget is measured, and it must have moved.
      const costBinding = was.max_cost_usd !== undefined && facts.costUsd >= was.max_cost_usd;
      if (costBinding) return cost === undefined || cost > (was.max_cost_usd ?? 0) ? null : `$${facts.costUsd.toFixed(2)} spent: ${raise('limits.max_cost_usd', `$${cost}`)}`;
      return limits.max_tokens_total > was.max_tokens_total ? null : `${n(facts.tokensUsed)} tokens used: ${raise('limits.max_tokens_total', n(limits.max_tokens_total))} or --max-tokens`;
    }
    case 'runtime':
      return facts.activeMs >= limits.max_runtime_hours * 3_600_000 ? `${(facts.activeMs / 3_600_000).toFixed(2)} h run: ${raise('limits.max_runtime_hours', `${limits.max_runtime_hours} h`)}` : null;
    case 'context':
      return facts.largestPrompt >= CONTEXT_STOP_AT * limits.max_context_tokens ? `a prompt of ${n(facts.largestPrompt)} tokens: ${raise('limits.max_context_tokens', n(limits.max_context_tokens))}` : null;
    case 'error_rate': {
      const rate = facts.callsSent === 0 ? 0 : facts.callErrors / facts.callsSent;
      return rate > limits.max_error_rate ? `error rate ${rate.toFixed(2)}: ${raise('limits.max_error_rate', String(limits.max_error_rate))}` : null;
    }
    case 'consecutive_errors':
      // A new session counts its own errors: the cause (a provider down, a bad key) may be fixed.
      return null;
    case 'health':
      return limits.min_health_score < was.min_health_score ? null : `lower limits.min_health_score (${limits.min_health_score}) with --limit min_health_score=<less>, or fix what lowered it`;
    case 'task_loop':
      return limits.max_task_attempts > was.max_task_attempts ? null : raise('limits.max_task_attempts', String(limits.max_task_attempts));
    case 'improvement_cycles':
      return limits.max_improvement_cycles > was.max_improvement_cycles ? null : raise('limits.max_improvement_cycles', String(limits.max_improvement_cycles));
    case 'diminishing_returns':
      return facts.lastMagnitude !== null && facts.lastMagnitude >= limits.min_improvement
        ? null
        : `the last cycle measured ${facts.lastMagnitude?.toFixed(3) ?? 'nothing'}: lower limits.min_improvement (${limits.min_improvement}) with --limit min_improvement=<less>`;
    case 'forecast':
      return facts.forecastFits ? null : `the forecast to finish still passes the budget: raise limits.max_tokens_total (--max-tokens) or limits.max_cost_usd (--limit max_cost_usd=<more>)`;
    case 'question_timeout':
    case 'stagnation':
      return null;
  }
}

/** The stop record of a final checkpoint's orchestrator context, when it has a readable one. */
export function stopRecordOf(context: unknown): StopRecord | null {
  const stop = (context as { stop?: unknown } | undefined)?.stop;
  if (stop === null || typeof stop !== 'object') return null;
  const { condition, limit, phase } = stop as Record<string, unknown>;
  if (!isStopCondition(condition) || typeof phase !== 'string') return null;
  return { condition, limit: typeof limit === 'number' ? limit : null, phase };
}

/** Whether `--resume` may continue a run this condition stopped at all (some are for `moderator retry`). */
export function resumable(condition: StopCondition): boolean {
  return STOP_CONDITIONS[condition].relax !== null;
}
