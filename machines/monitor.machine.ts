import { assign, enqueueActions, fromCallback, sendParent, setup, type EventObject } from 'xstate';
import type { AgentStagnant, Outcome } from './events.ts';


/** One measurement, taken by the ticker outside the machine (the machine has no clock). */
export interface MetricsSample {
  at: string;
  runtimeMs: number;
  tokensUsed: number;
  costUsd: number;
  callsSent: number;
  callErrors: number;
  /** Input tokens of the largest prompt sent so far. */
  contextTokens: number;
  /**
   * Per actor that does work (`moderator`, `techlead-1`, ..., `everThinker`), by its systemId:
   * is it in a work state, and for how long has it shown no progress.
   */
  agents: Record<string, { working: boolean; idleMs: number }>;
}

export interface MonitorLimits {
  maxTokensTotal: number;
  maxCostUsd: number | null;
  maxRuntimeMs: number;
  maxErrorRate: number;
  stagnationMs: number;
  maxContextTokens: number;
}

export interface MonitorInput {
  limits: MonitorLimits;
  intervalMs: number;
}

export type MonitorTick = { type: 'monitor.tick'; sample: MetricsSample };

interface MonitorContext {
  limits: MonitorLimits;
  intervalMs: number;
  last: Omit<MetricsSample, 'agents'> | null;
  /** Warnings already raised, so each is raised once. */
  warned: string[];
  /** Agents already told they are stagnant; cleared when they move again. */
  flagged: string[];
}

/** Error rates are meaningless on a handful of calls. */
export const minCallsForErrorRate = 5;
/** Share of a limit at which the monitor warns before it stops the run. */
export const warnAt = 0.8;

export function limitBreach(sample: MetricsSample, limits: MonitorLimits): { outcome: Outcome; reason: string } | null {
  if (sample.tokensUsed >= limits.maxTokensTotal) {
    return { outcome: 'budget_exhausted', reason: `token budget reached: ${sample.tokensUsed} of ${limits.maxTokensTotal}` };
  }
  if (limits.maxCostUsd !== null && sample.costUsd >= limits.maxCostUsd) {
    return { outcome: 'budget_exhausted', reason: `cost budget reached: $${sample.costUsd.toFixed(2)} of $${limits.maxCostUsd}` };
  }
  if (sample.runtimeMs >= limits.maxRuntimeMs) {
    return { outcome: 'budget_exhausted', reason: `runtime limit reached: ${(sample.runtimeMs / 3_600_000).toFixed(2)} h` };
  }
  if (sample.callsSent >= minCallsForErrorRate && sample.callErrors / sample.callsSent > limits.maxErrorRate) {
    return { outcome: 'failed', reason: `error rate ${(sample.callErrors / sample.callsSent).toFixed(2)} above ${limits.maxErrorRate}` };
  }
  return null;
}

export function warnings(sample: MetricsSample, limits: MonitorLimits): { kind: string; message: string }[] {
  const found: { kind: string; message: string }[] = [];
  if (sample.tokensUsed >= warnAt * limits.maxTokensTotal) {
    found.push({ kind: 'tokens', message: `${sample.tokensUsed} of ${limits.maxTokensTotal} tokens used` });
  }
  if (limits.maxCostUsd !== null && sample.costUsd >= warnAt * limits.maxCostUsd) {
    found.push({ kind: 'cost', message: `$${sample.costUsd.toFixed(2)} of $${limits.maxCostUsd} spent` });
  }
  if (sample.runtimeMs >= warnAt * limits.maxRuntimeMs) found.push({ kind: 'runtime', message: 'runtime above 80% of its limit' });
  if (sample.contextTokens > limits.maxContextTokens) {
    found.push({ kind: 'context', message: `a prompt of ${sample.contextTokens} tokens exceeds max_context_tokens ${limits.maxContextTokens}` });
  }
  return found;
}

function stagnantAgents(sample: MetricsSample, limits: MonitorLimits): string[] {
  return Object.entries(sample.agents)
    .filter(([, state]) => state.working && state.idleMs >= limits.stagnationMs)
    .map(([agent]) => agent);
}

/**
 * The Monitor agent: on every tick checks tokens, cost, runtime, error rate, context size and
 * stagnation; warns at 80% of a limit, stops the run at 100%, and tells a stagnant agent so.
 */
export const monitorMachine = setup({
  types: {
    context: {} as MonitorContext,
    events: {} as MonitorTick,
    input: {} as MonitorInput,
  },
  actors: {
    // The composition root provides the real ticker; it samples the store and the actor system.
    ticker: fromCallback<EventObject, { intervalMs: number }>(() => () => {}),
  },
  actions: {
    record: assign({
      last: ({ event }) => {
        const { agents: _agents, ...rest } = event.sample;
        return rest;
      },
    }),
    stopRun: sendParent(({ context, event }) => ({ type: 'monitor.limit_reached', ...(limitBreach(event.sample, context.limits) ?? { outcome: 'failed', reason: 'limit' }) })),
    raiseWarnings: enqueueActions(({ context, event, enqueue }) => {
      const fresh = warnings(event.sample, context.limits).filter((warning) => !context.warned.includes(warning.kind));
      for (const warning of fresh) enqueue.sendParent({ type: 'health.alert', level: 'warning', ...warning });
      if (fresh.length > 0) enqueue.assign({ warned: [...context.warned, ...fresh.map((warning) => warning.kind)] });
    }),
    flagStagnant: enqueueActions(({ context, event, enqueue, system }) => {
      const stagnant = stagnantAgents(event.sample, context.limits);
      for (const agent of stagnant.filter((name) => !context.flagged.includes(name))) {
        const idleMinutes = Math.floor((event.sample.agents[agent]?.idleMs ?? 0) / 60_000);
        const notice: AgentStagnant = { type: 'agent.stagnant', idleMinutes };
        enqueue.sendTo(system.get(agent), notice);
      }
      enqueue.assign({ flagged: stagnant });
    }),
  },
  guards: {
    limitReached: ({ context, event }) => limitBreach(event.sample, context.limits) !== null,
    hasWarnings: ({ context, event }) => context.warned.length > 0 || warnings(event.sample, context.limits).length > 0,
  },
}).createMachine({
  id: 'monitor',
  description: 'Watches tokens, cost, runtime, error rate and stagnation; stops the run at a limit.',
  context: ({ input }) => ({ limits: input.limits, intervalMs: input.intervalMs, last: null, warned: [], flagged: [] }),
  initial: 'running',
  states: {
    running: {
      invoke: { id: 'ticker', src: 'ticker', input: ({ context }) => ({ intervalMs: context.intervalMs }) },
      initial: 'watching',
      on: {
        'monitor.tick': [
          { guard: 'limitReached', target: 'stopped', actions: ['record', 'stopRun'] },
          { guard: 'hasWarnings', target: '.alerting', actions: ['record', 'raiseWarnings', 'flagStagnant'] },
          { target: '.watching', actions: ['record', 'flagStagnant'] },
        ],
      },
      states: {
        watching: { description: 'All measures within their limits.' },
        alerting: { description: 'At least one measure is above 80% of its limit.' },
      },
    },
    stopped: { description: 'A limit was reached and the run was told to stop.' },
  },
});
