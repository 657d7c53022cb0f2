/**
 * A task's status, one vocabulary for the charts, the store, the API and the dashboard. The
 * orchestrator's chart decides it; the tasks table is a projection of the chart's task list,
 * written in the checkpoint's own transaction, so the two never disagree.
 */
export const TASK_STATUSES = ['pending', 'in_progress', 'in_review', 'merged', 'rejected', 'failed', 'skipped', 'held'] as const;

/**
 * - `pending`: waits for its dependencies or a free TechLead.
 * - `in_progress`: being implemented or revised.
 * - `in_review`: its PR waits for or is in the Moderator's review (and merge).
 * - `held`: its PR is open and waits for a person (its review could not be read); never closed with passing tests.
 * - `merged`, `rejected`, `failed`, `skipped`: how it ended.
 */
export type TaskStatus = (typeof TASK_STATUSES)[number];

/** Statuses a task no longer leaves by itself (a person's retry can re-queue all but merged). */
export const FINISHED_STATUSES: ReadonlySet<TaskStatus> = new Set(['merged', 'rejected', 'failed', 'skipped', 'held']);
