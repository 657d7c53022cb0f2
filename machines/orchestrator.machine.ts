import { and, assign, enqueueActions, fromPromise, not, sendTo, setup } from 'xstate';
import { everThinkerMachine } from './ever-thinker.machine.ts';
import type {
  AgentFailed, AgentStalled, ChangesRequested, HealthAlert, HumanApproved, HumanRejected, ImprovementsExhausted,
  HumanAnswered, ImprovementsProposed, LimitReached, MergeBlocked, NewTaskRef, Outcome, PlanReady, PrApproved, PrMerged, PrRejected, PrSubmitted,
  ReviewHeld, RunAbort, RunPause, RunResume, ScopeClarified, TaskRef, TaskSkip,
} from './events.ts';
import { mergeQueueMachine } from './merge-queue.machine.ts';
import { moderatorMachine } from './moderator.machine.ts';
import { monitorMachine, type MonitorInput } from './monitor.machine.ts';
import { techleadMachine } from './techlead.machine.ts';
import { actorIds } from '../protocol/agents.ts';
import { correlationId } from '../protocol/keys.ts';
import { FINISHED_STATUSES } from '../protocol/tasks.ts';

/** A finished run continued by `moderator retry`: its tasks, some re-queued, and where the improvement cycles were. */
export interface RetryPlan {
  tasks: TaskRef[];
  improvementCycle: number;
}

export interface OrchestratorInput {
  /** Start implementing without asking a person to approve the plan (`-y`). */
  autoApprove: boolean;
  /** Set for a run continued by `moderator retry`: it starts implementing with these tasks. */
  retry?: RetryPlan | undefined;
  maxReviewAttempts: number;
  maxImprovementCycles: number;
  minPriority: number;
  /** Tasks in flight at once, each with its own TechLead (`limits.max_parallel_tasks`); 1 runs them one after another. */
  maxParallelTasks: number;
  /** Reviews at once (`agents.moderator.parallel_reviews`); 1 queues them for the one Moderator. */
  parallelReviews: number;
  /** Times the merge queue sends a task back before it is re-implemented on a fresh branch (`limits.max_conflict_rounds`). */
  maxConflictRounds: number;
  monitor: MonitorInput;
}

export interface OrchestratorOutput {
  outcome: Outcome;
  reason: string | null;
}

/** An actor that works on one task at a time (a TechLead, a reviewer) and the task it holds. */
export interface Slot {
  id: string;
  taskId: string | null;
}

interface OrchestratorContext {
  settings: OrchestratorInput;
  tasks: TaskRef[];
  /**
   * The TechLeads. A task holds its TechLead from its start until its PR is approved (or it
   * ends: rejected, failed, skipped, held), so a review's changes go back to the TechLead that
   * wrote them and `maxParallelTasks` bounds the tasks being worked on and reviewed. The merge
   * queue needs none: a PR it sends back takes the next free TechLead, before any new task.
   * With one TechLead a task keeps it until merged (see queueMerge).
   */
  techleads: Slot[];
  /** The reviewers: the Moderator, and more when parallel reviews are allowed. */
  reviewers: Slot[];
  /** Tasks whose next step (an implementation or a revision) waits to be sent to their TechLead. */
  workQueue: string[];
  /** Tasks whose PR waits for a reviewer, oldest first. */
  reviewQueue: string[];
  /** Approved PRs waiting for the merge queue, oldest first. */
  mergeQueue: string[];
  /** The task whose PR the merge queue is merging. */
  merging: string | null;
  improvementCycle: number;
  /** Retries granted per stalled actor and task, so a stall is retried once, then skipped. */
  stallRetries: Record<string, number>;
  outcome: Outcome | null;
  reason: string | null;
  /** Paused by a person: every step in flight finishes, no next step starts. */
  paused: boolean;
  /** Answers people gave through the monitoring server, for the record (the texts are journaled). */
  answers: number;
}

