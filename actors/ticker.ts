import { fromCallback, type EventObject } from 'xstate';
import type { MetricsSample, MonitorTick } from '../machines/monitor.machine.ts';
import type { Slot } from '../machines/orchestrator.machine.ts';
import type { RunClock } from '../services/run-clock.ts';
import type { RunServices } from './run-services.ts';
import { AGENTS, agentOfActor } from '../protocol/agents.ts';

const restingStates = new Set(['idle', 'stagnant', 'cooling_down']);

/** The actors that do work, with the task each holds: the reviewers, the TechLeads, the Ever-Thinker. */
function workers(root: { getSnapshot(): { context?: unknown } } | undefined): Slot[] {
  const context = (root?.getSnapshot().context ?? {}) as { techleads?: Slot[]; reviewers?: Slot[] };
  return [...(context.reviewers ?? [{ id: 'moderator', taskId: null }]), ...(context.techleads ?? []), { id: 'everThinker', taskId: null }];
}

/**
 * The monitor's clock: every `intervalMs` it measures the run and sends `monitor.tick`.
 * An invoked callback (not an `after` delay) so it restarts by itself on resume (checkpoint rule 3).
 */
export function tickerActor(services: RunServices, clock: RunClock, now: () => number = Date.now) {
  return fromCallback<EventObject, { intervalMs: number }>(({ sendBack, input, system }) => {
    const sessionStart = now();
    const sample = (): MetricsSample => {
      const totals = services.store.totals(services.runId);
      const activity = services.store.lastActivityAt(services.runId);
      const calls = services.store.listModelCalls(services.runId);
      const at = now();
      const agents: MetricsSample['agents'] = {};
      for (const worker of workers(system.get('orchestrator'))) {
        const value = system.get(worker.id)?.getSnapshot().value as unknown;
        if (value === undefined) continue;
        const state = typeof value === 'string' ? value : JSON.stringify(value);
        const agent = agentOfActor(worker.id);
        // Its own messages, and the model calls of its task (or, between tasks, of its agent).
        const calledAs = worker.taskId !== null ? `task:${worker.taskId}` : agent ? AGENTS[agent].caller : null;
        const lastSeen = Math.max(sessionStart, Date.parse(activity[worker.id] ?? '') || 0, Date.parse(calledAs ? (activity[calledAs] ?? '') : '') || 0);
        agents[worker.id] = { working: !restingStates.has(state), idleMs: at - lastSeen };
      }
      return {
        at: new Date(at).toISOString(),
        runtimeMs: clock.flush(),
        tokensUsed: totals.tokensUsed,
        costUsd: totals.costUsd,
        callsSent: totals.callsSent,
        callErrors: totals.callErrors,
        contextTokens: calls.reduce((largest, call) => Math.max(largest, call.inputTokens), 0),
        agents,
      };
    };
    const timer = setInterval(() => {
      const tick: MonitorTick = { type: 'monitor.tick', sample: sample() };
      sendBack(tick);
    }, input.intervalMs);
    return () => clearInterval(timer);
  });
}
