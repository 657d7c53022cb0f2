import { assign, fromPromise, sendParent, setup } from 'xstate';
import { errorCode, errorMessage, type AgentFailed, type AgentReset, type AgentRetry, type AgentStagnant, type AgentStalled, type ImproveRequested, type NewTaskRef } from './events.ts';

export interface EverThinkerInput {
  /** Proposals scoring below this (impact*2 - effort - risk) are not worth a task. */
  minPriority: number;
  /** A cycle before this one measured below this: returns diminish, the cycles end. */
  minImprovement?: number | undefined;
}

export interface MeasureInput {
  cycle: number;
}

export interface MeasureOutput {
  /** How much the cycle before measurably improved the project; null for the first cycle, or when nothing could be measured. */
  magnitude: number | null;
}

export interface AnalyzeInput {
  cycle: number;
  minPriority: number;
}

export interface AnalyzeOutput {
  /** Proposals at or above the threshold, already stored as tasks. */
  accepted: NewTaskRef[];
  considered: number;
  bestPriority: number | null;
}

interface EverThinkerContext {
  minPriority: number;
  minImprovement: number;
  cycle: number;
  last: AnalyzeOutput | null;
  measured: MeasureOutput | null;
}

type EverThinkerEvent = ImproveRequested | AgentStagnant | AgentRetry | AgentReset;

/**
 * The Ever-Thinker: once the planned work is merged, looks at the result from six angles
 * (performance, code quality, UX, testing, documentation, architecture), ranks what it finds
 * and feeds the worthwhile ideas back as tasks, until returns diminish.
 */
export const everThinkerMachine = setup({
  types: {
    context: {} as EverThinkerContext,
    events: {} as EverThinkerEvent,
    input: {} as EverThinkerInput,
  },
  actors: {
    analyze: fromPromise<AnalyzeOutput, AnalyzeInput>(() => Promise.reject(new Error('actor analyze is not provided'))),
    // The composition root provides the measurement (actors/improvement-signals.ts). Without one,
    // nothing is measured and the cycles end on the proposals' priority and their count alone.
    measure: fromPromise<MeasureOutput, MeasureInput>(async () => ({ magnitude: null })),
  },
  actions: {
    propose: sendParent(({ context }) => ({ type: 'improvements.proposed', cycle: context.cycle, tasks: context.last?.accepted ?? [] })),
    giveUp: sendParent(({ context }) => ({ type: 'improvements.exhausted', cycle: context.cycle, bestPriority: context.last?.bestPriority ?? null, why: 'min_priority' as const })),
    diminish: sendParent(({ context }, measured: MeasureOutput) => ({
      type: 'improvements.exhausted',
      cycle: context.cycle,
      bestPriority: null,
      why: 'diminishing_returns' as const,
      magnitude: measured.magnitude,
    })),
    reportFailure: sendParent(({ self }, params: { error: unknown }) => ({
      type: 'agent.failed',
      agent: 'everThinker',
      actor: self.id,
      taskId: null,
      code: errorCode(params.error),
      message: errorMessage(params.error),
    }) satisfies AgentFailed),
    // Its actor id is where the orchestrator sends the retry (`agent.retry` → measuring again).
    reportStall: sendParent(({ self }) => ({ type: 'agent.stalled', agent: 'everThinker', actor: self.id, taskId: null }) satisfies AgentStalled),
  },
  guards: {
    diminishing: ({ context }, measured: MeasureOutput) => measured.magnitude !== null && measured.magnitude < context.minImprovement,
    worthwhile: ({ context }) =>
      (context.last?.accepted.length ?? 0) > 0 && (context.last?.bestPriority ?? Number.NEGATIVE_INFINITY) >= context.minPriority,
  },
}).createMachine({
  id: 'everThinker',
  description: 'Finds improvements after the planned work and stops on measured diminishing returns.',
  context: ({ input }) => ({ minPriority: input.minPriority, minImprovement: input.minImprovement ?? 0.05, cycle: 0, last: null, measured: null }),
  initial: 'idle',
  states: {
    idle: {
      description: 'Waiting for the planned work to finish.',
      on: { 'improve.requested': { target: 'measuring', actions: assign({ cycle: ({ event }) => event.cycle }) } },
    },
    measuring: {
      description: "Measures what the cycle before changed (tests passing, test count, lint findings, coverage, review scores); too little ends the cycles.",
      invoke: {
        id: 'measure',
        src: 'measure',
        input: ({ context }) => ({ cycle: context.cycle }),
        onDone: [
          { guard: { type: 'diminishing', params: ({ event }) => event.output }, target: 'cooling_down', actions: { type: 'diminish', params: ({ event }) => event.output } },
          { target: 'analyzing', actions: assign({ measured: ({ event }) => event.output }) },
        ],
        onError: { target: 'cooling_down', actions: { type: 'reportFailure', params: ({ event }) => ({ error: event.error }) } },
      },
      on: { 'agent.stagnant': { target: 'cooling_down', actions: 'reportStall' } },
    },
    analyzing: {
      description: 'Reviews the merged code from six angles and ranks proposals by impact, effort and risk.',
      invoke: {
        id: 'analyze',
        src: 'analyze',
        input: ({ context }) => ({ cycle: context.cycle, minPriority: context.minPriority }),
        onDone: { target: 'proposing', actions: assign({ last: ({ event }) => event.output }) },
        onError: { target: 'cooling_down', actions: { type: 'reportFailure', params: ({ event }) => ({ error: event.error }) } },
      },
      on: { 'agent.stagnant': { target: 'cooling_down', actions: 'reportStall' } },
    },
    proposing: {
      description: 'Feeds worthwhile proposals back as tasks, or reports diminishing returns.',
      always: [{ guard: 'worthwhile', target: 'cooling_down', actions: 'propose' }, { target: 'cooling_down', actions: 'giveUp' }],
    },
    cooling_down: {
      description: 'Waits until the proposed tasks are done before thinking again.',
      on: {
        'improve.requested': { target: 'measuring', actions: assign({ cycle: ({ event }) => event.cycle }) },
        'agent.retry': 'measuring',
      },
    },
  },
});
