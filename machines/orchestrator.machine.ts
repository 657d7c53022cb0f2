import { and, assign, enqueueActions, fromPromise, not, sendTo, setup } from 'xstate';
import { everThinkerMachine } from './ever-thinker.machine.ts';
import type {
  AgentFailed, AgentId, AgentStalled, ChangesRequested, HealthAlert, HumanApproved, HumanRejected, ImprovementsExhausted,
  HumanAnswered, ImprovementsProposed, LimitReached, NewTaskRef, Outcome, PlanReady, PrMerged, PrRejected, PrSubmitted, ReviewHeld, RunAbort, RunPause,
  RunResume, ScopeClarified, TaskRef, TaskSkip,
} from './events.ts';
import { moderatorMachine } from './moderator.machine.ts';
import { monitorMachine, type MonitorInput } from './monitor.machine.ts';
import { techleadMachine } from './techlead.machine.ts';
import { correlationId } from '../protocol/keys.ts';

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
  monitor: MonitorInput;
}

export interface OrchestratorOutput {
  outcome: Outcome;
  reason: string | null;
}

interface OrchestratorContext {
  settings: OrchestratorInput;
  tasks: TaskRef[];
  currentTaskId: string | null;
  improvementCycle: number;
  /** Retries granted per stalled agent and task, so a stall is retried once, then skipped. */
  stallRetries: Record<string, number>;
  outcome: Outcome | null;
  reason: string | null;
  /** Paused by a person: what is in flight finishes, no new task starts. */
  paused: boolean;
  /** Answers people gave through the monitoring server, for the record (the texts are journaled). */
  answers: number;
}

type OrchestratorEvent =
  | ScopeClarified | PlanReady | PrSubmitted | ChangesRequested | PrRejected | PrMerged | ReviewHeld | ImprovementsProposed | ImprovementsExhausted
  | AgentFailed | AgentStalled | LimitReached | HealthAlert | HumanApproved | HumanRejected | HumanAnswered | RunAbort | RunPause | RunResume
  | TaskSkip;

const stallKey = (event: AgentStalled) => `${event.agent}:${event.taskId ?? '-'}`;

function withStatus(tasks: TaskRef[], id: string | null, status: TaskRef['status']): TaskRef[] {
  return tasks.map((task) => (task.id === id ? { ...task, status } : task));
}

function newTasks(refs: NewTaskRef[], origin: TaskRef['origin'], existing: TaskRef[]): TaskRef[] {
  const known = new Set(existing.map((task) => task.id));
  return refs
    .filter((ref) => !known.has(ref.id))
    .map((ref) => ({ id: ref.id, type: ref.type, origin, status: 'pending', attempt: 1, roundStart: 1, stage: 'implement', prNumber: null, dependsOn: ref.dependsOn ?? [] }));
}

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

const correlation = (task: Pick<TaskRef, 'id' | 'attempt'>): string => correlationId(task.id, task.attempt);

/** The outcome when the work ran out: done if everything merged, otherwise a person must look. */
export function concludedOutcome(tasks: TaskRef[]): { outcome: Outcome; reason: string | null } {
  const unfinished = tasks.filter((task) => task.status !== 'merged');
  if (unfinished.length === 0) return { outcome: 'done', reason: null };
  return {
    outcome: 'needs_human',
    reason: `${unfinished.length} task(s) not merged: ${unfinished.map((task) => `${task.id} ${task.status}`).join(', ')}`,
  };
}

