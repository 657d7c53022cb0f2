import { assign, fromCallback, fromPromise, sendParent, sendTo, setup } from 'xstate';
import { correlationId } from '../protocol/keys.ts';
import { errorCode, errorMessage, type MergeBlocked, type MergeQueued, type MergeRequested, type QueuedMerge } from './events.ts';

/** The approved PR the queue is merging. */
export interface MergeStepInput {
  taskId: string;
  prNumber: number;
  attempt: number;
  /** The approved PRs queued after it, whose merges may be tested ahead of their turn. */
  behind?: QueuedMerge[];
}

export interface UpdateOutput {
  /** The base was merged into the branch (a new commit on it): the tests must run again. */
  updated: boolean;
  /** Files in conflict with the base: nothing was committed, the branch is as it was. */
  conflicts: string[];
}

export interface RetestOutput {
  passed: boolean;
  command: string;
}

interface MergeQueueContext {
  item: MergeStepInput | null;
}

type MergeQueueEvent = MergeRequested | MergeQueued;

const notProvided = (name: string) => () => Promise.reject(new Error(`actor ${name} is not provided`));

/** The PR being merged: set by `merge.requested`, so its absence is a bug in this chart. */
function itemIn(context: MergeQueueContext): MergeStepInput {
  if (context.item === null) throw new Error('the merge queue chart is merging without a PR');
  return context.item;
}

const failed = { target: 'idle', actions: { type: 'reportFailure', params: ({ event }: { event: { error: unknown } }) => ({ error: event.error }) } } as const;

/**
 * The merge queue: approved PRs merge into the base branch one at a time, in the order the
 * orchestrator (which owns the queue) sends them. Each branch is first brought up to date with
 * the base; when that changed it, the tests run again on the result. A conflict or a failing
 * test goes back to the orchestrator as `merge.blocked`, never merged, never forced.
 */
export const mergeQueueMachine = setup({
  types: {
    context: {} as MergeQueueContext,
    events: {} as MergeQueueEvent,
  },
  actors: {
    updateBranch: fromPromise<UpdateOutput, MergeStepInput>(notProvided('updateBranch')),
    retest: fromPromise<RetestOutput, MergeStepInput>(notProvided('retest')),
    merge: fromPromise<{ mergeSha: string }, MergeStepInput>(notProvided('merge')),
    // Test runs ahead of their turn live as long as the queue: this actor's stop ends them. A
    // speed-up only, never needed for a correct merge, so nothing by default.
    trials: fromCallback<MergeQueued>(() => () => {}),
  },
  actions: {
    block: sendParent(({ context }, params: { reason: MergeBlocked['reason']; detail: string }): MergeBlocked => {
      const { taskId, prNumber, attempt } = itemIn(context);
      return { type: 'merge.blocked', taskId, prNumber, attempt, reason: params.reason, detail: params.detail, correlationId: correlationId(taskId, attempt) };
    }),
    announceMerge: sendParent(({ context }) => {
      const { taskId, prNumber, attempt } = itemIn(context);
      return { type: 'pr.merged', taskId, prNumber, correlationId: correlationId(taskId, attempt) };
    }),
    reportFailure: sendParent(({ context, self }, params: { error: unknown }) => ({
      type: 'agent.failed',
      agent: 'mergeQueue',
      actor: self.id,
      taskId: context.item?.taskId ?? null,
      code: errorCode(params.error),
      message: errorMessage(params.error),
    })),
  },
  guards: {
    conflicted: (_, output: UpdateOutput) => output.conflicts.length > 0,
    updated: (_, output: UpdateOutput) => output.updated,
    passed: (_, output: RetestOutput) => output.passed,
    // The provider's merge found a conflict the update did not (a base that moved meanwhile, on GitHub).
    mergeConflict: (_, params: { error: unknown }) => errorCode(params.error) === 'pr_conflict',
  },
}).createMachine({
  id: 'mergeQueue',
  description: 'Merges approved PRs one at a time, each brought up to date with the base and tested again.',
  context: { item: null },
  invoke: { id: 'trials', src: 'trials' },
  on: { 'merge.queued': { actions: sendTo('trials', ({ event }) => event) } },
  initial: 'idle',
  states: {
    idle: {
      description: 'Waiting for the next approved PR.',
      on: {
        'merge.requested': {
          target: 'updating',
          actions: assign({ item: ({ event }) => ({ taskId: event.taskId, prNumber: event.prNumber, attempt: event.attempt, behind: event.behind ?? [] }) }),
        },
      },
    },
    updating: {
      description: 'Brings the branch up to date with the base branch; a conflict goes back to the TechLead.',
      invoke: {
        id: 'updateBranch',
        src: 'updateBranch',
        input: ({ context }) => itemIn(context),
        onDone: [
          {
            guard: { type: 'conflicted', params: ({ event }) => event.output },
            target: 'idle',
            actions: { type: 'block', params: ({ event }) => ({ reason: 'conflict' as const, detail: event.output.conflicts.join(', ') }) },
          },
          { guard: { type: 'updated', params: ({ event }) => event.output }, target: 'testing' },
          { target: 'merging' },
        ],
        onError: failed,
      },
    },
    testing: {
      description: "Runs the tests again on the updated branch: the base's changes and the PR's together.",
      invoke: {
        id: 'retest',
        src: 'retest',
        input: ({ context }) => itemIn(context),
        onDone: [
          { guard: { type: 'passed', params: ({ event }) => event.output }, target: 'merging' },
          { target: 'idle', actions: { type: 'block', params: ({ event }) => ({ reason: 'tests_failed' as const, detail: event.output.command }) } },
        ],
        onError: failed,
      },
    },
    merging: {
      description: 'Merges the PR into the base branch.',
      invoke: {
        id: 'merge',
        src: 'merge',
        input: ({ context }) => itemIn(context),
        onDone: { target: 'idle', actions: 'announceMerge' },
        onError: [
          {
            guard: { type: 'mergeConflict', params: ({ event }) => ({ error: event.error }) },
            target: 'idle',
            actions: { type: 'block', params: ({ event }) => ({ reason: 'conflict' as const, detail: errorMessage(event.error) }) },
          },
          failed,
        ],
      },
    },
  },
});
