import { assign, fromPromise, sendParent, setup } from 'xstate';
import {
  errorCode, errorMessage,
  type AgentReset, type AgentRetry, type AgentStagnant, type AgentStalled, type TaskAssigned, type TaskFeedback,
} from './events.ts';
import { correlationId } from '../protocol/keys.ts';

export interface TaskStepInput {
  taskId: string;
  taskType: string;
  attempt: number;
  /** The task's branch: 1, 2 once re-implemented on a fresh branch (TaskRef.generation). */
  generation: number;
  /** 0 (or absent) for the first approach; n after the n-th restart for stagnation, which must try something else. */
  approach?: number;
}

export interface TestOutput {
  passed: boolean;
}

export interface SubmitInput extends TaskStepInput {
  testsPassed: boolean;
}

type WorkState = 'planning' | 'implementing' | 'addressing_feedback' | 'testing' | 'submitting';

interface TechLeadContext {
  task: TaskStepInput | null;
  testsPassed: boolean;
  stalledIn: WorkState | null;
}

type TechLeadEvent = TaskAssigned | TaskFeedback | AgentStagnant | AgentRetry | AgentReset;

const notProvided = (name: string) => () => Promise.reject(new Error(`actor ${name} is not provided`));

/** The task of a work state: set by the event that entered it, so its absence is a bug in this chart. */
function taskIn(context: TechLeadContext): TaskStepInput {
  if (context.task === null) throw new Error('the techlead chart is in a work state without a task');
  return context.task;
}

const failed = { target: 'idle', actions: { type: 'reportFailure', params: ({ event }: { event: { error: unknown } }) => ({ error: event.error }) } } as const;

const stagnation = (state: WorkState) => ({
  'agent.stagnant': { target: '#techlead.stagnant', actions: [{ type: 'markStalled' as const, params: state }, 'reportStall' as const] },
});

/**
 * The TechLead agent: one task at a time, on its own branch in its own worktree; implements,
 * runs the target's tests, opens (or updates) the PR, and addresses review feedback. A run has
 * one per task in flight (`techlead-1`..`techlead-N`); a task's worktree is the task's, not the
 * TechLead's, so any free TechLead can take up a revision.
 */
