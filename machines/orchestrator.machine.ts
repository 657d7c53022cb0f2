import { and, assign, enqueueActions, fromPromise, not, sendTo, setup } from 'xstate';
import { everThinkerMachine } from './ever-thinker.machine.ts';
import type {
  AgentFailed, AgentStalled, AlertAcknowledged, ChangesRequested, ForecastOverBudget, HealthAlert, HumanApproved, HumanRejected, ImprovementsExhausted,
  HumanAnswered, ImprovementsProposed, LimitReached, MergeBlocked, NewTaskRef, Outcome, PlanReady, PrApproved, PrMerged, PrRejected, PrSubmitted,
  QuestionTimeout, QueuedMerge, ReviewHeld, RunAbort, RunPause, RunResume, ScopeClarified, StopCondition, StopRecord, TaskRef, TaskSkip,
} from './events.ts';
import { mergeQueueMachine } from './merge-queue.machine.ts';
import { moderatorMachine } from './moderator.machine.ts';
import { monitorMachine, type MonitorInput } from './monitor.machine.ts';
import { techleadMachine } from './techlead.machine.ts';
import { actorIds, agentOfActor } from '../protocol/agents.ts';
import { correlationId } from '../protocol/keys.ts';
import { FINISHED_STATUSES } from '../protocol/tasks.ts';
import { groupDigits } from '../protocol/numbers.ts';

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
  /**
   * A person can be asked (the run was started at a terminal without -y): the clarify questions,
   * the plan and a forecast over the budget wait for an answer, up to `interventionTimeoutMs`.
   * Unattended, the assumptions stand and a forecast over the budget ends the run `needs_human`.
   */
  attended?: boolean | undefined;
  /** Times a task may be handed to the TechLead in one allowance before it counts as a loop. */
  maxTaskAttempts?: number | undefined;
  interventionTimeoutMs?: number | undefined;
  /** An improvement cycle measured below this ends the cycles. */
  minImprovement?: number | undefined;
}

/** The defaults of the optional inputs, as the config's own. */
export const inputDefaults = { attended: false, maxTaskAttempts: 3, interventionTimeoutMs: 15 * 60_000, minImprovement: 0.05 } as const;

/** A question waiting for a person: the clarify questions (by id), or whether to go on past the budget forecast. */
export interface Asking {
  kind: 'questions' | 'budget';
  ids: string[];
  answered: string[];
  /** What the forecast said, for the budget question. */
  forecast?: Omit<ForecastOverBudget, 'type'>;
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
  /** Answers people gave (the texts are journaled, and kept with the questions). */
  answers: number;
  /** The stopping condition that ended the run, when one did: `--resume` continues from it once its limit is relaxed. */
  stop: StopRecord | null;
  /** A question a person is asked now. */
  asking: Asking | null;
  /** A person chose to go on although the forecast passes the budget: not asked again under the same limits. */
  budgetAccepted: boolean;
  /**
   * Per actor (`techlead-2`), the tasks merged when it last had a task skipped for stagnation:
   * the same actor stalling again before the next merge means the run is stuck. Per actor, so
   * one TechLead's stalls do not stop the others.
   */
  stagnationSkip: Record<string, number>;
}

type OrchestratorEvent =
  | ScopeClarified | PlanReady | PrSubmitted | PrApproved | ChangesRequested | PrRejected | PrMerged | MergeBlocked | ReviewHeld
  | ImprovementsProposed | ImprovementsExhausted | AgentFailed | AgentStalled | LimitReached | HealthAlert | HumanApproved | HumanRejected
  | HumanAnswered | RunAbort | RunPause | RunResume | TaskSkip | ForecastOverBudget | QuestionTimeout | AlertAcknowledged;

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

const setting = <K extends keyof typeof inputDefaults>(input: OrchestratorInput, key: K): NonNullable<OrchestratorInput[K]> | (typeof inputDefaults)[K] =>
  input[key] ?? inputDefaults[key];

