import type { Store, UsageLine } from '../services/store/store.ts';
import { groupDigits } from '../protocol/numbers.ts';

/** What a run amounted to: printed at the end, and as one JSON line with --json. */
export interface RunSummary {
  runId: string;
  target: string;
  outcome: string | null;
  reason: string | null;
  phase: string;
  provider: string | null;
  tasksTotal: number;
  tasksCompleted: number;
  prsMerged: number;
  tokensUsed: number;
  costUsd: number;
  /** Model calls actually sent over the whole run, across resumes (replies from the journal are not counted). */
  modelCalls: number;
  /** Time the run was running, summed over every process that drove it. */
  durationMs: number;
  sessions: number;
  /** Calls sent, tokens and cost per agent and per task. */
  byAgent: Record<string, UsageLine>;
  byTask: Record<string, UsageLine>;
}

export function summarize(store: Store, runId: string): RunSummary {
  const run = store.runs.get(runId);
  if (!run) throw new Error(`unknown run ${runId}`);
  const tasks = store.tasks.list(runId);
  const prs = store.pullRequests.list(runId);
  const totals = store.calls.totals(runId);
  const settings = run.settings as { config?: { model?: { provider?: string } } } | null;
  return {
    runId,
    target: run.target,
    outcome: run.outcome,
    reason: run.reason,
    phase: run.phase,
    provider: settings?.config?.model?.provider ?? null,
    tasksTotal: tasks.length,
    tasksCompleted: tasks.filter((task) => task.status === 'merged').length,
    prsMerged: prs.filter((pr) => pr.status === 'merged').length,
    tokensUsed: totals.tokensUsed,
    costUsd: Math.round(totals.costUsd * 10_000) / 10_000,
    modelCalls: totals.callsSent,
    durationMs: run.activeMs,
    sessions: run.sessions,
    ...store.calls.usageBreakdown(runId),
  };
}

export function formatSummary(summary: RunSummary): string {
  const lines = [
    `run ${summary.runId}: ${summary.outcome ?? `not finished (${summary.phase})`}${summary.reason ? ` (${summary.reason})` : ''}`,
    `  tasks merged  ${summary.tasksCompleted}/${summary.tasksTotal}, PRs merged ${summary.prsMerged}`,
    `  model calls   ${summary.modelCalls} sent via ${summary.provider ?? 'no provider'}, ${groupDigits(summary.tokensUsed)} tokens${summary.costUsd > 0 ? `, $${summary.costUsd.toFixed(4)}` : ''}`,
    ...Object.entries(summary.byAgent).map(
      ([agent, line]) => `    ${agent.padEnd(12)} ${line.calls} calls, ${groupDigits(line.tokens)} tokens${line.costUsd > 0 ? `, $${line.costUsd.toFixed(4)}` : ''}`,
    ),
    `  time          ${(summary.durationMs / 1000).toFixed(1)} s over ${summary.sessions} session(s)`,
    `  target        ${summary.target}`,
  ];
  return lines.join('\n');
}
