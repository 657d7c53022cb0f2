import { isErrorCode, isStorageFull, type ErrorCode } from '../errors.ts';
import type { TaskStatus } from '../protocol/tasks.ts';

/**
 * The typed vocabulary the agents speak. Every inter-agent event is namespaced (`task.assigned`)
 * and journaled; payloads stay small (ids and counters): texts live in the store.
 */

export type Outcome = 'done' | 'budget_exhausted' | 'stuck' | 'needs_human' | 'failed' | 'cancelled';

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
export type MergeRequested = { type: 'merge.requested'; taskId: string; prNumber: number; attempt: number; correlationId: string };
export type ImproveRequested = { type: 'improve.requested'; cycle: number };
export type AgentRetry = { type: 'agent.retry' };
export type AgentReset = { type: 'agent.reset' };

// ---- agents -> orchestrator
export type ScopeClarified = { type: 'scope.clarified'; assumptions: number; questions: number };
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
export type ImprovementsExhausted = { type: 'improvements.exhausted'; cycle: number; bestPriority: number | null };
/** `actor` is the failing actor's id (`techlead-2`): where the orchestrator sends a retry or a reset. */
export type AgentFailed = { type: 'agent.failed'; agent: AgentId; actor: string; taskId: string | null; code: ErrorCode; message: string };
export type AgentStalled = { type: 'agent.stalled'; agent: AgentId; actor: string; taskId: string | null };

// ---- monitor
export type LimitReached = { type: 'monitor.limit_reached'; outcome: Outcome; reason: string };
export type HealthAlert = { type: 'health.alert'; level: 'warning' | 'critical'; kind: string; message: string };
export type AgentStagnant = { type: 'agent.stagnant'; idleMinutes: number };

// ---- people (the CLI, later the monitoring server)
export type HumanApproved = { type: 'human.approved' };
export type HumanRejected = { type: 'human.rejected'; reason: string };
export type RunAbort = { type: 'run.abort'; reason: string };
export type HumanAnswered = { type: 'human.answered'; answer: string };
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
  'human.answered', 'run.pause', 'run.resume', 'task.skip',
] as const;

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