/** The top-level state a snapshot value is in: `implementing` for `{ implementing: 'working' }`. */
function phaseOf(value: unknown): string {
  if (typeof value === 'string') return value;
  return value !== null && typeof value === 'object' ? (Object.keys(value)[0] ?? 'unknown') : 'unknown';
}

/**
 * The stopping condition with the phase it caught the run in. An action runs while the actor's
 * snapshot is still the one before the transition, so `self` says where the run was.
 */
const stopIn = (self: { getSnapshot(): { value: unknown } | undefined }, condition: StopCondition, limit: number | null): StopRecord => ({
  condition,
  limit,
  // In the actor's first macrostep (a retry that concludes at once) it has no snapshot yet.
  phase: phaseOf(self.getSnapshot()?.value ?? 'starting'),
});

const inFlight = (task: TaskRef): boolean => task.status === 'in_progress' || task.status === 'in_review';

/**
 * Times a task was handed to a TechLead in its current allowance: its review rounds since the
 * allowance started, plus the TechLead restarts after stagnation granted for it (a reviewer's
 * restart re-reads the PR; it does not hand the task out again).
 */
export function triesOf(task: TaskRef, stallRetries: Record<string, number>): number {
  const restarts = Object.entries(stallRetries)
    .filter(([key]) => key.endsWith(`:${task.id}`) && agentOfActor(key.slice(0, key.lastIndexOf(':'))) === 'techlead')
    .reduce((sum, [, count]) => sum + count, 0);
  return task.attempt - task.roundStart + 1 + restarts;
}

const mergedCount = (tasks: TaskRef[]): number => tasks.filter((task) => task.status === 'merged').length;

const skipPending = (tasks: TaskRef[]): TaskRef[] => tasks.map((task) => (task.status === 'pending' ? { ...task, status: 'skipped' as const } : task));

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

/** The PRs of the tasks in a merge queue, in order. */
function queuedMerges(context: OrchestratorContext, queue: string[]): QueuedMerge[] {
  return queue.flatMap((id) => {
    const queued = taskIn(context, id);
    return queued && queued.prNumber !== null ? [{ taskId: queued.id, prNumber: queued.prNumber }] : [];
  });
}

/**
 * What skipping a task changes: it is skipped and out of every slot and queue, and the actors
 * with its step in hand are reset. A TechLead holds its task through review, so only one whose
 * step is under way (not still queued) is reset; a task in the merge queue holds no TechLead.
 */
function skipping(context: OrchestratorContext, taskId: string): { patch: Partial<OrchestratorContext>; resets: string[] } {
  const techlead = holding(context.techleads, taskId);
  const reviewer = holding(context.reviewers, taskId);
  const task = taskIn(context, taskId);
  const resets = [
    ...(techlead && task?.status === 'in_progress' && !context.workQueue.includes(taskId) ? [techlead.id] : []),
    ...(reviewer ? [reviewer.id] : []),
  ];
  return { patch: { tasks: patchTask(context.tasks, taskId, { status: 'skipped' }), ...dropTask(context, taskId) }, resets };
}

function withoutType(event: ForecastOverBudget): Omit<ForecastOverBudget, 'type'> {
  const { type: _type, ...forecast } = event;
  return forecast;
}

