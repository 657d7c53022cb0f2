import { assign, enqueueActions, fromCallback, sendParent, setup, type EventObject } from 'xstate';
import { forecastPasses } from '../protocol/forecast.ts';
import type { AgentStagnant, DeadlineClear, DeadlineSet, ForecastOverBudget, HealthAlert, LimitReached, QuestionTimeout } from './events.ts';
import {
  advanceProgress, breachOf, dueAgain, quietMs, readingOf, resolveLimits, stagnantAgents, warningsOf,
  type MetricsSample, type MonitorLimits, type MonitorReading, type ProgressMemory, type ResolvedLimits,
} from './monitor-rules.ts';

export type { AgentSample, MetricsSample, MonitorLimits, MonitorReading } from './monitor-rules.ts';
export { MIN_CALLS_FOR_ERROR_RATE as minCallsForErrorRate } from '../protocol/health.ts';
export { WARN_AT as warnAt, breachOf, warningsOf } from './monitor-rules.ts';


export interface MonitorInput {
  limits: MonitorLimits;
  intervalMs: number;
}

export type MonitorTick = { type: 'monitor.tick'; sample: MetricsSample };
/** Sent to the ticker: measure now instead of at the next interval. */
export type TickerNow = { type: 'ticker.now' };

/** A question's deadline: `due` is set from the first measurement after it was armed (the chart has no clock). */
interface Deadline {
  id: string;
  ms: number;
  due: string | null;
}

interface MonitorContext {
  limits: ResolvedLimits;
  intervalMs: number;
  /** The latest reading: the metrics series, the health score and the dashboard read it. */
  last: MonitorReading | null;
  /** When each alert (by key) was last raised, for the de-duplication window. */
  raised: Record<string, string>;
  progress: ProgressMemory;
  /** Agents already told they are stagnant; cleared when they move again. */
  flagged: string[];
  deadlines: Deadline[];
  /** The budget the forecast was found to pass, so the orchestrator is told once per budget. */
  forecastTold: { maxTokensTotal: number; maxCostUsd: number | null } | null;
}

type MonitorEvent = MonitorTick | DeadlineSet | DeadlineClear;

/** The reading of a sample; advancing the progress clocks twice with one sample changes nothing, so guards and actions agree. */
const reading = (context: MonitorContext, sample: MetricsSample) => readingOf(context.limits, advanceProgress(context.progress, sample), sample);

/**
 * The Monitor agent. On every tick it measures the run (tokens, cost, runtime, context, errors,
 * each agent's progress), scores its health, stops the run at any limit, raises warnings once per
 * window, tells an agent without progress that it is stagnant, keeps the deadlines of questions to
 * people, and tells the orchestrator when the forecast passes the budget.
 */