type OrchestratorEvent =
  | ScopeClarified | PlanReady | PrSubmitted | PrApproved | ChangesRequested | PrRejected | PrMerged | MergeBlocked | ReviewHeld
  | ImprovementsProposed | ImprovementsExhausted | AgentFailed | AgentStalled | LimitReached | HealthAlert | HumanApproved | HumanRejected
  | HumanAnswered | RunAbort | RunPause | RunResume | TaskSkip;

const stallKey = (event: AgentStalled) => `${event.actor}:${event.taskId ?? '-'}`;

function patchTask(tasks: TaskRef[], id: string | null, patch: Partial<TaskRef> | ((task: TaskRef) => Partial<TaskRef>)): TaskRef[] {
  return tasks.map((task) => (task.id === id ? { ...task, ...(typeof patch === 'function' ? patch(task) : patch) } : task));
}

function newTasks(refs: NewTaskRef[], origin: TaskRef['origin'], existing: TaskRef[]): TaskRef[] {
  const known = new Set(existing.map((task) => task.id));
  return refs
    .filter((ref) => !known.has(ref.id))
    .map((ref) => ({
      id: ref.id, type: ref.type, origin, status: 'pending', attempt: 1, roundStart: 1, stage: 'implement', prNumber: null,
      conflictRounds: 0, generation: 1, dependsOn: ref.dependsOn ?? [],
    }));
}

const slots = (count: number, id: (slot: number) => string): Slot[] => Array.from({ length: count }, (_, index) => ({ id: id(index + 1), taskId: null }));
const holding = (list: Slot[], taskId: string | null): Slot | undefined => list.find((slot) => slot.taskId !== null && slot.taskId === taskId);
const freeSlot = (list: Slot[]): Slot | undefined => list.find((slot) => slot.taskId === null);
const assignSlot = (list: Slot[], id: string, taskId: string | null): Slot[] => list.map((slot) => (slot.id === id ? { ...slot, taskId } : slot));
const releaseTask = (list: Slot[], taskId: string): Slot[] => list.map((slot) => (slot.taskId === taskId ? { ...slot, taskId: null } : slot));
const without = (queue: string[], taskId: string): string[] => queue.filter((id) => id !== taskId);
const taskIn = (context: OrchestratorContext, id: string | null): TaskRef | undefined => context.tasks.find((task) => task.id === id);

/**
 * The first queued step that can go now, and the TechLead it goes to: the one holding its task,
 * or (for a PR the merge queue sent back: its TechLead let go of it at approval) a free one.
 */
function sendableWork(context: OrchestratorContext): { taskId: string; slot: Slot } | undefined {
  const free = freeSlot(context.techleads);
  for (const taskId of context.workQueue) {
    const slot = holding(context.techleads, taskId) ?? free;
    if (slot) return { taskId, slot };
  }
  return undefined;
}

/** Queued steps that wait for a free TechLead: they go before any new task takes one. */
const waitsForTechLead = (context: OrchestratorContext): boolean => context.workQueue.some((taskId) => holding(context.techleads, taskId) === undefined);

/** The next task whose dependencies are all merged, in plan order. */
export function nextReadyTask(tasks: TaskRef[]): TaskRef | undefined {
  const merged = new Set(tasks.filter((task) => task.status === 'merged').map((task) => task.id));
  const known = new Set(tasks.map((task) => task.id));
  return tasks.find((task) => task.status === 'pending' && task.dependsOn.every((id) => merged.has(id) || !known.has(id)));
}

/** Whether a review of this round is the task's last: the cap counts rounds since the allowance started. */
export function isLastRound(task: Pick<TaskRef, 'attempt' | 'roundStart'>, maxReviewAttempts: number): boolean {
  return task.attempt - task.roundStart + 1 >= maxReviewAttempts;
}

/**
 * What follows a PR the merge queue could not merge (its update conflicted or broke the tests):
 * a revision by its TechLead while conflict rounds are left (a round that does not use up the
 * review allowance); then a re-implementation on a fresh branch from the new base; and if that
 * one cannot merge either, a person. Never a forced merge.
 */
