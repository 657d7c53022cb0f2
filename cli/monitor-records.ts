import type { MonitorReading } from '../machines/monitor.machine.ts';
import { forecastRun, type Forecast } from '../protocol/forecast.ts';
import type { AlertRecord, JournalMessage, MetricsRow } from '../services/store/types.ts';
import type { Store } from '../services/store/store.ts';

/**
 * What the Monitor's chart says, as rows: its alerts (the `health.alert` messages journaled with
 * a checkpoint) and its latest reading (one metrics row per tick). Written in the checkpoint's own
 * transaction, so the tables never disagree with the journal.
 */

export function alertsOf(runId: string, messages: readonly JournalMessage[]): AlertRecord[] {
  return messages
    .filter((message) => message.type === 'health.alert')
    .map((message) => {
      const payload = message.payload as { level?: unknown; kind?: unknown; message?: unknown };
      return {
        runId,
        level: payload.level === 'critical' ? 'critical' : 'warning',
        kind: String(payload.kind ?? 'health'),
        message: String(payload.message ?? ''),
        source: 'monitor',
      };
    });
}

export function metricsRowOf(reading: MonitorReading): MetricsRow {
  return {
    at: reading.at,
    runtimeMs: reading.runtimeMs,
    tokensUsed: reading.tokensUsed,
    costUsd: reading.costUsd,
    callsSent: reading.callsSent,
    callErrors: reading.callErrors,
    contextTokens: reading.contextTokens,
    healthScore: reading.health.score,
    tasksMerged: reading.tasks.merged,
    tasksTotal: reading.tasks.total,
    forecastTokens: reading.forecast?.tokensAtFinish ?? null,
    forecastCostUsd: reading.forecast?.costAtFinish ?? null,
  };
}

/** The Monitor's latest reading from its chart's context, when it has ticked. */
export function readingOf(monitorContext: unknown): MonitorReading | null {
  const last = (monitorContext as { last?: unknown } | undefined)?.last;
  return last !== null && typeof last === 'object' && 'at' in last && 'health' in last ? (last as MonitorReading) : null;
}

/** The forecast from what the store holds now; `prior` stands in before any task finished (plan approval). */
export function forecastOf(store: Store, runId: string, prior?: { tokensPerTask: number; costPerTask: number }): Forecast | null {
  const totals = store.calls.totals(runId);
  const spend = store.calls.usageBreakdown(runId).byTask;
  return forecastRun(
    { tokens: totals.tokensUsed, costUsd: totals.costUsd },
    store.tasks.list(runId).map((task) => ({ status: task.status, tokens: spend[task.id]?.tokens ?? 0, costUsd: spend[task.id]?.costUsd ?? 0 })),
    prior,
  );
}

/**
 * Before any task finished, a task is guessed at three times what planning cost: its
 * implementation and its review each send about as much as the plan call did, and one revision
 * in three tasks. Said as a rough guess wherever it is shown, and never acted on.
 */
export function roughPrior(store: Store, runId: string): { tokensPerTask: number; costPerTask: number } | undefined {
  const plan = store.calls.usageBreakdown(runId).byAgent.moderator;
  if (!plan || plan.calls === 0) return undefined;
  return { tokensPerTask: Math.round((3 * plan.tokens) / plan.calls), costPerTask: (3 * plan.costUsd) / plan.calls };
}
