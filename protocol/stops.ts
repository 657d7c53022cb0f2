/**
 * How a run ends, and every stopping condition with the outcome it ends the run with and the
 * setting that sets its limit. The charts decide a stop and record its condition; the CLI reads
 * this table to say which setting to change and to decide whether `--resume` may continue a run
 * that a limit stopped once that limit is relaxed. A leaf module.
 */

export type Outcome = 'done' | 'budget_exhausted' | 'stuck' | 'needs_human' | 'failed' | 'cancelled';

export type StopCondition =
  | 'tokens'
  | 'cost'
  /** The gateway refused a call that might not fit the token or cost budget. */
  | 'budget'
  | 'runtime'
  | 'context'
  | 'error_rate'
  | 'consecutive_errors'
  | 'health'
  | 'task_loop'
  | 'improvement_cycles'
  | 'diminishing_returns'
  /** The forecast passed the budget: unattended, or a person said stop. */
  | 'forecast'
  /** Nobody answered a question that must be answered (the plan, the budget) in time. */
  | 'question_timeout'
  | 'stagnation';

/** How a limit is relaxed: `raise` it, `lower` it (a floor), or `any` (the count starts again in a new session). */
export type Relaxation = 'raise' | 'lower' | 'any';

export interface ConditionInfo {
  outcome: Outcome;
  /** The settings that set the limit, as a person writes them in duo-agent.config.yaml. */
  settings: readonly string[];
  /** Null: a run it stopped is not continued by `--resume` (`moderator retry` re-queues its tasks). */
  relax: Relaxation | null;
}

export const STOP_CONDITIONS: Readonly<Record<StopCondition, ConditionInfo>> = {
  tokens: { outcome: 'budget_exhausted', settings: ['limits.max_tokens_total'], relax: 'raise' },
  cost: { outcome: 'budget_exhausted', settings: ['limits.max_cost_usd'], relax: 'raise' },
  budget: { outcome: 'budget_exhausted', settings: ['limits.max_tokens_total', 'limits.max_cost_usd'], relax: 'raise' },
  runtime: { outcome: 'budget_exhausted', settings: ['limits.max_runtime_hours'], relax: 'raise' },
  context: { outcome: 'budget_exhausted', settings: ['limits.max_context_tokens'], relax: 'raise' },
  error_rate: { outcome: 'failed', settings: ['limits.max_error_rate'], relax: 'raise' },
  consecutive_errors: { outcome: 'failed', settings: ['limits.max_consecutive_errors'], relax: 'any' },
  health: { outcome: 'failed', settings: ['limits.min_health_score'], relax: 'lower' },
  task_loop: { outcome: 'stuck', settings: ['limits.max_task_attempts'], relax: 'raise' },
  improvement_cycles: { outcome: 'done', settings: ['limits.max_improvement_cycles'], relax: 'raise' },
  diminishing_returns: { outcome: 'done', settings: ['limits.min_improvement'], relax: 'lower' },
  forecast: { outcome: 'needs_human', settings: ['limits.max_tokens_total', 'limits.max_cost_usd'], relax: 'raise' },
  question_timeout: { outcome: 'needs_human', settings: ['limits.intervention_timeout_minutes'], relax: null },
  stagnation: { outcome: 'stuck', settings: ['limits.stagnation_minutes'], relax: null },
};

/** What the orchestrator keeps of a stopping condition that ended the run. */
export interface StopRecord {
  condition: StopCondition;
  /** The limit's value when it stopped the run (in the setting's own unit), when it has one. */
  limit: number | null;
  /** The top-level state the run was in, so a continued run picks up there. */
  phase: string;
}

export function isStopCondition(value: unknown): value is StopCondition {
  return typeof value === 'string' && value in STOP_CONDITIONS;
}
