import { fromCallback, type EventObject } from 'xstate';
import { watchedAgents, type MetricsSample, type MonitorTick } from '../machines/monitor.machine.ts';
import type { RunClock } from '../services/run-clock.ts';
import type { RunServices } from './run-services.ts';
import { AGENTS } from '../protocol/agents.ts';

const restingStates = new Set(['idle', 'stagnant', 'cooling_down']);

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
      for (const agent of watchedAgents) {
        const value = system.get(agent)?.getSnapshot().value as unknown;
        const state = typeof value === 'string' ? value : JSON.stringify(value);
        const lastSeen = Math.max(
          sessionStart,
          Date.parse(activity[agent] ?? '') || 0,
          Date.parse(activity[AGENTS[agent].caller] ?? '') || 0,
        );
        agents[agent] = { working: !restingStates.has(state), idleMs: at - lastSeen };
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
