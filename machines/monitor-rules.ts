import { forecastPasses, type Forecast } from '../protocol/forecast.ts';
import { MIN_CALLS_FOR_ERROR_RATE, budgetShare, healthScore, type Health } from '../protocol/health.ts';
import type { Outcome, StopCondition } from '../protocol/stops.ts';
import { groupDigits } from '../protocol/numbers.ts';

/**
 * What the Monitor decides on each tick, as pure functions of its limits, its memory and one
 * measurement: the reading (with the health score), the stopping condition that holds (if any),
 * the warnings, and which agents made no progress for too long. The chart (monitor.machine.ts)
 * only sends what these say.
 */

/** One agent, as the ticker measured it. */
export interface AgentSample {
  /** In a work state (not idle, stagnant or cooling down). */
  working: boolean;
  /**
   * What the agent has produced so far, as a comparable mark (tasks merged, test results, the
   * size of its worktree's diff, reviews written, ...); any change is progress. Model calls and
   * messages are not: an agent busy in a loop makes calls and no progress.
   */
  progress: string;
}

/** One measurement, taken by the ticker outside the chart (the chart has no clock). */
export interface MetricsSample {
  at: string;
  /** Time the run has been running, over every session. */
  runtimeMs: number;
  tokensUsed: number;
  costUsd: number;
  callsSent: number;
  callErrors: number;
  /** Model calls of this session that failed one after another, up to the latest. */
  consecutiveErrors: number;
  /** Input tokens of the largest prompt sent so far. */
  contextTokens: number;
  /** Alerts nobody acknowledged. */
  openAlerts: { warning: number; critical: number };
  tasks: { total: number; merged: number };
  /** Tokens and cost to finish; null before anything can be said. */
  forecast: Forecast | null;
  /** By agent id (the systemId: `techlead`, later `techlead-2`). */
  agents: Partial<Record<string, AgentSample>>;
}

export interface MonitorLimits {
  maxTokensTotal: number;
  maxCostUsd: number | null;
  maxRuntimeMs: number;
  maxErrorRate: number;
  stagnationMs: number;
  maxContextTokens: number;
  /** Failed calls in a row that stop the run; 0: not checked. */
  maxConsecutiveErrors?: number;
  /** A health score below this stops the run; 0: not checked. */
  minHealthScore?: number;
  /** The same alert is raised again only after this long; 0: once per run. */
  alertWindowMs?: number;
}

export const limitDefaults = { maxConsecutiveErrors: 3, minHealthScore: 20, alertWindowMs: 600_000 } as const;

export type ResolvedLimits = Required<MonitorLimits>;

export function resolveLimits(limits: MonitorLimits): ResolvedLimits {
  return { ...limitDefaults, ...limits };
}

/** Share of a limit at which the Monitor warns before it stops the run. */
export const WARN_AT = 0.8;
/** Share of `max_context_tokens` at which the run stops: the seed's last context zone. */
export const CONTEXT_STOP_AT = 0.95;

/** What the Monitor keeps of each agent's progress: its last mark and the run time it changed at. */
export type ProgressMemory = Record<string, { mark: string; sinceMs: number }>;

/** A tick's measurement with what the Monitor worked out from it. */
export interface MonitorReading extends Omit<MetricsSample, 'agents'> {
  health: Health;
  /** Minutes each working agent has gone without progress. */
  quietMinutes: Record<string, number>;
}

/**
 * Each agent's progress clock, in run time (time over sessions, so a run resumed hours later is
 * not stagnant at once): it restarts when the mark changes or the agent is not working.
 */
export function advanceProgress(memory: ProgressMemory, sample: MetricsSample): ProgressMemory {
  const next: ProgressMemory = {};
  for (const [agent, state] of Object.entries(sample.agents)) {
    if (!state) continue;
    const before = memory[agent];
    next[agent] = state.working && before !== undefined && before.mark === state.progress ? before : { mark: state.progress, sinceMs: sample.runtimeMs };
  }
  return next;
}

