import type Database from 'better-sqlite3';
import { now, statements, type Row, type Statements } from './sql.ts';
import type { TestRunRecord } from './types.ts';

const sql = {
  record: `INSERT OR REPLACE INTO test_runs (run_id, task_id, attempt, command, passed, exit_code, timed_out, duration_ms, output, lint_findings, at)
     VALUES (@runId, @taskId, @attempt, @command, @passed, @exitCode, @timedOut, @durationMs, @output, @lintFindings, @at)`,
  get: 'SELECT * FROM test_runs WHERE run_id = ? AND task_id = ? AND attempt = ?',
  latest: 'SELECT * FROM test_runs WHERE run_id = ? AND task_id = ? AND attempt <= ? ORDER BY attempt DESC LIMIT 1',
  latestMerged: `SELECT r.* FROM test_runs r JOIN pull_requests p ON p.run_id = r.run_id AND p.task_id = r.task_id WHERE r.run_id = ? AND p.status = 'merged' ORDER BY r.id DESC LIMIT 1`,
};

/** How the target's tests (and its lint command) went on each attempt at a task. Not reported as changes: no reader keeps a copy. */
export class TestRunRepository {
  readonly #sql: Statements<typeof sql>;

  constructor(db: Database.Database) {
    this.#sql = statements(db, sql);
  }

  record(run: TestRunRecord): void {
    this.#sql.record.run({ ...run, passed: run.passed ? 1 : 0, timedOut: run.timedOut ? 1 : 0, lintFindings: run.lintFindings ?? null, at: now() });
  }

  get(runId: string, taskId: string, attempt: number): TestRunRecord | undefined {
    const row = this.#sql.get.get(runId, taskId, attempt) as Row | undefined;
    return row ? toTestRun(row) : undefined;
  }

  /** The task's newest test run at or before `attempt` (a retried review tests nothing new). */
  latest(runId: string, taskId: string, attempt: number): TestRunRecord | undefined {
    const row = this.#sql.latest.get(runId, taskId, attempt) as Row | undefined;
    return row ? toTestRun(row) : undefined;
  }

  /**
   * The newest test run of a task whose PR is merged: how the tests of the latest merged work went.
   * By the PR's record, which the merge step writes before it reports the merge; the tasks table
   * follows at the next checkpoint.
   */
  latestMerged(runId: string): TestRunRecord | undefined {
    const row = this.#sql.latestMerged.get(runId) as Row | undefined;
    return row ? toTestRun(row) : undefined;
  }
}

function toTestRun(row: Row): TestRunRecord {
  return {
    runId: String(row.run_id),
    taskId: String(row.task_id),
    attempt: Number(row.attempt),
    command: String(row.command),
    passed: row.passed === 1,
    exitCode: row.exit_code === null ? null : Number(row.exit_code),
    timedOut: row.timed_out === 1,
    durationMs: Number(row.duration_ms),
    output: String(row.output),
    lintFindings: row.lint_findings === null || row.lint_findings === undefined ? null : Number(row.lint_findings),
  };
}