/** The forecast the budget question was asked about; set by `askBudget` before any answer can arrive. */
function budgetForecast(context: OrchestratorContext): Omit<ForecastOverBudget, 'type'> {
  const forecast = context.asking?.forecast;
  if (!forecast) throw new Error('the orchestrator chart answers a budget question it did not ask');
  return forecast;
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
      const behind = queuedMerges(context, rest);
      enqueue.sendTo('mergeQueue', { type: 'merge.requested', taskId: task.id, prNumber: task.prNumber, attempt: task.attempt, behind, correlationId: correlationId(task.id, task.attempt) });
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
    queueMerge: enqueueActions(({ context, enqueue }, approved: PrApproved) => {
      const mergeQueue = [...context.mergeQueue, approved.taskId];
      enqueue.assign({
        reviewers: releaseTask(context.reviewers, approved.taskId),
        ...(context.techleads.length > 1 ? { techleads: releaseTask(context.techleads, approved.taskId) } : {}),
        mergeQueue,
      });
      // The queue is busy with another PR: this one's merge can be tested while it waits.
      if (context.merging !== null) enqueue.sendTo('mergeQueue', { type: 'merge.queued', behind: queuedMerges(context, mergeQueue) });
    }),
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
    conclude: assign(({ context, self }) => {
      // Tasks still pending here wait on a dependency that will never merge.
      const tasks = skipPending(context.tasks);
      if (context.outcome !== null) return { tasks };
      const concluded = concludedOutcome(tasks);
      if (concluded.outcome !== 'done') return { tasks, ...concluded };
      // Everything merged and no improvement cycle may start: the cycles' limit ended the run.
      const max = context.settings.maxImprovementCycles;
      const reason = max === 0 ? 'every task merged (improvement cycles are off: limits.max_improvement_cycles 0)' : `every task merged; limits.max_improvement_cycles (${max}) reached`;
      return { tasks, outcome: 'done' as const, reason, stop: stopIn(self, 'improvement_cycles', max) };
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
    stopForLimit: assign(({ self }, limit: LimitReached) => ({
      outcome: limit.outcome,
      reason: limit.reason,
      stop: limit.condition ? stopIn(self, limit.condition, limit.limit ?? null) : null,
    })),
    stopForFailure: assign(({ self }, failure: AgentFailed) => {
      // The project's tests cannot run at all: a person must fix the environment or the setting.
      const outcome: Outcome = failure.code === 'budget_exhausted' ? 'budget_exhausted' : failure.code === 'test_environment' ? 'needs_human' : 'failed';
      // A call the gateway would not send: --resume continues once the budget is raised.
      return { outcome, reason: `${failure.agent}: ${failure.message}`, stop: failure.code === 'budget_exhausted' ? stopIn(self, 'budget', null) : null };
    }),
    stopForLoop: assign(({ context, self }) => {
      const max = setting(context.settings, 'maxTaskAttempts');
      const looping = context.tasks.filter((task) => inFlight(task) && triesOf(task, context.stallRetries) > max);
      const which = looping.map((task) => `${task.id} (${triesOf(task, context.stallRetries)} tries)`).join(', ');
      return {
        outcome: 'stuck' as const,
        reason: `${which} handed to the TechLead more than limits.max_task_attempts (${max}) times: a loop; a person should look (\`moderator retry\` re-queues it)`,
        stop: stopIn(self, 'task_loop', max),
      };
    }),
    stopStuck: assign(({ context, self }, stall: AgentStalled) => {
      const since = context.stagnationSkip[stall.actor] !== undefined && stall.taskId !== null ? `, and ${stall.taskId} stalled too with nothing merged since its last task was skipped` : '';
      return { outcome: 'stuck' as const, reason: `${stall.actor} made no progress, even after a retry with a different approach${since}`, stop: stopIn(self, 'stagnation', null) };
    }),
    retryStalled: enqueueActions(({ context, enqueue }, stall: AgentStalled) => {
      const key = stallKey(stall);
      const approach = (context.stallRetries[key] ?? 0) + 1;
      enqueue.assign({ stallRetries: { ...context.stallRetries, [key]: approach } });
      enqueue.sendTo(stall.actor, { type: 'agent.retry', approach });
    }),
    askQuestions: enqueueActions(({ context, enqueue }, scope: ScopeClarified) => {
      enqueue.assign({ asking: { kind: 'questions', ids: scope.questionIds ?? [], answered: [] } });
      enqueue.sendTo('monitor', { type: 'deadline.set', id: 'questions', ms: setting(context.settings, 'interventionTimeoutMs') });
    }),
    recordAnswer: assign(({ context }, answer: HumanAnswered) => ({
      answers: context.answers + 1,
      asking: context.asking ? { ...context.asking, answered: [...new Set([...context.asking.answered, answer.questionId ?? ''])] } : null,
    })),
    endQuestions: enqueueActions(({ enqueue }) => {
      enqueue.assign({ asking: null });
      enqueue.sendTo('monitor', { type: 'deadline.clear', id: 'questions' });
    }),
    armApprovalDeadline: enqueueActions(({ context, enqueue }) => {
      if (!context.settings.autoApprove) enqueue.sendTo('monitor', { type: 'deadline.set', id: 'approval', ms: setting(context.settings, 'interventionTimeoutMs') });
    }),
    clearApprovalDeadline: enqueueActions(({ context, enqueue }) => {
      if (!context.settings.autoApprove) enqueue.sendTo('monitor', { type: 'deadline.clear', id: 'approval' });
    }),
    askBudget: enqueueActions(({ context, enqueue }, over: ForecastOverBudget) => {
      const { type: _type, ...forecast } = over;
      enqueue.assign({ asking: { kind: 'budget', ids: ['budget'], answered: [], forecast } });
      enqueue.sendTo('monitor', { type: 'deadline.set', id: 'budget', ms: setting(context.settings, 'interventionTimeoutMs') });
    }),
    acceptBudget: enqueueActions(({ context, enqueue }) => {
      enqueue.assign({ asking: null, budgetAccepted: true, answers: context.answers + 1 });
      enqueue.sendTo('monitor', { type: 'deadline.clear', id: 'budget' });
    }),
    stopForForecast: assign(({ self }, params: { forecast: Omit<ForecastOverBudget, 'type'>; why: 'unattended' | 'declined' | 'unanswered'; timeoutMs: number }) => {
      const { forecast, why } = params;
      const over = forecast.budget === 'tokens'
        ? `~${groupDigits(forecast.tokensAtFinish)} tokens, past limits.max_tokens_total ${groupDigits(forecast.maxTokensTotal)}`
        : `~$${forecast.costAtFinish.toFixed(2)}, past limits.max_cost_usd $${String(forecast.maxCostUsd)}`;
      const said = why === 'unattended' ? 'the run is unattended' : why === 'declined' ? 'a person chose to stop' : `nobody answered in ${Math.round(params.timeoutMs / 60_000)} min`;
      return {
        outcome: 'needs_human' as const,
        asking: null,
        reason: `the forecast to finish ${forecast.tasksLeft} task(s) is ${over}, and ${said}: raise the budget, then --resume`,
        stop: stopIn(self, why === 'unanswered' ? 'question_timeout' : 'forecast', forecast.budget === 'tokens' ? forecast.maxTokensTotal : forecast.maxCostUsd),
      };
    }),
    stopUnapproved: assign(({ context, self }) => ({
      outcome: 'needs_human' as const,
      reason: `nobody approved or rejected the plan in ${Math.round(setting(context.settings, 'interventionTimeoutMs') / 60_000)} min (limits.intervention_timeout_minutes)`,
      stop: stopIn(self, 'question_timeout', setting(context.settings, 'interventionTimeoutMs') / 60_000),
    })),
    concludeImprovements: assign(({ context, self }, exhausted: ImprovementsExhausted) => {
      const tasks = skipPending(context.tasks);
      const concluded = concludedOutcome(tasks);
      if (concluded.outcome !== 'done') return { tasks, ...concluded };
      if (exhausted.why === 'diminishing_returns') {
        const min = setting(context.settings, 'minImprovement');
        return {
          tasks,
          outcome: 'done' as const,
          reason: `every task merged; diminishing returns: improvement cycle ${exhausted.cycle - 1} measured ${(exhausted.magnitude ?? 0).toFixed(3)}, below limits.min_improvement ${min}`,
          stop: stopIn(self, 'diminishing_returns', min),
        };
      }
      const best = exhausted.bestPriority === null ? 'no proposal' : `best priority ${exhausted.bestPriority}`;
      return {
        tasks,
        outcome: 'done' as const,
        reason: `every task merged; improvement cycle ${exhausted.cycle} found nothing worth a task (${best}, below agents.ever_thinker.min_priority ${context.settings.minPriority})`,
      };
    }),
    /**
     * A task ended by a person: out of every slot and queue; the TechLead or reviewer working on
     * it drops it, its step stopped. Its merge, if under way, finishes.
     */
    skipTask: enqueueActions(({ context, enqueue }, params: { taskId: string }) => {
      const skip = skipping(context, params.taskId);
      enqueue.assign(skip.patch);
      for (const actor of skip.resets) enqueue.sendTo(actor, { type: 'agent.reset' });
    }),
    /**
     * A task whose actor stalled again after a retry: skipped as a person would, the stalled
     * actor reset, and the merged count kept per actor, so that the same actor stalling again
     * with nothing merged since stops the run (stalledAgainAfterSkip) while other TechLeads go on.
     */
    skipStalledTask: enqueueActions(({ context, enqueue }, stall: AgentStalled) => {
      const skip = stall.taskId === null ? { patch: {}, resets: [] } : skipping(context, stall.taskId);
      enqueue.assign({ ...skip.patch, stagnationSkip: { ...context.stagnationSkip, [stall.actor]: mergedCount(context.tasks) } });
      for (const actor of new Set([...skip.resets, stall.actor])) enqueue.sendTo(actor, { type: 'agent.reset' });
    }),
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
    // An open budget question holds new tasks until it is answered; the tasks in flight go on to their merge.
    canStartTask: ({ context }) =>
      context.asking?.kind !== 'budget' && freeSlot(context.techleads) !== undefined && !waitsForTechLead(context) && nextReadyTask(context.tasks) !== undefined,
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
    asksAPerson: ({ context }, scope: ScopeClarified) => setting(context.settings, 'attended') && (scope.questionIds?.length ?? 0) > 0,
    answersAQuestion: ({ context }, answer: HumanAnswered) => context.asking?.kind === 'questions' && context.asking.ids.includes(answer.questionId ?? ''),
    answersTheLastQuestion: ({ context }, answer: HumanAnswered) => {
      const asking = context.asking;
      if (asking?.kind !== 'questions' || !asking.ids.includes(answer.questionId ?? '')) return false;
      const answered = new Set([...asking.answered, answer.questionId]);
      return asking.ids.every((id) => answered.has(id));
    },
    deadlineIs: (_, params: { event: QuestionTimeout; id: string }) => params.event.id === params.id,
    budgetAccepted: ({ context }) => context.budgetAccepted,
    attended: ({ context }) => setting(context.settings, 'attended'),
    continuesPastBudget: ({ context }, answer: HumanAnswered) => context.asking?.kind === 'budget' && answer.questionId === 'budget' && /^\s*(continue|go on|yes|y)\s*$/i.test(answer.answer),
    stopsAtBudget: ({ context }, answer: HumanAnswered) => context.asking?.kind === 'budget' && answer.questionId === 'budget',
    askingBudget: ({ context }, timeout: QuestionTimeout) => context.asking?.kind === 'budget' && timeout.id === 'budget',
    taskLooping: ({ context }) => {
      const max = setting(context.settings, 'maxTaskAttempts');
      return context.tasks.some((task) => inFlight(task) && triesOf(task, context.stallRetries) > max);
    },
    stalledAgainAfterSkip: ({ context }, stall: AgentStalled) => stall.taskId !== null && context.stagnationSkip[stall.actor] === mergedCount(context.tasks),
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
    stop: null,
    asking: null,
    budgetAccepted: false,
    stagnationSkip: {},
  }),
  entry: 'spawnAgents',
  invoke: [
    { id: 'moderator', systemId: 'moderator', src: 'moderator' },
    { id: 'mergeQueue', systemId: 'mergeQueue', src: 'mergeQueue' },
    { id: 'monitor', systemId: 'monitor', src: 'monitor', input: ({ context }) => context.settings.monitor },
    {
      id: 'everThinker',
      systemId: 'everThinker',
      src: 'everThinker',
      input: ({ context }) => ({ minPriority: context.settings.minPriority, minImprovement: setting(context.settings, 'minImprovement') }),
    },
  ],
  // A task handed out more often than its limit is a loop, whatever state the run is in.
  always: { guard: 'taskLooping', target: '.stopped', actions: 'stopForLoop' },
  on: {
    'monitor.limit_reached': { target: '.stopped', actions: { type: 'stopForLimit', params: ({ event }) => event } },
    'run.abort': { target: '.stopped', actions: assign({ outcome: 'cancelled', reason: ({ event }) => event.reason }) },
    'run.pause': { actions: assign({ paused: true }) },
    'run.resume': { actions: assign({ paused: false }) },
    'human.answered': [
      { guard: { type: 'continuesPastBudget', params: ({ event }) => event }, actions: 'acceptBudget' },
      {
        guard: { type: 'stopsAtBudget', params: ({ event }) => event },
        target: '.stopped',
        actions: { type: 'stopForForecast', params: ({ context }) => ({ forecast: budgetForecast(context), why: 'declined' as const, timeoutMs: 0 }) },
      },
      // A late answer (the questions timed out) is kept with its question; the plan may already be made.
      { actions: assign({ answers: ({ context }) => context.answers + 1 }) },
    ],
    'forecast.over_budget': [
      { guard: 'budgetAccepted' },
      { guard: 'attended', actions: { type: 'askBudget', params: ({ event }) => event } },
      {
        target: '.stopped',
        actions: { type: 'stopForForecast', params: ({ event }) => ({ forecast: withoutType(event), why: 'unattended' as const, timeoutMs: 0 }) },
      },
    ],
    'question.timeout': {
      guard: { type: 'askingBudget', params: ({ event }) => event },
      target: '.stopped',
      actions: {
        type: 'stopForForecast',
        params: ({ context }) => ({ forecast: budgetForecast(context), why: 'unanswered' as const, timeoutMs: setting(context.settings, 'interventionTimeoutMs') }),
      },
    },
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
    // Stagnation: a retry with a different approach, then the task skipped for a person, then stuck.
    'agent.stalled': [
      { guard: { type: 'stalledAgainAfterSkip', params: ({ event }) => event }, target: '.stopped', actions: { type: 'stopStuck', params: ({ event }) => event } },
      { guard: { type: 'mayRetryStall', params: ({ event }) => event }, actions: { type: 'retryStalled', params: ({ event }) => event } },
      { guard: { type: 'stallHasTask', params: ({ event }) => event }, actions: { type: 'skipStalledTask', params: ({ event }) => event } },
      { target: '.stopped', actions: { type: 'stopStuck', params: ({ event }) => event } },
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
      on: {
        'scope.clarified': [
          { guard: { type: 'asksAPerson', params: ({ event }) => event }, target: 'awaitingAnswers', actions: { type: 'askQuestions', params: ({ event }) => event } },
          { target: 'planning' },
        ],
      },
    },
    awaitingAnswers: {
      description: 'A person answers the clarify questions (terminal, dashboard, API); when the time is up, the assumptions stand.',
      exit: 'endQuestions',
      on: {
        'human.answered': [
          { guard: { type: 'answersTheLastQuestion', params: ({ event }) => event }, target: 'planning', actions: { type: 'recordAnswer', params: ({ event }) => event } },
          { guard: { type: 'answersAQuestion', params: ({ event }) => event }, actions: { type: 'recordAnswer', params: ({ event }) => event } },
        ],
        'question.timeout': { guard: { type: 'deadlineIs', params: ({ event }) => ({ event, id: 'questions' }) }, target: 'planning' },
      },
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
      description: 'A person approves the plan, unless the run was started with -y; unanswered in time, the run ends needs_human.',
      entry: 'armApprovalDeadline',
      exit: 'clearApprovalDeadline',
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
        'question.timeout': { guard: { type: 'deadlineIs', params: ({ event }) => ({ event, id: 'approval' }) }, target: 'stopped', actions: 'stopUnapproved' },
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
        'improvements.exhausted': { target: 'stopped', actions: { type: 'concludeImprovements', params: ({ event }) => event } },
      },
    },
    stopped: {
      description: 'The run is over; its outcome is kept and becomes the exit status.',
      type: 'final',
    },
  },
  output: ({ context }) => ({ outcome: context.outcome ?? 'failed', reason: context.reason }),
});
