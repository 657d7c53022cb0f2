import { assign, fromPromise, sendParent, setup } from 'xstate';
import { correlationId } from '../protocol/keys.ts';
import {
  errorCode, errorMessage,
  type AgentRetry, type AgentReset, type AgentStagnant, type AgentStalled, type ClarifyRequested, type NewTaskRef, type PlanRequested, type ReviewRequested,
} from './events.ts';

export interface ReviewInput {
  taskId: string;
  prNumber: number;
  attempt: number;
  /** The last review round: changes requested now reject the task. */
  lastRound: boolean;
}

export interface ReviewOutput {
  /** `hold`: no usable verdict could be had; the PR stays open and waits for a person. */
  verdict: 'approve' | 'request_changes' | 'hold';
  reason?: string;
}

type WorkState = 'clarifying' | 'planning' | 'reviewing';

interface ModeratorContext {
  review: ReviewInput | null;
  /** The work state the agent left when it was found stagnant, so a retry goes back there. */
  stalledIn: WorkState | null;
}

type ModeratorEvent = ClarifyRequested | PlanRequested | ReviewRequested | AgentStagnant | AgentRetry | AgentReset;

const notProvided = (name: string) => () => Promise.reject(new Error(`actor ${name} is not provided`));

/** The PR under review: set by the event that entered the review, so its absence is a bug in this chart. */
function reviewIn(context: ModeratorContext): ReviewInput {
  if (context.review === null) throw new Error('the moderator chart is reviewing without a review');
  return context.review;
}

const failed = { target: 'idle', actions: { type: 'reportFailure', params: ({ event }: { event: { error: unknown } }) => ({ error: event.error }) } } as const;

/**
 * The Moderator agent: clarifies the requirements, splits them into PR-sized tasks and reviews
 * each PR (the model's verdict combined with the test result); what it approves goes to the
 * merge queue. With `agents.moderator.parallel_reviews` above 1 the run has more reviewers
 * (`moderator-2`, ...) of this same chart, which only review. Effects are named actors,
 * provided by the composition root.
 */