export const techleadMachine = setup({
  types: {
    context: {} as TechLeadContext,
    events: {} as TechLeadEvent,
  },
  actors: {
    prepareWorkspace: fromPromise<{ branch: string }, TaskStepInput>(notProvided('prepareWorkspace')),
    implement: fromPromise<{ files: number }, TaskStepInput>(notProvided('implement')),
    revise: fromPromise<{ files: number }, TaskStepInput>(notProvided('revise')),
    runTests: fromPromise<TestOutput, TaskStepInput>(notProvided('runTests')),
    submit: fromPromise<{ prNumber: number }, SubmitInput>(notProvided('submit')),
  },
  actions: {
    reportFailure: sendParent(({ context, self }, params: { error: unknown }) => ({
      type: 'agent.failed',
      agent: 'techlead',
      actor: self.id,
      taskId: context.task?.taskId ?? null,
      code: errorCode(params.error),
      message: errorMessage(params.error),
    })),
    announcePr: sendParent(({ context }, params: { prNumber: number }) => {
      const task = taskIn(context);
      return {
        type: 'pr.submitted',
        taskId: task.taskId,
        prNumber: params.prNumber,
        attempt: task.attempt,
        testsPassed: context.testsPassed,
        correlationId: correlationId(task.taskId, task.attempt),
      };
    }),
    markStalled: assign((_, state: WorkState) => ({ stalledIn: state })),
    takeApproach: assign(({ context }, approach: number | undefined) => ({
      task: context.task && approach !== undefined ? { ...context.task, approach } : context.task,
    })),
    reportStall: sendParent(({ context, self }) => ({ type: 'agent.stalled', agent: 'techlead', actor: self.id, taskId: context.task?.taskId ?? null }) satisfies AgentStalled),
  },
  guards: {
    stalledIn: ({ context }, state: WorkState) => context.stalledIn === state,
  },
}).createMachine({
  id: 'techlead',
  description: 'Implements one task at a time on its own branch, tests it and submits the PR.',
  context: { task: null, testsPassed: false, stalledIn: null },
  initial: 'idle',
  on: {
    // The orchestrator took the task away (a person skipped it, or it stalled twice): the step in flight is stopped.
    'agent.reset': { target: '.idle', actions: assign({ task: null, stalledIn: null }) },
  },
  states: {
    idle: {
      description: 'Waiting for a task or for review feedback.',
      on: {
        'task.assigned': {
          target: 'planning',
          actions: assign({ task: ({ event }) => ({ taskId: event.taskId, taskType: event.taskType, attempt: event.attempt, generation: event.generation }), stalledIn: null }),
        },
        'task.feedback': {
          target: 'addressing_feedback',
          actions: assign({ task: ({ event }) => ({ taskId: event.taskId, taskType: event.taskType, attempt: event.attempt, generation: event.generation }), stalledIn: null }),
        },
      },
    },
    planning: {
      description: "Prepares the task's branch and worktree.",
      invoke: {
        id: 'prepareWorkspace',
        src: 'prepareWorkspace',
        input: ({ context }) => taskIn(context),
        onDone: 'implementing',
        onError: failed,
      },
      on: stagnation('planning'),
    },
    implementing: {
      description: 'Asks the model for the change and commits it on the task branch.',
      invoke: {
        id: 'implement',
        src: 'implement',
        input: ({ context }) => taskIn(context),
        onDone: 'testing',
        onError: failed,
      },
      on: stagnation('implementing'),
    },
    addressing_feedback: {
      description: "Revises the change after the Moderator's review and commits the revision.",
      invoke: {
        id: 'revise',
        src: 'revise',
        input: ({ context }) => taskIn(context),
        onDone: 'testing',
        onError: failed,
      },
      on: stagnation('addressing_feedback'),
    },
    testing: {
      description: "Runs the target's test command in the task's worktree.",
      invoke: {
        id: 'runTests',
        src: 'runTests',
        input: ({ context }) => taskIn(context),
        onDone: { target: 'submitting', actions: assign({ testsPassed: ({ event }) => event.output.passed }) },
        onError: failed,
      },
      on: stagnation('testing'),
    },
    submitting: {
      description: 'Opens the PR, or updates it with the revision.',
      invoke: {
        id: 'submit',
        src: 'submit',
        input: ({ context }) => ({ ...taskIn(context), testsPassed: context.testsPassed }),
        onDone: { target: 'idle', actions: { type: 'announcePr', params: ({ event }) => ({ prNumber: event.output.prNumber }) } },
        onError: failed,
      },
      on: stagnation('submitting'),
    },
    stagnant: {
      description: 'Made no progress for too long; the orchestrator decides: retry or reset.',
      on: {
        // The step runs again with the approach number: its model calls are new ones, told what the last approach did.
        'agent.retry': [
          { guard: { type: 'stalledIn', params: 'planning' }, target: 'planning', actions: { type: 'takeApproach', params: ({ event }) => event.approach } },
          { guard: { type: 'stalledIn', params: 'implementing' }, target: 'implementing', actions: { type: 'takeApproach', params: ({ event }) => event.approach } },
          { guard: { type: 'stalledIn', params: 'addressing_feedback' }, target: 'addressing_feedback', actions: { type: 'takeApproach', params: ({ event }) => event.approach } },
          { guard: { type: 'stalledIn', params: 'testing' }, target: 'testing', actions: { type: 'takeApproach', params: ({ event }) => event.approach } },
          { guard: { type: 'stalledIn', params: 'submitting' }, target: 'submitting', actions: { type: 'takeApproach', params: ({ event }) => event.approach } },
          { target: 'idle' },
        ],
      },
    },
  },
});