export function quietMs(memory: ProgressMemory, sample: MetricsSample, agent: string): number {
  const state = sample.agents[agent];
  const since = memory[agent]?.sinceMs;
  return state?.working && since !== undefined ? Math.max(0, sample.runtimeMs - since) : 0;
}

export function readingOf(limits: ResolvedLimits, memory: ProgressMemory, sample: MetricsSample): MonitorReading {
  const { agents, ...measured } = sample;
  const quietMinutes: Record<string, number> = {};
  let longest = 0;
  for (const agent of Object.keys(agents)) {
    const quiet = quietMs(memory, sample, agent);
    if (agents[agent]?.working) quietMinutes[agent] = Math.floor(quiet / 60_000);
    longest = Math.max(longest, quiet);
  }
  const health = healthScore({
    callsSent: sample.callsSent,
    callErrors: sample.callErrors,
    maxErrorRate: limits.maxErrorRate,
    consecutiveErrors: sample.consecutiveErrors,
    maxConsecutiveErrors: limits.maxConsecutiveErrors,
    budgetShare: budgetShare({ tokens: sample.tokensUsed, costUsd: sample.costUsd, runtimeMs: sample.runtimeMs }, limits),
    contextShare: sample.contextTokens / limits.maxContextTokens,
    stagnationShare: longest / limits.stagnationMs,
    openAlerts: sample.openAlerts,
  });
  return { ...measured, health, quietMinutes };
}

export interface Breach {
  condition: StopCondition;
  outcome: Outcome;
  reason: string;
  /** The limit, in its setting's unit. */
  limit: number;
}

const errorRateOf = (reading: MonitorReading): number | null =>
  reading.callsSent >= MIN_CALLS_FOR_ERROR_RATE ? reading.callErrors / reading.callsSent : null;

const number = groupDigits;

/** The first stopping condition the reading meets, in the order a person would want to hear them. */
export function breachOf(reading: MonitorReading, limits: ResolvedLimits): Breach | null {
  if (reading.tokensUsed >= limits.maxTokensTotal) {
    return { condition: 'tokens', outcome: 'budget_exhausted', limit: limits.maxTokensTotal, reason: `token budget reached: ${number(reading.tokensUsed)} of ${number(limits.maxTokensTotal)} (limits.max_tokens_total)` };
  }
  if (limits.maxCostUsd !== null && reading.costUsd >= limits.maxCostUsd) {
    return { condition: 'cost', outcome: 'budget_exhausted', limit: limits.maxCostUsd, reason: `cost budget reached: $${reading.costUsd.toFixed(2)} of $${limits.maxCostUsd} (limits.max_cost_usd)` };
  }
  if (reading.runtimeMs >= limits.maxRuntimeMs) {
    const hours = limits.maxRuntimeMs / 3_600_000;
    return { condition: 'runtime', outcome: 'budget_exhausted', limit: hours, reason: `runtime limit reached: ${(reading.runtimeMs / 3_600_000).toFixed(2)} h of ${hours} h (limits.max_runtime_hours)` };
  }
  if (reading.contextTokens >= CONTEXT_STOP_AT * limits.maxContextTokens) {
    return {
      condition: 'context', outcome: 'budget_exhausted', limit: limits.maxContextTokens,
      reason: `context at ${Math.round((100 * reading.contextTokens) / limits.maxContextTokens)}% of its limit: a prompt of ${number(reading.contextTokens)} tokens, limits.max_context_tokens ${number(limits.maxContextTokens)}`,
    };
  }
  if (limits.maxConsecutiveErrors > 0 && reading.consecutiveErrors >= limits.maxConsecutiveErrors) {
    return { condition: 'consecutive_errors', outcome: 'failed', limit: limits.maxConsecutiveErrors, reason: `${reading.consecutiveErrors} model calls in a row failed (limits.max_consecutive_errors ${limits.maxConsecutiveErrors})` };
  }
  const rate = errorRateOf(reading);
  if (rate !== null && rate > limits.maxErrorRate) {
    return { condition: 'error_rate', outcome: 'failed', limit: limits.maxErrorRate, reason: `error rate ${rate.toFixed(2)} above ${limits.maxErrorRate} (limits.max_error_rate): ${reading.callErrors} of ${reading.callsSent} model calls failed` };
  }
  if (limits.minHealthScore > 0 && reading.health.score < limits.minHealthScore) {
    const worst = Object.entries(reading.health.lost).filter(([, points]) => points > 0).map(([factor, points]) => `${factor} -${points}`).join(', ');
    return { condition: 'health', outcome: 'failed', limit: limits.minHealthScore, reason: `health ${reading.health.score} below limits.min_health_score ${limits.minHealthScore} (${worst})` };
  }
  return null;
}