export const moderatorMachine = setup({
  types: {
    context: {} as ModeratorContext,
    events: {} as ModeratorEvent,
  },
  actors: {
    /** `questionIds`: the questions for a person, stored with their texts. */
    clarify: fromPromise<{ assumptions: number; questions: number; questionIds?: string[] }>(notProvided('clarify')),
    plan: fromPromise<{ tasks: NewTaskRef[] }>(notProvided('plan')),
    review: fromPromise<ReviewOutput, ReviewInput>(notProvided('review')),
  },
  actions: {
    reportFailure: sendParent(({ context, self }, params: { error: unknown }) => ({
      type: 'agent.failed',
      agent: 'moderator',
      actor: self.id,
      taskId: context.review?.taskId ?? null,
      code: errorCode(params.error),
      message: errorMessage(params.error),
    })),
    requestChanges: sendParent(({ context }) => {
      const { taskId, prNumber, attempt } = reviewIn(context);
      return { type: 'review.changes_requested', taskId, prNumber, attempt, correlationId: correlationId(taskId, attempt) };
    }),
    rejectPr: sendParent(({ context }) => {
      const { taskId, prNumber, attempt } = reviewIn(context);
      return { type: 'pr.rejected', taskId, prNumber, attempt, correlationId: correlationId(taskId, attempt) };
    }),
    holdPr: sendParent(({ context }, params: { reason: string | undefined }) => {
      const { taskId, prNumber, attempt } = reviewIn(context);
      return { type: 'review.held', taskId, prNumber, attempt, reason: params.reason ?? 'the review could not be completed', correlationId: correlationId(taskId, attempt) };
    }),
    approvePr: sendParent(({ context }) => {
      const { taskId, prNumber, attempt } = reviewIn(context);
      return { type: 'pr.approved', taskId, prNumber, attempt, correlationId: correlationId(taskId, attempt) };
    }),
    markStalled: assign((_, state: WorkState) => ({ stalledIn: state })),
    reportStall: sendParent(({ context, self }) => ({ type: 'agent.stalled', agent: 'moderator', actor: self.id, taskId: context.review?.taskId ?? null }) satisfies AgentStalled),
  },
  guards: {
    verdictIs: (_, params: { verdict: ReviewOutput['verdict']; wanted: ReviewOutput['verdict'] }) => params.verdict === params.wanted,
    attemptsLeft: ({ context }) => context.review?.lastRound === false,
    stalledIn: ({ context }, state: WorkState) => context.stalledIn === state,
  },
}).createMachine({
  id: 'moderator',
  description: 'Clarifies scope, plans PR-sized tasks and reviews pull requests.',
  context: { review: null, stalledIn: null },
  initial: 'idle',
  on: {
    // The orchestrator took the task away (a person skipped it, or it stalled twice): the step in flight is stopped.
    'agent.reset': { target: '.idle', actions: assign({ review: null, stalledIn: null }) },
  },
  states: {
    idle: {
      description: 'Waiting for the orchestrator to ask for scope, a plan or a review.',
      on: {
        'clarify.requested': 'clarifying',
        'plan.requested': 'planning',
        'review.requested': {
          target: 'reviewing',
          actions: assign({ review: ({ event }) => ({ taskId: event.taskId, prNumber: event.prNumber, attempt: event.attempt, lastRound: event.lastRound }) }),
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
          actions: sendParent(({ event }) => ({
            type: 'scope.clarified',
            assumptions: event.output.assumptions,
            questions: event.output.questions,
            ...(event.output.questionIds ? { questionIds: event.output.questionIds } : {}),
          })),
        },
        onError: failed,
      },
      on: { 'agent.stagnant': { target: 'stagnant', actions: [{ type: 'markStalled', params: 'clarifying' }, 'reportStall'] } },
    },
    planning: {
      description: 'Splits the scope into tasks with acceptance criteria.',
      invoke: {
        id: 'plan',
        src: 'plan',
        onDone: { target: 'idle', actions: sendParent(({ event }) => ({ type: 'plan.ready', tasks: event.output.tasks })) },
        onError: failed,
      },
      on: { 'agent.stagnant': { target: 'stagnant', actions: [{ type: 'markStalled', params: 'planning' }, 'reportStall'] } },
    },
    reviewing: {
      description: "Reviews a PR: the model's verdict, overruled by failing tests; approved PRs go to the merge queue, an unreadable verdict holds the PR for a person.",
      invoke: {
        id: 'review',
        src: 'review',
        input: ({ context }) => reviewIn(context),
        onDone: [
          { guard: { type: 'verdictIs', params: ({ event }) => ({ verdict: event.output.verdict, wanted: 'approve' }) }, target: 'idle', actions: 'approvePr' },
          {
            guard: { type: 'verdictIs', params: ({ event }) => ({ verdict: event.output.verdict, wanted: 'hold' }) },
            target: 'idle',
            actions: { type: 'holdPr', params: ({ event }) => ({ reason: event.output.reason }) },
          },
          { guard: 'attemptsLeft', target: 'idle', actions: 'requestChanges' },
          { target: 'idle', actions: 'rejectPr' },
        ],
        onError: failed,
      },
      on: { 'agent.stagnant': { target: 'stagnant', actions: [{ type: 'markStalled', params: 'reviewing' }, 'reportStall'] } },
    },
    stagnant: {
      description: 'Made no progress for too long; the orchestrator decides: retry or reset.',
      on: {
        'agent.retry': [
          { guard: { type: 'stalledIn', params: 'clarifying' }, target: 'clarifying' },
          { guard: { type: 'stalledIn', params: 'planning' }, target: 'planning' },
          { guard: { type: 'stalledIn', params: 'reviewing' }, target: 'reviewing' },
          { target: 'idle' },
        ],
      },
    },
  },
});