export function afterBlockedMerge(task: TaskRef, maxConflictRounds: number): 'revise' | 'reimplement' | 'hold' {
  if (task.generation > 1) return 'hold';
  return task.conflictRounds < maxConflictRounds ? 'revise' : 'reimplement';
}

/** The outcome when the work ran out: done if everything merged, otherwise a person must look. */
export function concludedOutcome(tasks: TaskRef[]): { outcome: Outcome; reason: string | null } {
  const unfinished = tasks.filter((task) => task.status !== 'merged');
  if (unfinished.length === 0) return { outcome: 'done', reason: null };
  return {
    outcome: 'needs_human',
    reason: `${unfinished.length} task(s) not merged: ${unfinished.map((task) => `${task.id} ${task.status}`).join(', ')}`,
  };
}

/** A task out of every slot and queue: it ended, or a person skipped it. The merge in progress, if its own, is left to finish. */
function dropTask(context: OrchestratorContext, taskId: string): Partial<OrchestratorContext> {
  return {
    techleads: releaseTask(context.techleads, taskId),
    reviewers: releaseTask(context.reviewers, taskId),
    workQueue: without(context.workQueue, taskId),
    reviewQueue: without(context.reviewQueue, taskId),
    mergeQueue: without(context.mergeQueue, taskId),
  };
}

/**
 * The root actor: owns the run's lifecycle, every task's status and the queues between the
 * agents, and the outcome. Its children are the agents, addressed by systemId: the Moderator,
 * `maxParallelTasks` TechLeads (`techlead-1`..), extra reviewers when parallel reviews are
 * allowed, the merge queue, the Monitor and the Ever-Thinker. They only talk through events,
 * which the checkpointer journals.
 */
