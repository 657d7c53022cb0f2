import { isErrorCode, isStorageFull, type ErrorCode } from '../errors.ts';
import type { StopCondition } from '../protocol/stops.ts';
import type { TaskStatus } from '../protocol/tasks.ts';

/**
 * The typed vocabulary the agents speak. Every inter-agent event is namespaced (`task.assigned`)
 * and journaled; payloads stay small (ids and counters): texts live in the store.
 */

export type { Outcome, StopCondition, StopRecord } from '../protocol/stops.ts';
import type { Outcome } from '../protocol/stops.ts';

export type { AgentId } from '../protocol/agents.ts';
import type { AgentId } from '../protocol/agents.ts';

/** What a pending task needs next: a first implementation, a revision of its open PR, or only a review. */
export type TaskStage = 'implement' | 'revise' | 'review';

/** A task as the orchestrator tracks it; its text is in the `tasks` table. */
export interface TaskRef {
  id: string;
  type: string;
  origin: 'plan' | 'improvement';
  /** One vocabulary with the store and the API (protocol/tasks.ts); this chart decides it. */
  status: TaskStatus;
  /** Review round the task is in: 1 for the first implementation, +1 per revision (and per retry). */
  attempt: number;
  /** The attempt its current allowance of `max_review_attempts` rounds started at: 1, or where a retry re-queued it. */
  roundStart: number;
  /** What the task needs when it is next started. */
  stage: TaskStage;
  /** Its PR, once submitted. */
  prNumber: number | null;
  /**
   * Times the merge queue sent it back since its branch was made, because bringing the branch up
   * to date with the base conflicted or broke the tests (`limits.max_conflict_rounds`).
   */
  conflictRounds: number;
  /** Which branch of the task: 1, then 2 once it was re-implemented on a fresh branch from a newer base. */
  generation: number;
  /** Tasks that must be merged first; a task whose dependency did not merge is skipped. */
  dependsOn: string[];
}

export interface NewTaskRef {
  id: string;
  type: string;
  dependsOn?: string[];
}

// ---- orchestrator -> agents
export type ClarifyRequested = { type: 'clarify.requested' };
export type PlanRequested = { type: 'plan.requested' };
export type TaskAssigned = { type: 'task.assigned'; taskId: string; taskType: string; attempt: number; generation: number; correlationId: string };
export type TaskFeedback = { type: 'task.feedback'; taskId: string; taskType: string; attempt: number; generation: number; prNumber: number; correlationId: string };
export type ReviewRequested = {
  type: 'review.requested';
  taskId: string;
  prNumber: number;
  attempt: number;
  /** The orchestrator decides the review cap: on the last round, changes requested mean the task is rejected. */
  lastRound: boolean;
  correlationId: string;
};
/** To the merge queue: bring the approved PR up to date with the base, test it again if it moved, merge it. */
/** `behind`: the approved PRs queued after this one, in order, so their merges can be tested ahead of their turn. */
export type MergeRequested = { type: 'merge.requested'; taskId: string; prNumber: number; attempt: number; behind?: QueuedMerge[]; correlationId: string };
export type QueuedMerge = { taskId: string; prNumber: number };
/**
 * A PR joined the merge queue while it was busy: the whole queue behind the PR merging, so the
 * newcomer's merge can be tested ahead of its turn too. A hint that changes no state: not journaled.
 */
export type MergeQueued = { type: 'merge.queued'; behind: QueuedMerge[] };
export type ImproveRequested = { type: 'improve.requested'; cycle: number };
/** Go back to the step that stalled; `approach` > 0 asks for a different approach than the ones before (the TechLead's prompt says what they did). */
export type AgentRetry = { type: 'agent.retry'; approach?: number };
export type AgentReset = { type: 'agent.reset' };

// ---- agents -> orchestrator
/** `questionIds`: the questions for a person, stored with their texts (`Q1`, `Q2`, ...). */
export type ScopeClarified = { type: 'scope.clarified'; assumptions: number; questions: number; questionIds?: string[] };
export type PlanReady = { type: 'plan.ready'; tasks: NewTaskRef[] };
export type PrSubmitted = { type: 'pr.submitted'; taskId: string; prNumber: number; attempt: number; testsPassed: boolean; correlationId: string };
export type ChangesRequested = { type: 'review.changes_requested'; taskId: string; prNumber: number; attempt: number; correlationId: string };
export type PrRejected = { type: 'pr.rejected'; taskId: string; prNumber: number; attempt: number; correlationId: string };
/** The Moderator approved the PR: it joins the merge queue. */
export type PrApproved = { type: 'pr.approved'; taskId: string; prNumber: number; attempt: number; correlationId: string };
export type PrMerged = { type: 'pr.merged'; taskId: string; prNumber: number; correlationId: string };
/**
 * The merge queue could not merge the PR: bringing its branch up to date with the base
 * conflicted, or the tests fail on the updated branch. What was found is recorded as the round's
 * review, which the revision reads; the orchestrator decides: revise, re-implement, or a person.
 */
