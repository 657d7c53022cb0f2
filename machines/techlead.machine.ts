import { assign, fromPromise, sendParent, setup } from 'xstate';
import {
  errorCode, errorMessage,
  type AgentReset, type AgentRetry, type AgentStagnant, type TaskAssigned, type TaskFeedback,
} from './events.ts';
import { correlationId } from '../protocol/keys.ts';

export interface TaskStepInput {
  taskId: string;
  taskType: string;
  attempt: number;
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

const stagnation = (state: WorkState) => ({
  'agent.stagnant': { target: '#techlead.stagnant', actions: [{ type: 'markStalled' as const, params: state }, 'reportStall' as const] },
});

/**
 * The TechLead agent: one task at a time, on its own branch in its own worktree; implements,
 * runs the target's tests, opens (or updates) the PR, and addresses review feedback.
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
    reportFailure: sendParent(({ context, event }) => ({
      type: 'agent.failed',
      agent: 'techlead',
      taskId: context.task?.taskId ?? null,
      code: errorCode((event as { error?: unknown }).error),
      message: errorMessage((event as { error?: unknown }).error),
    })),
    announcePr: sendParent(({ context, event }) => {
      const task = context.task as TaskStepInput;
      return {
        type: 'pr.submitted',
        taskId: task.taskId,
        prNumber: (event as unknown as { output: { prNumber: number } }).output.prNumber,
        attempt: task.attempt,
        testsPassed: context.testsPassed,
        correlationId: correlationId(task.taskId, task.attempt),
      };
    }),
    markStalled: assign((_, state: WorkState) => ({ stalledIn: state })),
    reportStall: sendParent(({ context }) => ({ type: 'agent.stalled', agent: 'techlead', taskId: context.task?.taskId ?? null })),
  },
  guards: {
    stalledIn: ({ context }, state: WorkState) => context.stalledIn === state,
  },
}).createMachine({
  id: 'techlead',
  description: 'Implements one task at a time on its own branch, tests it and submits the PR.',
  context: { task: null, testsPassed: false, stalledIn: null },
  initial: 'idle',
  states: {
    idle: {
      description: 'Waiting for a task or for review feedback.',
      on: {
        'task.assigned': {
          target: 'planning',
          actions: assign({ task: ({ event }) => ({ taskId: event.taskId, taskType: event.taskType, attempt: event.attempt }), stalledIn: null }),
        },
        'task.feedback': {
          target: 'addressing_feedback',
          actions: assign({ task: ({ event }) => ({ taskId: event.taskId, taskType: event.taskType, attempt: event.attempt }), stalledIn: null }),
        },
      },
    },
    planning: {
      description: "Prepares the task's branch and worktree.",
      invoke: {
        id: 'prepareWorkspace',
        src: 'prepareWorkspace',
        input: ({ context }) => context.task as TaskStepInput,
        onDone: 'implementing',
        onError: { target: 'idle', actions: 'reportFailure' },
      },
      on: stagnation('planning'),
    },
    implementing: {
      description: 'Asks the model for the change and commits it on the task branch.',
      invoke: {
        id: 'implement',
        src: 'implement',
        input: ({ context }) => context.task as TaskStepInput,
        onDone: 'testing',
        onError: { target: 'idle', actions: 'reportFailure' },
      },
      on: stagnation('implementing'),
    },
    addressing_feedback: {
      description: "Revises the change after the Moderator's review and commits the revision.",
      invoke: {
        id: 'revise',
        src: 'revise',
        input: ({ context }) => context.task as TaskStepInput,
        onDone: 'testing',
        onError: { target: 'idle', actions: 'reportFailure' },
      },
      on: stagnation('addressing_feedback'),
    },
    testing: {
      description: "Runs the target's test command in the task's worktree.",
      invoke: {
        id: 'runTests',
        src: 'runTests',
        input: ({ context }) => context.task as TaskStepInput,
        onDone: { target: 'submitting', actions: assign({ testsPassed: ({ event }) => event.output.passed }) },
        onError: { target: 'idle', actions: 'reportFailure' },
      },
      on: stagnation('testing'),
    },
    submitting: {
      description: 'Opens the PR, or updates it with the revision.',
      invoke: {
        id: 'submit',
        src: 'submit',
        input: ({ context }) => ({ ...(context.task as TaskStepInput), testsPassed: context.testsPassed }),
        onDone: { target: 'idle', actions: 'announcePr' },
        onError: { target: 'idle', actions: 'reportFailure' },
      },
      on: stagnation('submitting'),
    },
    stagnant: {
      description: 'Made no progress for too long; the orchestrator decides: retry or reset.',
      on: {
        'agent.retry': [
          { guard: { type: 'stalledIn', params: 'planning' }, target: 'planning' },
          { guard: { type: 'stalledIn', params: 'implementing' }, target: 'implementing' },
          { guard: { type: 'stalledIn', params: 'addressing_feedback' }, target: 'addressing_feedback' },
          { guard: { type: 'stalledIn', params: 'testing' }, target: 'testing' },
          { guard: { type: 'stalledIn', params: 'submitting' }, target: 'submitting' },
          { target: 'idle' },
        ],
        'agent.reset': { target: 'idle', actions: assign({ task: null, stalledIn: null }) },
      },
    },
  },
});