export const orchestratorMachine = setup({
  types: {
    context: {} as OrchestratorContext,
    events: {} as OrchestratorEvent,
    input: {} as OrchestratorInput,
    output: {} as OrchestratorOutput,
  },
  actors: {
    moderator: moderatorMachine,
    techlead: techleadMachine,
    mergeQueue: mergeQueueMachine,
    monitor: monitorMachine,
    everThinker: everThinkerMachine,
    askApproval: fromPromise<{ approved: boolean; reason?: string }>(() => Promise.reject(new Error('actor askApproval is not provided'))),
  },
  actions: {
    /** The TechLeads and the extra reviewers, spawned once with stable ids; a resume restores them from the snapshot. */
    spawnAgents: enqueueActions(({ context, enqueue }) => {
      for (const slot of context.techleads) enqueue.spawnChild('techlead', { id: slot.id, systemId: slot.id });
      for (const slot of context.reviewers.slice(1)) enqueue.spawnChild('moderator', { id: slot.id, systemId: slot.id });
    }),
    requestScope: sendTo('moderator', { type: 'clarify.requested' }),
    requestPlan: sendTo('moderator', { type: 'plan.requested' }),
    addTasks: assign(({ context }, params: { tasks: NewTaskRef[]; origin: TaskRef['origin'] }) => ({
      tasks: [...context.tasks, ...newTasks(params.tasks, params.origin, context.tasks)],
    })),
    /** The next ready task takes a free TechLead: its work is queued for it, or its PR for a review. */
    startTask: assign(({ context }) => {
      const next = nextReadyTask(context.tasks);
      const slot = freeSlot(context.techleads);
      if (!next || !slot) return {};
      const review = next.stage === 'review' && next.prNumber !== null;
      return {
        tasks: patchTask(context.tasks, next.id, { status: review ? 'in_review' : 'in_progress' }),
        techleads: assignSlot(context.techleads, slot.id, next.id),
        ...(review ? { reviewQueue: [...context.reviewQueue, next.id] } : { workQueue: [...context.workQueue, next.id] }),
      };
    }),
    /**
     * The first queued step that can go goes to its task's TechLead (or a free one): a first
     * implementation (or a fresh one) or a revision of the PR.
     */
    sendWork: enqueueActions(({ context, enqueue }) => {
      const work = sendableWork(context);
      if (!work) return;
      const task = taskIn(context, work.taskId);
      const { slot } = work;
      enqueue.assign({ workQueue: without(context.workQueue, work.taskId), techleads: assignSlot(context.techleads, slot.id, work.taskId) });
      if (!task) return;
      const common = { taskId: task.id, taskType: task.type, attempt: task.attempt, generation: task.generation, correlationId: correlationId(task.id, task.attempt) };
      if (task.stage === 'revise' && task.prNumber !== null) enqueue.sendTo(slot.id, { type: 'task.feedback', ...common, prNumber: task.prNumber });
      else enqueue.sendTo(slot.id, { type: 'task.assigned', ...common });
    }),
    /** The oldest PR waiting for a review goes to a free reviewer, with whether this round is the task's last. */
    startReview: enqueueActions(({ context, enqueue }) => {
      const [taskId = null, ...rest] = context.reviewQueue;
      const task = taskIn(context, taskId);
      const reviewer = freeSlot(context.reviewers);
      if (!reviewer) return;
      enqueue.assign({ reviewQueue: rest, ...(task ? { reviewers: assignSlot(context.reviewers, reviewer.id, task.id) } : {}) });
      if (!task || task.prNumber === null) return;
      const lastRound = isLastRound(task, context.settings.maxReviewAttempts);
      enqueue.sendTo(reviewer.id, { type: 'review.requested', taskId: task.id, prNumber: task.prNumber, attempt: task.attempt, lastRound, correlationId: correlationId(task.id, task.attempt) });
    }),
    /** The oldest approved PR goes to the merge queue, which merges one at a time. */
    startMerge: enqueueActions(({ context, enqueue }) => {
      const [taskId = null, ...rest] = context.mergeQueue;
      const task = taskIn(context, taskId);
      enqueue.assign({ mergeQueue: rest, merging: task && task.prNumber !== null ? task.id : null });
      if (!task || task.prNumber === null) return;
      enqueue.sendTo('mergeQueue', { type: 'merge.requested', taskId: task.id, prNumber: task.prNumber, attempt: task.attempt, correlationId: correlationId(task.id, task.attempt) });
    }),
    queueReview: assign(({ context }, submitted: PrSubmitted) => ({
      tasks: patchTask(context.tasks, submitted.taskId, { status: 'in_review', prNumber: submitted.prNumber }),
      reviewQueue: [...context.reviewQueue, submitted.taskId],
    })),
    /**
     * Approved: the merge queue needs no TechLead, so the task's goes to the next task. With one
     * TechLead it stays until the merge: one task at a time, each branch made from a base that
     * holds the one before (no update, no second test run), as runs were before parallel tasks.
     */
    queueMerge: assign(({ context }, approved: PrApproved) => ({
      reviewers: releaseTask(context.reviewers, approved.taskId),
      ...(context.techleads.length > 1 ? { techleads: releaseTask(context.techleads, approved.taskId) } : {}),
      mergeQueue: [...context.mergeQueue, approved.taskId],
    })),
    /** Changes requested: the next round goes back to the task's own TechLead. */
    queueRevision: assign(({ context }, review: ChangesRequested) => ({
      tasks: patchTask(context.tasks, review.taskId, { status: 'in_progress', stage: 'revise', attempt: review.attempt + 1 }),
      reviewers: releaseTask(context.reviewers, review.taskId),
      workQueue: [...context.workQueue, review.taskId],
    })),
    endTask: assign(({ context }, params: { taskId: string; status: TaskRef['status'] }) => ({
      // A task that already ended (a person skipped it) keeps how it ended.
      tasks: patchTask(context.tasks, params.taskId, (task) => ({ status: FINISHED_STATUSES.has(task.status) ? task.status : params.status })),
      ...dropTask(context, params.taskId),
    })),
    markMerged: assign(({ context }, merged: PrMerged) => ({
      // A task a person skipped while it merged is merged all the same: the base has it.
      tasks: patchTask(context.tasks, merged.taskId, { status: 'merged' }),
      merging: null,
      ...dropTask(context, merged.taskId),
    })),
    /** See afterBlockedMerge: a revision, a fresh branch, or a person. */
    handleBlockedMerge: assign(({ context }, blocked: MergeBlocked) => {
      const task = taskIn(context, blocked.taskId);
      if (!task || task.status !== 'in_review') return { merging: null };
      const next = task.attempt + 1;
      switch (afterBlockedMerge(task, context.settings.maxConflictRounds)) {
        case 'revise':
          // The revision gets a review of its own, and the review allowance is not used up by it.
          return {
            merging: null,
            tasks: patchTask(context.tasks, task.id, { status: 'in_progress', stage: 'revise', attempt: next, roundStart: task.roundStart + 1, conflictRounds: task.conflictRounds + 1 }),
            workQueue: [...context.workQueue, task.id],
          };
        case 'reimplement':
          return {
            merging: null,
            tasks: patchTask(context.tasks, task.id, { status: 'in_progress', stage: 'implement', attempt: next, roundStart: next, conflictRounds: 0, generation: task.generation + 1 }),
            workQueue: [...context.workQueue, task.id],
          };
        case 'hold':
          return { merging: null, tasks: patchTask(context.tasks, task.id, { status: 'held' }), ...dropTask(context, task.id) };
      }
    }),
    startImprovementCycle: enqueueActions(({ context, enqueue }) => {
      const cycle = context.improvementCycle + 1;
      enqueue.assign({ improvementCycle: cycle });
      enqueue.sendTo('everThinker', { type: 'improve.requested', cycle });
    }),
    conclude: assign(({ context }) => {
      // Tasks still pending here wait on a dependency that will never merge.
      const tasks = context.tasks.map((task) => (task.status === 'pending' ? { ...task, status: 'skipped' as const } : task));
      return context.outcome !== null ? { tasks } : { tasks, ...concludedOutcome(tasks) };
    }),
    concludeAfterImproverFailure: assign(({ context }, failure: AgentFailed) => {
      const tasks = context.tasks.map((task) => (task.status === 'pending' ? { ...task, status: 'skipped' as const } : task));
      const concluded = concludedOutcome(tasks);
      // Merged work is kept, but a failed improvement cycle is not "done": a person should know.
      return concluded.outcome === 'done'
        ? { tasks, outcome: 'needs_human' as const, reason: `every task is merged, but the Ever-Thinker's improvement cycle failed: ${failure.message}` }
        : { tasks, outcome: concluded.outcome, reason: `${concluded.reason ?? ''}; the Ever-Thinker's improvement cycle failed: ${failure.message}` };
    }),
    stopWith: assign((_, params: { outcome: Outcome; reason: string | null }) => params),
    stopForLimit: assign((_, limit: LimitReached) => ({ outcome: limit.outcome, reason: limit.reason })),
    stopForFailure: assign((_, failure: AgentFailed) => {
      // The project's tests cannot run at all: a person must fix the environment or the setting.
      const outcome: Outcome = failure.code === 'budget_exhausted' ? 'budget_exhausted' : failure.code === 'test_environment' ? 'needs_human' : 'failed';
      return { outcome, reason: `${failure.agent}: ${failure.message}` };
    }),
    retryStalled: enqueueActions(({ context, enqueue }, stall: AgentStalled) => {
      const key = stallKey(stall);
      enqueue.assign({ stallRetries: { ...context.stallRetries, [key]: (context.stallRetries[key] ?? 0) + 1 } });
      enqueue.sendTo(stall.actor, { type: 'agent.retry' });
    }),
    /**
     * A task ended by a person (or a stall): out of every slot and queue; the TechLead or
     * reviewer working on it drops it, its step stopped. Its merge, if under way, finishes.
     */
    skipTask: enqueueActions(({ context, enqueue }, params: { taskId: string }) => {
      const techlead = holding(context.techleads, params.taskId);
      const reviewer = holding(context.reviewers, params.taskId);
      const task = taskIn(context, params.taskId);
      enqueue.assign({ tasks: patchTask(context.tasks, params.taskId, { status: 'skipped' }), ...dropTask(context, params.taskId) });
      // A TechLead holds its task through review: only one with the task's step in hand is reset.
      // (A step still queued was never sent; a task in the merge queue holds no TechLead.)
      if (techlead && task?.status === 'in_progress' && !context.workQueue.includes(params.taskId)) enqueue.sendTo(techlead.id, { type: 'agent.reset' });
      if (reviewer) enqueue.sendTo(reviewer.id, { type: 'agent.reset' });
    }),
    resetActor: enqueueActions(({ enqueue }, params: { actor: string }) => enqueue.sendTo(params.actor, { type: 'agent.reset' })),
  },
  guards: {
    planHasTasks: (_, plan: PlanReady) => plan.tasks.length > 0,
    autoApprove: ({ context }) => context.settings.autoApprove,
    canImprove: ({ context }) =>
      context.improvementCycle < context.settings.maxImprovementCycles && context.tasks.every((task) => task.status === 'merged'),
    approved: (_, params: { approved: boolean }) => params.approved,
    /** A failure that stops the run whatever the task: the budget, or tests that cannot run here. */
    runFailure: (_, failure: AgentFailed) => failure.code === 'budget_exhausted' || failure.code === 'test_environment',
    isRetry: ({ context }) => context.settings.retry !== undefined,
    taskFailure: (_, failure: AgentFailed) => failure.taskId !== null && failure.code !== 'replay_mismatch',
    improverFailure: (_, failure: AgentFailed) => failure.agent === 'everThinker',
    mayRetryStall: ({ context }, stall: AgentStalled) => (context.stallRetries[stallKey(stall)] ?? 0) < 1,
    stallHasTask: (_, stall: AgentStalled) => stall.taskId !== null,
    paused: ({ context }) => context.paused,
    canStartTask: ({ context }) => freeSlot(context.techleads) !== undefined && !waitsForTechLead(context) && nextReadyTask(context.tasks) !== undefined,
    hasWork: ({ context }) => sendableWork(context) !== undefined,
    canStartReview: ({ context }) => context.reviewQueue.length > 0 && freeSlot(context.reviewers) !== undefined,
    canStartMerge: ({ context }) => context.mergeQueue.length > 0 && context.merging === null,
    /** Nothing in flight, nothing queued, nothing ready: the work ran out. */
    settled: ({ context }) =>
      context.merging === null && context.workQueue.length === 0 && context.reviewQueue.length === 0 && context.mergeQueue.length === 0
      && context.tasks.every((task) => task.status !== 'in_progress' && task.status !== 'in_review') && nextReadyTask(context.tasks) === undefined,
    /** An event about a task in the state it names, from the actor holding it: late news of a skipped task is dropped. */
    isWorkedOn: ({ context }, params: { taskId: string }) => taskIn(context, params.taskId)?.status === 'in_progress' && holding(context.techleads, params.taskId) !== undefined,
    isReviewed: ({ context }, params: { taskId: string }) => taskIn(context, params.taskId)?.status === 'in_review' && holding(context.reviewers, params.taskId) !== undefined,
    isMerging: ({ context }, params: { taskId: string }) => context.merging === params.taskId,
    /** A task a skip can end: not yet finished. */
    skippable: ({ context }, skip: TaskSkip) => {
      const status = taskIn(context, skip.taskId)?.status;
      return status === 'pending' || status === 'in_progress' || status === 'in_review';
    },
  },
}).createMachine({
  id: 'orchestrator',
  description: 'Drives a run through clarifying, planning, implementing (tasks in parallel, reviews and a merge queue) and improving to an outcome.',
  context: ({ input }) => ({
    settings: input,
    tasks: input.retry?.tasks ?? [],
    techleads: slots(Math.max(1, input.maxParallelTasks), actorIds.techlead),
    reviewers: slots(Math.max(1, input.parallelReviews), actorIds.reviewer),
    workQueue: [],
    reviewQueue: [],
    mergeQueue: [],
    merging: null,
    improvementCycle: input.retry?.improvementCycle ?? 0,
    stallRetries: {},
    outcome: null,
    reason: null,
    paused: false,
    answers: 0,
  }),
  entry: 'spawnAgents',
  invoke: [
    { id: 'moderator', systemId: 'moderator', src: 'moderator' },
    { id: 'mergeQueue', systemId: 'mergeQueue', src: 'mergeQueue' },
    { id: 'monitor', systemId: 'monitor', src: 'monitor', input: ({ context }) => context.settings.monitor },
    { id: 'everThinker', systemId: 'everThinker', src: 'everThinker', input: ({ context }) => ({ minPriority: context.settings.minPriority }) },
  ],
  on: {
    'monitor.limit_reached': { target: '.stopped', actions: { type: 'stopForLimit', params: ({ event }) => event } },
    'run.abort': { target: '.stopped', actions: assign({ outcome: 'cancelled', reason: ({ event }) => event.reason }) },
    'run.pause': { actions: assign({ paused: true }) },
    'run.resume': { actions: assign({ paused: false }) },
    'human.answered': { actions: assign({ answers: ({ context }) => context.answers + 1 }) },
    'task.skip': { guard: { type: 'skippable', params: ({ event }) => event }, actions: { type: 'skipTask', params: ({ event }) => event } },
    'agent.failed': [
      { guard: { type: 'runFailure', params: ({ event }) => event }, target: '.stopped', actions: { type: 'stopForFailure', params: ({ event }) => event } },
      { guard: { type: 'improverFailure', params: ({ event }) => event }, target: '.stopped', actions: { type: 'concludeAfterImproverFailure', params: ({ event }) => event } },
      {
        guard: { type: 'taskFailure', params: ({ event }) => event },
        actions: [{ type: 'endTask', params: ({ event }) => ({ taskId: event.taskId ?? '', status: 'failed' as const }) }, assign({ merging: ({ context, event }) => (context.merging === event.taskId ? null : context.merging) })],
      },
      { target: '.stopped', actions: { type: 'stopForFailure', params: ({ event }) => event } },
    ],
    'agent.stalled': [
      { guard: { type: 'mayRetryStall', params: ({ event }) => event }, actions: { type: 'retryStalled', params: ({ event }) => event } },
      {
        guard: { type: 'stallHasTask', params: ({ event }) => event },
        actions: [{ type: 'skipTask', params: ({ event }) => ({ taskId: event.taskId ?? '' }) }, { type: 'resetActor', params: ({ event }) => ({ actor: event.actor }) }],
      },
      { target: '.stopped', actions: assign({ outcome: 'stuck', reason: ({ event }) => `${event.actor} made no progress, even after a retry` }) },
    ],
  },
  initial: 'starting',
  states: {
    starting: {
      description: 'A new run clarifies first; a run continued by `moderator retry` goes straight to its re-queued tasks.',
      always: [{ guard: 'isRetry', target: 'implementing' }, { target: 'clarifying' }],
    },
    clarifying: {
      description: 'The Moderator turns the requirements into a scope.',
      entry: 'requestScope',
      on: { 'scope.clarified': 'planning' },
    },
    planning: {
      description: 'The Moderator splits the scope into PR-sized tasks.',
      entry: 'requestPlan',
      on: {
        'plan.ready': [
          {
            guard: { type: 'planHasTasks', params: ({ event }) => event },
            target: 'awaitingApproval',
            actions: { type: 'addTasks', params: ({ event }) => ({ tasks: event.tasks, origin: 'plan' as const }) },
          },
          { target: 'stopped', actions: { type: 'stopWith', params: { outcome: 'failed', reason: 'the plan holds no tasks' } } },
        ],
      },
    },
    awaitingApproval: {
      description: 'A person approves the plan, unless the run was started with -y.',
      always: { guard: 'autoApprove', target: 'implementing' },
      invoke: {
        id: 'askApproval',
        src: 'askApproval',
        onDone: [
          { guard: { type: 'approved', params: ({ event }) => ({ approved: event.output.approved }) }, target: 'implementing' },
          { target: 'stopped', actions: { type: 'stopWith', params: { outcome: 'cancelled', reason: 'the plan was not approved' } } },
        ],
        onError: { target: 'stopped', actions: { type: 'stopWith', params: { outcome: 'needs_human', reason: 'the plan could not be approved' } } },
      },
      on: {
        'human.approved': 'implementing',
        'human.rejected': { target: 'stopped', actions: assign({ outcome: 'cancelled', reason: ({ event }) => event.reason }) },
      },
    },
    implementing: {
      description: 'Ready tasks run at once, each on its own TechLead and branch; PRs queue for review, approved ones for the merge queue.',
      initial: 'running',
      on: {
        'pr.submitted': { guard: { type: 'isWorkedOn', params: ({ event }) => event }, actions: { type: 'queueReview', params: ({ event }) => event } },
        'pr.approved': { guard: { type: 'isReviewed', params: ({ event }) => event }, actions: { type: 'queueMerge', params: ({ event }) => event } },
        'review.changes_requested': { guard: { type: 'isReviewed', params: ({ event }) => event }, actions: { type: 'queueRevision', params: ({ event }) => event } },
        'pr.rejected': { guard: { type: 'isReviewed', params: ({ event }) => event }, actions: { type: 'endTask', params: ({ event }) => ({ taskId: event.taskId, status: 'rejected' as const }) } },
        'review.held': { guard: { type: 'isReviewed', params: ({ event }) => event }, actions: { type: 'endTask', params: ({ event }) => ({ taskId: event.taskId, status: 'held' as const }) } },
        'pr.merged': { guard: { type: 'isMerging', params: ({ event }) => event }, actions: { type: 'markMerged', params: ({ event }) => event } },
        'merge.blocked': { guard: { type: 'isMerging', params: ({ event }) => event }, actions: { type: 'handleBlockedMerge', params: ({ event }) => event } },
      },
      states: {
        running: {
          description: 'Starts what can start: ready tasks on free TechLeads, their next steps, queued reviews, the next merge.',
          always: [
            { guard: 'paused', target: 'paused' },
            { guard: 'canStartTask', actions: 'startTask' },
            { guard: 'hasWork', actions: 'sendWork' },
            { guard: 'canStartReview', actions: 'startReview' },
            { guard: 'canStartMerge', actions: 'startMerge' },
            { guard: and(['settled', 'canImprove']), target: '#orchestrator.improving' },
            { guard: 'settled', target: '#orchestrator.stopped', actions: 'conclude' },
          ],
        },
        paused: {
          description: 'A person paused the run: every step in flight finishes, no next step starts.',
          always: { guard: not('paused'), target: 'running' },
        },
      },
    },
    improving: {
      description: 'The Ever-Thinker looks for improvements worth another task.',
      entry: 'startImprovementCycle',
      on: {
        'improvements.proposed': { target: 'implementing', actions: { type: 'addTasks', params: ({ event }) => ({ tasks: event.tasks, origin: 'improvement' as const }) } },
        'improvements.exhausted': { target: 'stopped', actions: 'conclude' },
      },
    },
    stopped: {
      description: 'The run is over; its outcome is kept and becomes the exit status.',
      type: 'final',
    },
  },
  output: ({ context }) => ({ outcome: context.outcome ?? 'failed', reason: context.reason }),
});