export type MergeBlocked = {
  type: 'merge.blocked';
  taskId: string;
  prNumber: number;
  attempt: number;
  reason: 'conflict' | 'tests_failed';
  /** The files in conflict, or the failing command: for people reading the journal. */
  detail: string;
  correlationId: string;
};
/** The review could not be had (the model's verdict stayed unreadable): the PR stays open for a person. */
export type ReviewHeld = { type: 'review.held'; taskId: string; prNumber: number; attempt: number; reason: string; correlationId: string };
export type ImprovementsProposed = { type: 'improvements.proposed'; cycle: number; tasks: NewTaskRef[] };
/**
 * The cycles end: no proposal reached `min_priority` (`min_priority`), or the cycle before
 * measurably improved the project by less than `limits.min_improvement` (`diminishing_returns`).
 */
export type ImprovementsExhausted = {
  type: 'improvements.exhausted';
  cycle: number;
  bestPriority: number | null;
  why?: 'min_priority' | 'diminishing_returns';
  /** The measured magnitude of the cycle before, when there was one. */
  magnitude?: number | null;
};
/** `actor` is the failing actor's id (`techlead-2`): where the orchestrator sends a retry or a reset. */
export type AgentFailed = { type: 'agent.failed'; agent: AgentId; actor: string; taskId: string | null; code: ErrorCode; message: string };
export type AgentStalled = { type: 'agent.stalled'; agent: AgentId; actor: string; taskId: string | null };

// ---- monitor
export type LimitReached = { type: 'monitor.limit_reached'; outcome: Outcome; reason: string; condition?: StopCondition; limit?: number | null };
/** An alert of the Monitor: stored, and sent to `agents.monitor.alert_channels`. */
export type HealthAlert = { type: 'health.alert'; level: 'warning' | 'critical'; kind: string; message: string; at?: string };
/** `idleMinutes`: how long the agent showed no progress (it may have been busy all along). */
export type AgentStagnant = { type: 'agent.stagnant'; idleMinutes: number };
/** The forecast to finish passes a budget; told once per budget. */
export type ForecastOverBudget = {
  type: 'forecast.over_budget';
  budget: 'tokens' | 'cost';
  tokensAtFinish: number;
  costAtFinish: number;
  tasksLeft: number;
  maxTokensTotal: number;
  maxCostUsd: number | null;
};
/** A question to a person was not answered within `limits.intervention_timeout_minutes`. */
export type QuestionTimeout = { type: 'question.timeout'; id: string };
/** The orchestrator asks the Monitor (the agent with a clock) to keep a deadline, and to drop it. */
export type DeadlineSet = { type: 'deadline.set'; id: string; ms: number };
export type DeadlineClear = { type: 'deadline.clear'; id: string };

// ---- people (the CLI, later the monitoring server)
export type HumanApproved = { type: 'human.approved' };
export type HumanRejected = { type: 'human.rejected'; reason: string };
export type RunAbort = { type: 'run.abort'; reason: string };
/** `questionId`: a clarify question (`Q1`), or `budget` (answer `continue` or `stop`). */
export type HumanAnswered = { type: 'human.answered'; answer: string; questionId?: string };
/** A person saw an alert; journaled (the alert's row carries the acknowledgement). */
export type AlertAcknowledged = { type: 'alert.acknowledged'; alertId: number };
/** Finish what is in flight, start nothing new, until `run.resume`. */
export type RunPause = { type: 'run.pause' };
export type RunResume = { type: 'run.resume' };
export type TaskSkip = { type: 'task.skip'; taskId: string; reason?: string };

/** Every namespaced event type, for journaling filters. */
export const interAgentEventTypes = [
  'clarify.requested', 'plan.requested', 'task.assigned', 'task.feedback', 'review.requested', 'merge.requested', 'improve.requested',
  'agent.retry', 'agent.reset', 'scope.clarified', 'plan.ready', 'pr.submitted', 'review.changes_requested',
  'pr.rejected', 'pr.approved', 'pr.merged', 'merge.blocked', 'review.held', 'improvements.proposed', 'improvements.exhausted', 'agent.failed', 'agent.stalled',
  'monitor.limit_reached', 'health.alert', 'agent.stagnant', 'human.approved', 'human.rejected', 'run.abort',
  'human.answered', 'run.pause', 'run.resume', 'task.skip', 'forecast.over_budget', 'question.timeout', 'deadline.set', 'deadline.clear',
  'alert.acknowledged',
] as const;

/** What people send (the terminal, the monitoring server): each is printed on the console when journaled. */
export const interventionEventTypes: ReadonlySet<string> = new Set([
  'human.approved', 'human.rejected', 'human.answered', 'run.abort', 'run.pause', 'run.resume', 'task.skip', 'alert.acknowledged',
]);

/**
 * What failed effects carry out of an actor: a code the orchestrator can act on. A full disk is
 * `storage_full` whatever failed on it (git, SQLite, a file write): the session halts on that code,
 * resumable, instead of counting it against the task.
 */
export function errorCode(error: unknown): ErrorCode {
  if (isStorageFull(error)) return 'storage_full';
  const code = typeof error === 'object' && error !== null && 'code' in error ? error.code : undefined;
  return isErrorCode(code) ? code : 'unexpected';
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
