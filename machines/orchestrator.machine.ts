import { and, assign, enqueueActions, fromPromise, not, sendTo, setup } from 'xstate';
import { everThinkerMachine } from './ever-thinker.machine.ts';
import type {
  AgentFailed, AgentId, AgentStalled, AlertAcknowledged, ChangesRequested, ForecastOverBudget, HealthAlert, HumanApproved, HumanRejected, ImprovementsExhausted,
  HumanAnswered, ImprovementsProposed, LimitReached, NewTaskRef, Outcome, PlanReady, PrMerged, PrRejected, PrSubmitted, QuestionTimeout, ReviewHeld, RunAbort, RunPause,
  RunResume, ScopeClarified, StopCondition, StopRecord, TaskRef, TaskSkip,
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
  /** Answers people gave (the texts are journaled, and kept with the questions). */
  answers: number;
  /** The stopping condition that ended the run, when one did: `--resume` continues from it once its limit is relaxed. */
  stop: StopRecord | null;
  /** A question a person is asked now. */
  asking: Asking | null;
  /** A person chose to go on although the forecast passes the budget: not asked again under the same limits. */
  budgetAccepted: boolean;
  /** Tasks merged when a task was last skipped for stagnation: another stall before the next merge means the run is stuck. */
  stagnationSkip: { merged: number } | null;
}

type OrchestratorEvent =
  | ScopeClarified | PlanReady | PrSubmitted | ChangesRequested | PrRejected | PrMerged | ReviewHeld | ImprovementsProposed | ImprovementsExhausted
  | AgentFailed | AgentStalled | LimitReached | HealthAlert | HumanApproved | HumanRejected | HumanAnswered | RunAbort | RunPause | RunResume
  | TaskSkip | ForecastOverBudget | QuestionTimeout | AlertAcknowledged;

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
const stopIn = (self: { getSnapshot(): { value: unknown } }, condition: StopCondition, limit: number | null): StopRecord => ({
  condition,
  limit,
  phase: phaseOf(self.getSnapshot().value),
});

const inFlight = (task: TaskRef): boolean => task.status === 'in_progress' || task.status === 'in_review';

/**
 * Times a task was handed out in its current allowance: its review rounds since the allowance
 * started, plus the restarts after stagnation granted for it.
 */
export function triesOf(task: TaskRef, stallRetries: Record<string, number>): number {
  const restarts = Object.entries(stallRetries).filter(([key]) => key.endsWith(`:${task.id}`)).reduce((sum, [, count]) => sum + count, 0);
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
      const since = context.stagnationSkip !== null && stall.taskId !== null ? `, and ${stall.taskId} stalled too with nothing merged since the last task was skipped` : '';
      return { outcome: 'stuck' as const, reason: `${stall.agent} made no progress, even after a retry with a different approach${since}`, stop: stopIn(self, 'stagnation', null) };
    }),
    retryStalled: enqueueActions(({ context, enqueue }, stall: AgentStalled) => {
      const key = stallKey(stall);
      const approach = (context.stallRetries[key] ?? 0) + 1;
      enqueue.assign({ stallRetries: { ...context.stallRetries, [key]: approach } });
      enqueue.sendTo(stall.agent, { type: 'agent.retry', approach });
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
        ? `~${forecast.tokensAtFinish.toLocaleString('en-US')} tokens, past limits.max_tokens_total ${forecast.maxTokensTotal.toLocaleString('en-US')}`
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
      enqueue.assign({ tasks: withStatus(context.tasks, stall.taskId, 'skipped'), currentTaskId: null, stagnationSkip: { merged: mergedCount(context.tasks) } });
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
    // A budget question holds new work as a pause does, until it is answered.
    paused: ({ context }) => context.paused || context.asking?.kind === 'budget',
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
    stalledAgainAfterSkip: ({ context }, stall: AgentStalled) => stall.taskId !== null && context.stagnationSkip !== null && context.stagnationSkip.merged === mergedCount(context.tasks),
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
    stop: null,
    asking: null,
    budgetAccepted: false,
    stagnationSkip: null,
  }),
  invoke: [
    { id: 'moderator', systemId: 'moderator', src: 'moderator' },
    { id: 'techlead', systemId: 'techlead', src: 'techlead' },
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
    // Stagnation: a retry with a different approach, then the task skipped for a person, then stuck.
    'agent.stalled': [
      { guard: { type: 'stalledAgainAfterSkip', params: ({ event }) => event }, target: '.stopped', actions: { type: 'stopStuck', params: ({ event }) => event } },
      { guard: { type: 'mayRetryStall', params: ({ event }) => event }, actions: { type: 'retryStalled', params: ({ event }) => event } },
      { guard: { type: 'stallHasTask', params: ({ event }) => event }, target: '.implementing', actions: { type: 'skipStalledTask', params: ({ event }) => event } },
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

