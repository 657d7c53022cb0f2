import { and, assign, fromPromise, sendParent, setup } from 'xstate';
import {
  errorCode, errorMessage,
  type AgentRetry, type AgentReset, type AgentStagnant, type ClarifyRequested, type NewTaskRef, type PlanRequested, type ReviewRequested,
} from './events.ts';

export interface ModeratorInput {
  maxReviewAttempts: number;
}

export interface ReviewInput {
  taskId: string;
  prNumber: number;
  attempt: number;
}

export interface ReviewOutput {
  verdict: 'approve' | 'request_changes';
}

type WorkState = 'clarifying' | 'planning' | 'reviewing' | 'merging';

interface ModeratorContext {
  maxReviewAttempts: number;
  review: ReviewInput | null;
  /** The work state the agent left when it was found stagnant, so a retry goes back there. */
  stalledIn: WorkState | null;
}

type ModeratorEvent = ClarifyRequested | PlanRequested | ReviewRequested | AgentStagnant | AgentRetry | AgentReset;

const notProvided = (name: string) => () => Promise.reject(new Error(`actor ${name} is not provided`));

/**
 * The Moderator agent: clarifies the requirements, splits them into PR-sized tasks, reviews each
 * PR (the model's verdict combined with the test result) and merges what it approves.
 * Effects are named actors, provided by the composition root.
 */
export const moderatorMachine = setup({
  types: {
    context: {} as ModeratorContext,
    events: {} as ModeratorEvent,
    input: {} as ModeratorInput,
  },
  actors: {
    clarify: fromPromise<{ assumptions: number; questions: number }>(notProvided('clarify')),
    plan: fromPromise<{ tasks: NewTaskRef[] }>(notProvided('plan')),
    review: fromPromise<ReviewOutput, ReviewInput>(notProvided('review')),
    merge: fromPromise<{ mergeSha: string }, ReviewInput>(notProvided('merge')),
  },
  actions: {
    reportFailure: sendParent(({ context, event }) => ({
      type: 'agent.failed',
      agent: 'moderator',
      taskId: context.review?.taskId ?? null,
      code: errorCode((event as { error?: unknown }).error),
      message: errorMessage((event as { error?: unknown }).error),
    })),
    requestChanges: sendParent(({ context }) => {
      const review = context.review as ReviewInput;
      return { type: 'review.changes_requested', ...review, correlationId: `${review.taskId}#${review.attempt}` };
    }),
    rejectPr: sendParent(({ context }) => {
      const review = context.review as ReviewInput;
      return { type: 'pr.rejected', ...review, correlationId: `${review.taskId}#${review.attempt}` };
    }),
    announceMerge: sendParent(({ context }) => {
      const review = context.review as ReviewInput;
      return { type: 'pr.merged', taskId: review.taskId, prNumber: review.prNumber, correlationId: `${review.taskId}#${review.attempt}` };
    }),
    markStalled: assign((_, state: WorkState) => ({ stalledIn: state })),
    reportStall: sendParent(({ context }) => ({ type: 'agent.stalled', agent: 'moderator', taskId: context.review?.taskId ?? null })),
  },
  guards: {
    approved: ({ event }) => (event as unknown as { output: ReviewOutput }).output.verdict === 'approve',
    attemptsLeft: ({ context }) => (context.review?.attempt ?? 0) < context.maxReviewAttempts,
    // PrError's code for a branch in conflict with the base: a revision can fix it, a person need not.
    mergeConflict: ({ event }) => errorCode((event as { error?: unknown }).error) === 'pr_conflict',
    stalledIn: ({ context }, state: WorkState) => context.stalledIn === state,
  },
}).createMachine({
  id: 'moderator',
  description: 'Clarifies scope, plans PR-sized tasks, reviews and merges pull requests.',
  context: ({ input }) => ({ maxReviewAttempts: input.maxReviewAttempts, review: null, stalledIn: null }),
  initial: 'idle',
  states: {
    idle: {
      description: 'Waiting for the orchestrator to ask for scope, a plan or a review.',
      on: {
        'clarify.requested': 'clarifying',
        'plan.requested': 'planning',
        'review.requested': {
          target: 'reviewing',
          actions: assign({ review: ({ event }) => ({ taskId: event.taskId, prNumber: event.prNumber, attempt: event.attempt }) }),
        },
      },
    },
    clarifying: {
      description: 'Turns the requirements into a scope with explicit assumptions.',
      invoke: {
        id: 'clarify',
        src: 'clarify',
        onDone: {
          target: 'idle',
          actions: sendParent(({ event }) => ({ type: 'scope.clarified', assumptions: event.output.assumptions, questions: event.output.questions })),
        },
        onError: { target: 'idle', actions: 'reportFailure' },
      },
      on: { 'agent.stagnant': { target: 'stagnant', actions: [{ type: 'markStalled', params: 'clarifying' }, 'reportStall'] } },
    },
    planning: {
      description: 'Splits the scope into tasks with acceptance criteria.',
      invoke: {
        id: 'plan',
        src: 'plan',
        onDone: { target: 'idle', actions: sendParent(({ event }) => ({ type: 'plan.ready', tasks: event.output.tasks })) },
        onError: { target: 'idle', actions: 'reportFailure' },
      },
      on: { 'agent.stagnant': { target: 'stagnant', actions: [{ type: 'markStalled', params: 'planning' }, 'reportStall'] } },
    },
    reviewing: {
      description: "Reviews a PR: the model's verdict, overruled by failing tests.",
      invoke: {
        id: 'review',
        src: 'review',
        input: ({ context }) => context.review as ReviewInput,
        onDone: [
          { guard: 'approved', target: 'merging' },
          { guard: 'attemptsLeft', target: 'idle', actions: 'requestChanges' },
          { target: 'idle', actions: 'rejectPr' },
        ],
        onError: { target: 'idle', actions: 'reportFailure' },
      },
      on: { 'agent.stagnant': { target: 'stagnant', actions: [{ type: 'markStalled', params: 'reviewing' }, 'reportStall'] } },
    },
    merging: {
      description: 'Merges the approved PR into the base branch; a conflict with the base goes back for a revision.',
      invoke: {
        id: 'merge',
        src: 'merge',
        input: ({ context }) => context.review as ReviewInput,
        onDone: { target: 'idle', actions: 'announceMerge' },
        onError: [
          { guard: and(['mergeConflict', 'attemptsLeft']), target: 'idle', actions: 'requestChanges' },
          { target: 'idle', actions: 'reportFailure' },
        ],
      },
      on: { 'agent.stagnant': { target: 'stagnant', actions: [{ type: 'markStalled', params: 'merging' }, 'reportStall'] } },
    },
    stagnant: {
      description: 'Made no progress for too long; the orchestrator decides: retry or reset.',
      on: {
        'agent.retry': [
          { guard: { type: 'stalledIn', params: 'clarifying' }, target: 'clarifying' },
          { guard: { type: 'stalledIn', params: 'planning' }, target: 'planning' },
          { guard: { type: 'stalledIn', params: 'reviewing' }, target: 'reviewing' },
          { guard: { type: 'stalledIn', params: 'merging' }, target: 'merging' },
          { target: 'idle' },
        ],
        'agent.reset': { target: 'idle', actions: assign({ review: null, stalledIn: null }) },
      },
    },
  },
});
