/**
 * The run's health as one number, 0-100, from what the Monitor measures: the model calls' error
 * rate and errors in a row, how much of the budget and of the context window is used, how long a
 * working agent has shown no progress, and the alerts nobody acknowledged. The Monitor computes it
 * on every tick (and stops the run below `limits.min_health_score`); the monitoring server uses
 * the same function before the first tick. A leaf: machines, the server and the CLI import it.
 */

export type HealthBand = 'healthy' | 'degraded' | 'critical';

/** A score at or above `healthy` is healthy, at or above `degraded` degraded, else critical. */
export const HEALTH_BANDS = { healthy: 80, degraded: 50 } as const;

/** Error rates are meaningless on a handful of calls. */
export const MIN_CALLS_FOR_ERROR_RATE = 5;

/**
 * Points each factor can take from 100. No single factor reaches the default floor (20) alone:
 * a run is stopped for its health only when several things are wrong at once; each factor at its
 * own limit is a stopping condition of its own.
 */
export const HEALTH_WEIGHTS = { errors: 35, budget: 25, context: 15, stagnation: 15, alerts: 10 } as const;

export type HealthFactor = keyof typeof HEALTH_WEIGHTS;

export interface HealthInputs {
  callsSent: number;
  callErrors: number;
  maxErrorRate: number;
  consecutiveErrors: number;
  /** 0: errors in a row do not count. */
  maxConsecutiveErrors: number;
  /** The largest share used of the token, cost and runtime budgets (1 = a budget is spent). */
  budgetShare: number;
  /** The largest prompt over `max_context_tokens`. */
  contextShare: number;
  /** The longest time a working agent went without progress, over `stagnation_minutes`. */
  stagnationShare: number;
  /** Alerts raised and not acknowledged. */
  openAlerts: { warning: number; critical: number };
}

export interface Health {
  score: number;
  band: HealthBand;
  /** Points each factor took, so a person sees why (`{ errors: 12, budget: 5, ... }`). */
  lost: Record<HealthFactor, number>;
}

const clamp = (value: number): number => (Number.isFinite(value) ? Math.min(1, Math.max(0, value)) : 1);

/** 0 below `from`, 1 at `to` and above, linear between. */
const ramp = (value: number, from: number, to: number): number => clamp((value - from) / (to - from));

export function bandOf(score: number): HealthBand {
  return score >= HEALTH_BANDS.healthy ? 'healthy' : score >= HEALTH_BANDS.degraded ? 'degraded' : 'critical';
}

export function healthScore(inputs: HealthInputs): Health {
  const rate = inputs.callsSent >= MIN_CALLS_FOR_ERROR_RATE ? inputs.callErrors / inputs.callsSent : 0;
  const rateShare = inputs.maxErrorRate > 0 ? rate / inputs.maxErrorRate : rate > 0 ? 1 : 0;
  const inARow = inputs.maxConsecutiveErrors > 0 ? inputs.consecutiveErrors / inputs.maxConsecutiveErrors : 0;
  const lost: Record<HealthFactor, number> = {
    errors: HEALTH_WEIGHTS.errors * clamp(Math.max(rateShare, inARow)),
    // Spending the first half of a budget is what budgets are for.
    budget: HEALTH_WEIGHTS.budget * ramp(inputs.budgetShare, 0.5, 1),
    // The seed's context zones: pruning starts at 70%, the run stops at 95%.
    context: HEALTH_WEIGHTS.context * ramp(inputs.contextShare, 0.7, 0.95),
    stagnation: HEALTH_WEIGHTS.stagnation * ramp(inputs.stagnationShare, 0.5, 1),
    alerts: Math.min(HEALTH_WEIGHTS.alerts, 2 * inputs.openAlerts.warning + 5 * inputs.openAlerts.critical),
  };
  for (const factor of Object.keys(lost) as HealthFactor[]) lost[factor] = Math.round(lost[factor] * 10) / 10;
  const score = Math.max(0, Math.min(100, Math.round(100 - Object.values(lost).reduce((sum, points) => sum + points, 0))));
  return { score, band: bandOf(score), lost };
}

/** The largest share used of the run's budgets; a limit that is not set counts nothing. */
export function budgetShare(used: { tokens: number; costUsd: number; runtimeMs: number }, limits: { maxTokensTotal: number; maxCostUsd: number | null; maxRuntimeMs: number }): number {
  return Math.max(
    used.tokens / limits.maxTokensTotal,
    limits.maxCostUsd !== null && limits.maxCostUsd > 0 ? used.costUsd / limits.maxCostUsd : 0,
    used.runtimeMs / limits.maxRuntimeMs,
  );
}
