import type { TaskStatus } from './tasks.ts';
import { groupDigits } from './numbers.ts';

/**
 * Tokens and cost to finish the run, from the tasks left and what each finished task cost so far.
 * The progress output, the metrics, the dashboard and plan approval show it; the Monitor asks a
 * person (or stops an unattended run) when it passes the budget. A leaf module.
 */

export interface TaskSpend {
  status: TaskStatus;
  /** Tokens and cost of the model calls made for this task so far. */
  tokens: number;
  costUsd: number;
}

export interface Forecast {
  /** Tasks pending or in flight. */
  tasksLeft: number;
  /** Finished tasks the per-task figures come from; 0 when they are the rough prior. */
  basedOn: number;
  tokensPerTask: number;
  costPerTask: number;
  tokensToFinish: number;
  costToFinish: number;
  /** What the run will have used when the tasks left are done. */
  tokensAtFinish: number;
  costAtFinish: number;
  /** No task has finished yet: the figures are the prior given at plan approval, not measured. */
  rough: boolean;
}

const LEFT: ReadonlySet<TaskStatus> = new Set(['pending', 'in_progress', 'in_review']);

/**
 * The forecast, or null when nothing can be said yet (no task finished and no prior). A task in
 * flight is counted as what is left of an average task after what it already spent.
 */
export function forecastRun(
  used: { tokens: number; costUsd: number },
  tasks: readonly TaskSpend[],
  prior?: { tokensPerTask: number; costPerTask: number },
): Forecast | null {
  // Tasks that went through the loop and spent something; a skipped task that never ran says nothing.
  const finished = tasks.filter((task) => !LEFT.has(task.status) && task.tokens > 0);
  const left = tasks.filter((task) => LEFT.has(task.status));
  const measured = finished.length > 0;
  if (!measured && prior === undefined) return null;
  const tokensPerTask = measured ? finished.reduce((sum, task) => sum + task.tokens, 0) / finished.length : (prior?.tokensPerTask ?? 0);
  const costPerTask = measured ? finished.reduce((sum, task) => sum + task.costUsd, 0) / finished.length : (prior?.costPerTask ?? 0);
  const tokensToFinish = left.reduce((sum, task) => sum + Math.max(0, tokensPerTask - task.tokens), 0);
  const costToFinish = left.reduce((sum, task) => sum + Math.max(0, costPerTask - task.costUsd), 0);
  return {
    tasksLeft: left.length,
    basedOn: finished.length,
    tokensPerTask: Math.round(tokensPerTask),
    costPerTask: round4(costPerTask),
    tokensToFinish: Math.round(tokensToFinish),
    costToFinish: round4(costToFinish),
    tokensAtFinish: Math.round(used.tokens + tokensToFinish),
    costAtFinish: round4(used.costUsd + costToFinish),
    rough: !measured,
  };
}

/** Which budget the forecast passes, if any: the token budget first. */
export function forecastPasses(forecast: Forecast, limits: { maxTokensTotal: number; maxCostUsd: number | null }): 'tokens' | 'cost' | null {
  if (forecast.tokensAtFinish > limits.maxTokensTotal) return 'tokens';
  if (limits.maxCostUsd !== null && forecast.costAtFinish > limits.maxCostUsd) return 'cost';
  return null;
}

/** One line for people: `~41,200 tokens ($0.31) to finish 3 task(s), ~92,000 in all`. */
export function describeForecast(forecast: Forecast, limits: { maxTokensTotal: number; maxCostUsd: number | null }): string {
  const cost = forecast.costAtFinish > 0 ? ` ($${forecast.costToFinish.toFixed(2)}; $${forecast.costAtFinish.toFixed(2)} in all${limits.maxCostUsd !== null ? ` of $${limits.maxCostUsd}` : ''})` : '';
  const basis = forecast.rough ? 'a rough guess: no task has finished yet' : `from ${forecast.basedOn} finished task(s), ~${groupDigits(forecast.tokensPerTask)} tokens each`;
  return `~${groupDigits(forecast.tokensToFinish)} tokens to finish ${forecast.tasksLeft} task(s) left, ~${groupDigits(forecast.tokensAtFinish)} of ${groupDigits(limits.maxTokensTotal)} in all${cost} (${basis})`;
}

const round4 = (value: number): number => Math.round(value * 10_000) / 10_000;