export interface Warning {
  /** What is de-duplicated: one alert per key within the window. */
  key: string;
  level: 'warning' | 'critical';
  kind: string;
  message: string;
}

/** Every warning the reading holds now (raised or not: de-duplication is the chart's). */
export function warningsOf(reading: MonitorReading, limits: ResolvedLimits): Warning[] {
  const found: Warning[] = [];
  const warn = (kind: string, message: string, level: Warning['level'] = 'warning') => found.push({ key: `${kind}:${level}`, level, kind, message });
  const share = (used: number, limit: number) => `${Math.round((100 * used) / limit)}%`;
  if (reading.tokensUsed >= WARN_AT * limits.maxTokensTotal) warn('tokens', `${number(reading.tokensUsed)} of ${number(limits.maxTokensTotal)} tokens used (${share(reading.tokensUsed, limits.maxTokensTotal)})`);
  if (limits.maxCostUsd !== null && reading.costUsd >= WARN_AT * limits.maxCostUsd) warn('cost', `$${reading.costUsd.toFixed(2)} of $${limits.maxCostUsd} spent`);
  if (reading.runtimeMs >= WARN_AT * limits.maxRuntimeMs) warn('runtime', `runtime ${(reading.runtimeMs / 3_600_000).toFixed(2)} h, ${share(reading.runtimeMs, limits.maxRuntimeMs)} of limits.max_runtime_hours`);
  if (reading.contextTokens >= WARN_AT * limits.maxContextTokens) {
    warn('context', `a prompt of ${number(reading.contextTokens)} tokens is ${share(reading.contextTokens, limits.maxContextTokens)} of limits.max_context_tokens; the run stops at ${CONTEXT_STOP_AT * 100}%`);
  }
  const rate = errorRateOf(reading);
  if (rate !== null && rate >= limits.maxErrorRate / 2) warn('error_rate', `error rate ${rate.toFixed(2)}: ${reading.callErrors} of ${reading.callsSent} model calls failed (the run stops above ${limits.maxErrorRate})`);
  if (limits.maxConsecutiveErrors > 0 && reading.consecutiveErrors > 0) {
    warn('consecutive_errors', `${reading.consecutiveErrors} model call(s) in a row failed; the run stops at ${limits.maxConsecutiveErrors}`);
  }
  if (reading.health.band !== 'healthy') {
    warn('health', `health ${reading.health.score} (${reading.health.band})`, reading.health.band === 'critical' ? 'critical' : 'warning');
  }
  if (reading.forecast && !reading.forecast.rough && forecastPasses(reading.forecast, limits) !== null) {
    warn('forecast', `the forecast passes the budget: ~${number(reading.forecast.tokensAtFinish)} tokens ($${reading.forecast.costAtFinish.toFixed(2)}) to finish ${reading.forecast.tasksLeft} task(s)`);
  }
  return found;
}

/** Working agents without progress for `stagnation_minutes`. */
export function stagnantAgents(memory: ProgressMemory, sample: MetricsSample, limits: ResolvedLimits): string[] {
  return Object.keys(sample.agents).filter((agent) => sample.agents[agent]?.working === true && quietMs(memory, sample, agent) >= limits.stagnationMs);
}

/** Whether an alert last raised at `last` may be raised again at `at`. */
export function dueAgain(last: string | undefined, at: string, windowMs: number): boolean {
  if (last === undefined) return true;
  return windowMs > 0 && Date.parse(at) - Date.parse(last) >= windowMs;
}
