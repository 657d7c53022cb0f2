import type { AnyActorRef } from 'xstate';
import type { AgentSample, MetricsSample } from '../machines/monitor.machine.ts';
import type { Slot } from '../machines/orchestrator.machine.ts';
import { agentOfActor } from '../protocol/agents.ts';
import { forecastRun } from '../protocol/forecast.ts';
import { FINISHED_STATUSES } from '../protocol/tasks.ts';
import type { RunClock } from '../services/run-clock.ts';
import { parseTestCounts } from '../services/test-signals.ts';
import { worktreePath, type RunServices } from './run-services.ts';
import type { AnyActorSystem, TickerOptions } from './ticker.ts';

const restingStates = new Set(['idle', 'stagnant', 'cooling_down']);

function stateOf(ref: AnyActorRef | undefined): string {
  const value = ref?.getSnapshot().value as unknown;
  return typeof value === 'string' ? value : JSON.stringify(value ?? 'stopped');
}

/** The task a TechLead holds, from its chart's context. */
function heldTask(ref: AnyActorRef | undefined): { taskId: string; attempt: number; approach?: number } | null {
  const task = (ref?.getSnapshot() as { context?: { task?: unknown } } | undefined)?.context?.task;
  return task !== null && typeof task === 'object' && 'taskId' in task && typeof task.taskId === 'string' ? (task as { taskId: string; attempt: number; approach?: number }) : null;
}

/** The actors that do work, by systemId: the reviewers (`moderator`, `moderator-2`, ...), the TechLeads (`techlead-1`, ...), the Ever-Thinker. */
function workers(system: AnyActorSystem): Slot[] {
  const context = ((system.get('orchestrator') as AnyActorRef | undefined)?.getSnapshot().context ?? {}) as { techleads?: Slot[]; reviewers?: Slot[] };
  return [...(context.reviewers ?? [{ id: 'moderator', taskId: null }]), ...(context.techleads ?? []), { id: 'everThinker', taskId: null }];
}

/**
 * What an agent has produced so far, as one comparable mark. Progress is what the run is for:
 * tasks merged, reviews written (findings raised or resolved), a worktree's diff changing, tests
 * newly passing, cycles analysed; model calls and messages are activity, not progress.
 */
async function progressOf(services: RunServices, worker: Slot, ref: AnyActorRef | undefined): Promise<string> {
  const { store, runId } = services;
  const agent = agentOfActor(worker.id);
  if (agent === 'techlead') {
    const task = heldTask(ref);
    if (task === null) return 'no task';
    const tests = store.testRuns.latest(runId, task.taskId, task.attempt);
    const passing = tests ? (parseTestCounts(tests.output)?.passed ?? (tests.passed ? 1 : 0)) : -1;
    // A worktree not made yet (or removed after the merge) has no size: that is a state, not an error.
    const work = await services.git.workSize(worktreePath(services, task.taskId)).catch(() => null);
    const size = work ? `${work.lines}+${work.untrackedFiles}/${work.untrackedBytes}` : 'none';
    return `${task.taskId}#${task.attempt}.${task.approach ?? 0} tests ${passing} work ${size}`;
  }
  const tasks = store.tasks.list(runId);
  const merged = tasks.filter((task) => task.status === 'merged').length;
  // A reviewer with a PR in hand: its own review, so another reviewer's progress does not hide it.
  if (agent === 'moderator' && worker.taskId !== null) {
    const task = worker.taskId;
    return `reviewing ${task}: reviews ${store.reviews.list(runId).filter((review) => review.taskId === task).length}`;
  }
  if (agent === 'moderator') {
    const scoped = store.runs.get(runId)?.scope != null ? 1 : 0;
    return `scope ${scoped} tasks ${tasks.length} reviews ${store.reviews.list(runId).length} merged ${merged}`;
  }
  const analysed = store.effects.list(runId).filter((effect) => effect.status === 'done' && effect.stepKey.startsWith('ever-thinker:')).length;
  return `analysed ${analysed} tasks ${tasks.length} merged ${merged}`;
}

/**
 * The Monitor's measurement of a run: tokens, cost, runtime (over sessions), errors (in a row,
 * this session's), the largest prompt, open alerts, the tasks and the forecast to finish, and
 * each agent's state and progress. `sessionStart` bounds "in a row", so a resumed run (its cause
 * fixed) starts counting again.
 */
export function runSampler(services: RunServices, clock: RunClock, now: () => number = Date.now): Pick<TickerOptions, 'sample' | 'watch'> {
  const { store, runId } = services;
  const sessionStart = new Date(now()).toISOString();
  const sample = async (system: AnyActorSystem): Promise<MetricsSample> => {
    const agents: Record<string, AgentSample> = {};
    for (const worker of workers(system)) {
      const ref = system.get(worker.id) as AnyActorRef | undefined;
      if (!ref) continue;
      agents[worker.id] = { working: !restingStates.has(stateOf(ref)), progress: await progressOf(services, worker, ref) };
    }
    const totals = store.calls.totals(runId);
    const tasks = store.tasks.list(runId);
    const spend = store.calls.usageBreakdown(runId).byTask;
    return {
      at: new Date(now()).toISOString(),
      runtimeMs: clock.flush(),
      tokensUsed: totals.tokensUsed,
      costUsd: totals.costUsd,
      callsSent: totals.callsSent,
      callErrors: totals.callErrors,
      consecutiveErrors: store.calls.consecutiveErrors(runId, sessionStart),
      contextTokens: store.calls.largestPrompt(runId),
      openAlerts: store.alerts.countOpen(runId),
      tasks: { total: tasks.length, merged: tasks.filter((task) => task.status === 'merged').length },
      forecast: forecastRun(
        { tokens: totals.tokensUsed, costUsd: totals.costUsd },
        tasks.map((task) => ({ status: task.status, tokens: spend[task.id]?.tokens ?? 0, costUsd: spend[task.id]?.costUsd ?? 0 })),
      ),
      agents,
    };
  };
  // A failed call (errors in a row stop the run) and a task that ended (the forecast moves) are measured at once.
  const watch = (measureNow: () => void): (() => void) => {
    const finishedNow = () => store.tasks.list(runId).filter((task) => FINISHED_STATUSES.has(task.status)).length;
    let errorsInARow = store.calls.consecutiveErrors(runId, sessionStart);
    let finished = finishedNow();
    return store.onChange((change) => {
      if (change.table === 'model_calls') {
        const count = store.calls.consecutiveErrors(runId, sessionStart);
        if (count > errorsInARow) measureNow();
        errorsInARow = count;
      } else if (change.table === 'tasks' && change.runId === runId) {
        const count = finishedNow();
        if (count !== finished) measureNow();
        finished = count;
      }
    });
  };
  return { sample, watch };
}
