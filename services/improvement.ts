import { parseCoverage, parseTestCounts, type TestCounts } from './test-signals.ts';

/**
 * How much an improvement cycle measurably improved the project, from real signals: the test run
 * of the latest merged work before and after the cycle (tests passing, tests in all, line
 * coverage when the run printed it, lint findings when `project.lint_command` is set) and how
 * cleanly the Moderator accepted the cycle's tasks (review rounds). Pure functions; the
 * Ever-Thinker's measure step reads the records and stores the result per cycle.
 */

export interface Signals {
  /** The task whose test run the signals come from, and its round. */
  from: { taskId: string; attempt: number } | null;
  tests: TestCounts | null;
  coverage: number | null;
  lint: number | null;
}

export const NO_SIGNALS: Signals = { from: null, tests: null, coverage: null, lint: null };

export function signalsOf(run: { taskId: string; attempt: number; output: string; lintFindings?: number | null | undefined } | undefined): Signals {
  if (!run) return NO_SIGNALS;
  return { from: { taskId: run.taskId, attempt: run.attempt }, tests: parseTestCounts(run.output), coverage: parseCoverage(run.output), lint: run.lintFindings ?? null };
}

/** 1 for a task merged at its first review, 1/n after n rounds, 0 for one that did not merge; the mean over a cycle's tasks. */
export function reviewScore(tasks: readonly { merged: boolean; rounds: number }[]): number {
  if (tasks.length === 0) return 0;
  return tasks.reduce((sum, task) => sum + (task.merged ? 1 / Math.max(1, task.rounds) : 0), 0) / tasks.length;
}

const clamp = (value: number): number => Math.max(-1, Math.min(1, value));
const relative = (before: number, after: number): number => clamp((after - before) / Math.max(before, 1));

export interface Magnitude {
  /** The mean of the signals' changes (each -1..1, positive is better) times the review score; null when no signal was measured on both sides. */
  value: number | null;
  /** Each change that went into it, for people. */
  changes: Record<string, number>;
}

export function magnitudeOf(before: Signals, after: Signals, review: number): Magnitude {
  const changes: Record<string, number> = {};
  if (before.tests && after.tests) {
    changes.tests_passing = relative(before.tests.passed, after.tests.passed);
    changes.test_count = relative(before.tests.total, after.tests.total);
  }
  // Fewer findings is better.
  if (before.lint !== null && after.lint !== null) changes.lint_findings = relative(after.lint, before.lint);
  // Ten points of coverage count as much as doubling the tests.
  if (before.coverage !== null && after.coverage !== null) changes.coverage = clamp((after.coverage - before.coverage) / 10);
  const values = Object.values(changes);
  if (values.length === 0) return { value: null, changes };
  const mean = values.reduce((sum, value) => sum + value, 0) / values.length;
  return { value: Math.round(Math.max(0, mean) * review * 10_000) / 10_000, changes: { ...changes, review } };
}

/** An improvement idea of an earlier run and how it ended; `impact` is its cycle's measured magnitude. */
export interface PastIdea {
  angle: string | null;
  outcome: string;
  impact?: number | null | undefined;
}

/** A magnitude this large counts as a full success when learning from it. */
const FULL_IMPACT = 0.2;

/**
 * How much earlier runs' ideas of one angle say about a new one, -2..+2 added to its priority:
 * merged ideas raise it by their measured impact, ideas turned down (rejected, failed, skipped,
 * held) lower it. Ideas that stayed below the threshold were never tried and say nothing.
 */
export function learnedBonus(angle: string, past: readonly PastIdea[]): number {
  const tried = past.filter((idea) => idea.angle === angle && idea.outcome !== 'below threshold');
  if (tried.length === 0) return 0;
  const merged = tried.filter((idea) => idea.outcome === 'merged');
  const impact = merged.length === 0 ? 0 : merged.reduce((sum, idea) => sum + Math.min(1, Math.max(0, idea.impact ?? 0) / FULL_IMPACT), 0) / merged.length;
  const bonus = 2 * impact * (merged.length / tried.length) - 2 * ((tried.length - merged.length) / tried.length);
  return Math.round(Math.max(-2, Math.min(2, bonus)) * 10) / 10;
}