/**
 * The root actor: owns the run's lifecycle and its outcome. Its children are the four agents,
 * addressed by systemId; they only talk through events, which the checkpointer journals.
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
    monitor: monitorMachine,
    everThinker: everThinkerMachine,
    askApproval: fromPromise<{ approved: boolean; reason?: string }>(() => Promise.reject(new Error('actor askApproval is not provided'))),
  },
  actions: {
    requestScope: sendTo('moderator', { type: 'clarify.requested' }),
    requestPlan: sendTo('moderator', { type: 'plan.requested' }),
    addTasks: assign(({ context }, params: { tasks: NewTaskRef[]; origin: TaskRef['origin'] }) => ({
      tasks: [...context.tasks, ...newTasks(params.tasks, params.origin, context.tasks)],
    })),
    startNextTask: enqueueActions(({ context, enqueue }) => {
      const next = nextReadyTask(context.tasks);
      if (!next) return;
      enqueue.assign({ currentTaskId: next.id, tasks: withStatus(context.tasks, next.id, next.stage === 'review' ? 'in_review' : 'in_progress') });
      if (next.stage === 'review' && next.prNumber !== null) {
        const lastRound = isLastRound(next, context.settings.maxReviewAttempts);
        enqueue.sendTo('moderator', { type: 'review.requested', taskId: next.id, prNumber: next.prNumber, attempt: next.attempt, lastRound, correlationId: correlation(next) });
      } else if (next.stage === 'revise' && next.prNumber !== null) {
        enqueue.sendTo('techlead', { type: 'task.feedback', taskId: next.id, taskType: next.type, attempt: next.attempt, prNumber: next.prNumber, correlationId: correlation(next) });
      } else {
        enqueue.sendTo('techlead', { type: 'task.assigned', taskId: next.id, taskType: next.type, attempt: next.attempt, correlationId: correlation(next) });
      }
    }),
    requestReview: enqueueActions(({ context, enqueue }, submitted: PrSubmitted) => {
      const task = context.tasks.find((candidate) => candidate.id === submitted.taskId);
      const lastRound = task ? isLastRound({ attempt: submitted.attempt, roundStart: task.roundStart }, context.settings.maxReviewAttempts) : true;
      enqueue.assign({ tasks: context.tasks.map((candidate) => (candidate.id === submitted.taskId ? { ...candidate, status: 'in_review' as const, prNumber: submitted.prNumber } : candidate)) });
      enqueue.sendTo('moderator', {
        type: 'review.requested', taskId: submitted.taskId, prNumber: submitted.prNumber, attempt: submitted.attempt, lastRound, correlationId: submitted.correlationId,
      });
    }),
    sendFeedback: enqueueActions(({ context, enqueue }, review: ChangesRequested) => {
      const task = context.tasks.find((candidate) => candidate.id === review.taskId);
      const attempt = review.attempt + 1;
      enqueue.assign({ tasks: context.tasks.map((candidate) => (candidate.id === review.taskId ? { ...candidate, status: 'in_progress' as const, attempt } : candidate)) });
      enqueue.sendTo('techlead', {
        type: 'task.feedback',
        taskId: review.taskId,
        taskType: task?.type ?? 'feature',
        attempt,
        prNumber: review.prNumber,
        correlationId: correlationId(review.taskId, attempt),
      });
    }),
    markCurrent: assign(({ context }, status: TaskRef['status']) => ({
      tasks: withStatus(context.tasks, context.currentTaskId, status),
      currentTaskId: null,
    })),
    markFailedTask: assign(({ context }, failure: AgentFailed) => ({
      tasks: withStatus(context.tasks, failure.taskId, 'failed'),
      currentTaskId: null,
    })),
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
      enqueue.sendTo(stall.agent, { type: 'agent.retry' });
    }),
    skipTask: enqueueActions(({ context, enqueue }, skip: TaskSkip) => {
      const current = context.currentTaskId === skip.taskId;
      enqueue.assign({ tasks: withStatus(context.tasks, skip.taskId, 'skipped'), currentTaskId: current ? null : context.currentTaskId });
      if (current) {
        // Whoever holds the task drops it; their in-flight step is stopped with its state.
        enqueue.sendTo('techlead', { type: 'agent.reset' });
        enqueue.sendTo('moderator', { type: 'agent.reset' });
      }
    }),
    skipStalledTask: enqueueActions(({ context, enqueue }, stall: AgentStalled) => {
      enqueue.assign({ tasks: withStatus(context.tasks, stall.taskId, 'skipped'), currentTaskId: null });
      enqueue.sendTo(stall.agent, { type: 'agent.reset' });
    }),
  },
  guards: {
    planHasTasks: (_, plan: PlanReady) => plan.tasks.length > 0,
    autoApprove: ({ context }) => context.settings.autoApprove,
    hasPendingTask: ({ context }) => nextReadyTask(context.tasks) !== undefined,
    canImprove: ({ context }) =>
      context.improvementCycle < context.settings.maxImprovementCycles && context.tasks.every((task) => task.status === 'merged'),
    approved: (_, params: { approved: boolean }) => params.approved,
    /** A failure that stops the run whatever the task: the budget, or tests that cannot run here. */
    runFailure: (_, failure: AgentFailed) => failure.code === 'budget_exhausted' || failure.code === 'test_environment',
    isRetry: ({ context }) => context.settings.retry !== undefined,
    nextNeedsReview: ({ context }) => nextReadyTask(context.tasks)?.stage === 'review',
    nextNeedsRevision: ({ context }) => nextReadyTask(context.tasks)?.stage === 'revise',
    taskFailure: (_, failure: AgentFailed) => failure.taskId !== null && failure.code !== 'replay_mismatch',
    improverFailure: (_, failure: AgentFailed) => failure.agent === 'everThinker',
    mayRetryStall: ({ context }, stall: AgentStalled) => (context.stallRetries[stallKey(stall)] ?? 0) < 1,
    stallHasTask: (_, stall: AgentStalled) => stall.taskId !== null,
    paused: ({ context }) => context.paused,
    skipsCurrentTask: ({ context }, skip: TaskSkip) => context.currentTaskId === skip.taskId,
    skipsPendingTask: ({ context }, skip: TaskSkip) => context.tasks.some((task) => task.id === skip.taskId && task.status === 'pending'),
  },
}).createMachine({
  id: 'orchestrator',
  description: 'Drives a run through clarifying, planning, implementing, reviewing and improving to an outcome.',
  context: ({ input }) => ({
    settings: input,
    tasks: input.retry?.tasks ?? [],
    currentTaskId: null,
    improvementCycle: input.retry?.improvementCycle ?? 0,
    stallRetries: {},
    outcome: null,
    reason: null,
    paused: false,
    answers: 0,
  }),
  invoke: [
    { id: 'moderator', systemId: 'moderator', src: 'moderator' },
    { id: 'techlead', systemId: 'techlead', src: 'techlead' },
    { id: 'monitor', systemId: 'monitor', src: 'monitor', input: ({ context }) => context.settings.monitor },
    { id: 'everThinker', systemId: 'everThinker', src: 'everThinker', input: ({ context }) => ({ minPriority: context.settings.minPriority }) },
  ],
  on: {
    'monitor.limit_reached': { target: '.stopped', actions: { type: 'stopForLimit', params: ({ event }) => event } },
    'run.abort': { target: '.stopped', actions: assign({ outcome: 'cancelled', reason: ({ event }) => event.reason }) },
    'run.pause': { actions: assign({ paused: true }) },
    'run.resume': { actions: assign({ paused: false }) },
    'human.answered': { actions: assign({ answers: ({ context }) => context.answers + 1 }) },
    'task.skip': [
      { guard: { type: 'skipsCurrentTask', params: ({ event }) => event }, target: '.implementing', actions: { type: 'skipTask', params: ({ event }) => event } },
      { guard: { type: 'skipsPendingTask', params: ({ event }) => event }, actions: { type: 'skipTask', params: ({ event }) => event } },
    ],
    'agent.failed': [
      { guard: { type: 'runFailure', params: ({ event }) => event }, target: '.stopped', actions: { type: 'stopForFailure', params: ({ event }) => event } },
      { guard: { type: 'improverFailure', params: ({ event }) => event }, target: '.stopped', actions: { type: 'concludeAfterImproverFailure', params: ({ event }) => event } },
      { guard: { type: 'taskFailure', params: ({ event }) => event }, target: '.implementing', actions: { type: 'markFailedTask', params: ({ event }) => event } },
      { target: '.stopped', actions: { type: 'stopForFailure', params: ({ event }) => event } },
    ],
    'agent.stalled': [
      { guard: { type: 'mayRetryStall', params: ({ event }) => event }, actions: { type: 'retryStalled', params: ({ event }) => event } },
      { guard: { type: 'stallHasTask', params: ({ event }) => event }, target: '.implementing', actions: { type: 'skipStalledTask', params: ({ event }) => event } },
      { target: '.stopped', actions: assign({ outcome: 'stuck', reason: ({ event }) => `${event.agent} made no progress, even after a retry` }) },
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
      description: 'The TechLead implements the next task on its own branch.',
      initial: 'next',
      states: {
        next: {
          description: 'Between tasks; a paused run waits here.',
          always: [
            { guard: and([not('paused'), 'nextNeedsReview']), target: '#orchestrator.reviewing', actions: 'startNextTask' },
            { guard: and([not('paused'), 'nextNeedsRevision']), target: 'revising', actions: 'startNextTask' },
            { guard: and([not('paused'), 'hasPendingTask']), target: 'working', actions: 'startNextTask' },
            { guard: and([not('paused'), 'canImprove']), target: '#orchestrator.improving' },
            { guard: not('paused'), target: '#orchestrator.stopped', actions: 'conclude' },
          ],
        },
        working: { on: { 'pr.submitted': { target: '#orchestrator.reviewing', actions: { type: 'requestReview', params: ({ event }) => event } } } },
        revising: { on: { 'pr.submitted': { target: '#orchestrator.reviewing', actions: { type: 'requestReview', params: ({ event }) => event } } } },
      },
    },
    reviewing: {
      description: 'The Moderator reviews the PR: merge, ask for changes, or reject after the last attempt.',
      on: {
        'pr.merged': { target: 'implementing', actions: { type: 'markCurrent', params: 'merged' } },
        'review.changes_requested': { target: 'implementing.revising', actions: { type: 'sendFeedback', params: ({ event }) => event } },
        'pr.rejected': { target: 'implementing', actions: { type: 'markCurrent', params: 'rejected' } },
        'review.held': { target: 'implementing', actions: { type: 'markCurrent', params: 'held' } },
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