export const monitorMachine = setup({
  types: {
    context: {} as MonitorContext,
    events: {} as MonitorEvent,
    input: {} as MonitorInput,
  },
  actors: {
    // The composition root provides the real ticker; it samples the store and the actor system.
    ticker: fromCallback<EventObject, { intervalMs: number }>(() => () => {}),
  },
  actions: {
    record: assign(({ context }, sample: MetricsSample) => {
      const progress = advanceProgress(context.progress, sample);
      const next = readingOf(context.limits, progress, sample);
      // A deadline armed since the last tick starts counting now.
      const deadlines = context.deadlines.map((deadline) => (deadline.due === null ? { ...deadline, due: new Date(Date.parse(sample.at) + deadline.ms).toISOString() } : deadline));
      return { progress, last: next, deadlines };
    }),
    stopRun: enqueueActions(({ context, enqueue }, sample: MetricsSample) => {
      const breach = breachOf(reading(context, sample), context.limits);
      if (!breach) return;
      const alert: HealthAlert = { type: 'health.alert', level: 'critical', kind: breach.condition, message: breach.reason, at: sample.at };
      const stop: LimitReached = { type: 'monitor.limit_reached', outcome: breach.outcome, reason: breach.reason, condition: breach.condition, limit: breach.limit };
      enqueue.sendParent(alert);
      enqueue.sendParent(stop);
    }),
    raiseWarnings: enqueueActions(({ context, enqueue }, sample: MetricsSample) => {
      const due = warningsOf(reading(context, sample), context.limits).filter((warning) => dueAgain(context.raised[warning.key], sample.at, context.limits.alertWindowMs));
      if (due.length === 0) return;
      for (const warning of due) enqueue.sendParent({ type: 'health.alert', level: warning.level, kind: warning.kind, message: warning.message, at: sample.at } satisfies HealthAlert);
      enqueue.assign({ raised: { ...context.raised, ...Object.fromEntries(due.map((warning) => [warning.key, sample.at])) } });
    }),
    flagStagnant: enqueueActions(({ context, enqueue, system }, sample: MetricsSample) => {
      const progress = advanceProgress(context.progress, sample);
      const stagnant = stagnantAgents(progress, sample, context.limits);
      const fresh = stagnant.filter((agent) => !context.flagged.includes(agent));
      if (fresh.length === 0 && stagnant.length === context.flagged.length) return;
      for (const agent of fresh) {
        const minutes = Math.floor(quietMs(progress, sample, agent) / 60_000);
        const notice: AgentStagnant = { type: 'agent.stagnant', idleMinutes: minutes };
        enqueue.sendTo(system.get(agent), notice);
        enqueue.sendParent({ type: 'health.alert', level: 'warning', kind: 'stagnation', message: `${agent} made no progress for ${minutes} min (limits.stagnation_minutes); it is told it is stagnant`, at: sample.at } satisfies HealthAlert);
        // Whatever the orchestrator decides (a retry with another approach, a skip), the agent gets a full period again.
        const memory = progress[agent];
        if (memory) progress[agent] = { ...memory, sinceMs: sample.runtimeMs };
      }
      enqueue.assign({ flagged: stagnant, progress });
    }),
    expireDeadlines: enqueueActions(({ context, enqueue }, sample: MetricsSample) => {
      const now = Date.parse(sample.at);
      const expired = context.deadlines.filter((deadline) => deadline.due !== null && Date.parse(deadline.due) <= now);
      if (expired.length === 0) return;
      for (const deadline of expired) enqueue.sendParent({ type: 'question.timeout', id: deadline.id } satisfies QuestionTimeout);
      enqueue.assign({ deadlines: context.deadlines.filter((deadline) => !expired.includes(deadline)) });
    }),
    tellForecast: enqueueActions(({ context, enqueue }, sample: MetricsSample) => {
      const forecast = sample.forecast;
      const budget = { maxTokensTotal: context.limits.maxTokensTotal, maxCostUsd: context.limits.maxCostUsd };
      if (!forecast || forecast.rough) return;
      const passes = forecastPasses(forecast, budget);
      const told = context.forecastTold;
      if (passes === null || (told && told.maxTokensTotal === budget.maxTokensTotal && told.maxCostUsd === budget.maxCostUsd)) return;
      const event: ForecastOverBudget = { type: 'forecast.over_budget', budget: passes, tokensAtFinish: forecast.tokensAtFinish, costAtFinish: forecast.costAtFinish, tasksLeft: forecast.tasksLeft, ...budget };
      enqueue.sendParent(event);
      enqueue.assign({ forecastTold: budget });
    }),
    armDeadline: enqueueActions(({ context, enqueue }, params: { id: string; ms: number }) => {
      enqueue.assign({ deadlines: [...context.deadlines.filter((deadline) => deadline.id !== params.id), { id: params.id, ms: params.ms, due: null }] });
      // Measure now, so the deadline counts from the moment it was armed, not from the next interval.
      enqueue.sendTo('ticker', { type: 'ticker.now' } satisfies TickerNow);
    }),
    clearDeadline: assign(({ context }, id: string) => ({ deadlines: context.deadlines.filter((deadline) => deadline.id !== id) })),
  },
  guards: {
    limitReached: ({ context }, sample: MetricsSample) => breachOf(reading(context, sample), context.limits) !== null,
    hasWarnings: ({ context }, sample: MetricsSample) => warningsOf(reading(context, sample), context.limits).length > 0,
  },
}).createMachine({
  id: 'monitor',
  description: 'Measures the run on every tick: health, every limit, progress, deadlines and the forecast; stops the run at a limit.',
  context: ({ input }) => ({
    limits: resolveLimits(input.limits),
    intervalMs: input.intervalMs,
    last: null,
    raised: {},
    progress: {},
    flagged: [],
    deadlines: [],
    forecastTold: null,
  }),
  initial: 'running',
  states: {
    running: {
      invoke: { id: 'ticker', src: 'ticker', input: ({ context }) => ({ intervalMs: context.intervalMs }) },
      initial: 'watching',
      on: {
        'monitor.tick': [
          {
            guard: { type: 'limitReached', params: ({ event }) => event.sample },
            target: 'stopped',
            actions: [{ type: 'record', params: ({ event }) => event.sample }, { type: 'stopRun', params: ({ event }) => event.sample }],
          },
          {
            guard: { type: 'hasWarnings', params: ({ event }) => event.sample },
            target: '.alerting',
            actions: [
              { type: 'record', params: ({ event }) => event.sample },
              { type: 'raiseWarnings', params: ({ event }) => event.sample },
              { type: 'flagStagnant', params: ({ event }) => event.sample },
              { type: 'expireDeadlines', params: ({ event }) => event.sample },
              { type: 'tellForecast', params: ({ event }) => event.sample },
            ],
          },
          {
            target: '.watching',
            actions: [
              { type: 'record', params: ({ event }) => event.sample },
              { type: 'flagStagnant', params: ({ event }) => event.sample },
              { type: 'expireDeadlines', params: ({ event }) => event.sample },
              { type: 'tellForecast', params: ({ event }) => event.sample },
            ],
          },
        ],
        'deadline.set': { actions: { type: 'armDeadline', params: ({ event }) => ({ id: event.id, ms: event.ms }) } },
        'deadline.clear': { actions: { type: 'clearDeadline', params: ({ event }) => event.id } },
      },
      states: {
        watching: { description: 'Every measure within its limits and the run healthy.' },
        alerting: { description: 'A measure is near its limit (80%), errors are piling up, or the run is not healthy.' },
      },
    },
    stopped: { description: 'A limit was reached and the run was told to stop.' },
  },
});
