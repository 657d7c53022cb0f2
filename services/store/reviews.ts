import type Database from 'better-sqlite3';
import type { ChangeReporter } from './changes.ts';
import { now, statements, type Row, type Statements } from './sql.ts';
import type { ReviewRecord } from './types.ts';

const sql = {
  record: `INSERT OR REPLACE INTO reviews (run_id, task_id, pr_number, attempt, verdict, summary, comments_json, tests_passed, at)
     VALUES (@runId, @taskId, @prNumber, @attempt, @verdict, @summary, @comments, @testsPassed, @at)`,
  list: 'SELECT * FROM reviews WHERE run_id = ? ORDER BY id',
  get: 'SELECT * FROM reviews WHERE run_id = ? AND task_id = ? AND attempt = ?',
};

/** The Moderator's review of each attempt at a task: its verdict, summary and comments. */
export class ReviewRepository {
  readonly #changes: ChangeReporter;
  readonly #sql: Statements<typeof sql>;

  constructor(db: Database.Database, changes: ChangeReporter) {
    this.#changes = changes;
    this.#sql = statements(db, sql);
  }

  /** Written again for the same attempt (a re-run review step), it replaces the first and takes a new id. */
  record(review: ReviewRecord): void {
    this.#sql.record.run({ ...review, comments: JSON.stringify(review.comments), testsPassed: review.testsPassed ? 1 : 0, at: now() });
    this.#changes.changed({ table: 'reviews', runId: review.runId, taskId: review.taskId, attempt: review.attempt });
  }

  list(runId: string): ReviewRecord[] {
    return (this.#sql.list.all(runId) as Row[]).map(toReview);
  }

  /** One row at most: reviews are unique by run, task and attempt. */
  get(runId: string, taskId: string, attempt: number): ReviewRecord | undefined {
    const row = this.#sql.get.get(runId, taskId, attempt) as Row | undefined;
    return row ? toReview(row) : undefined;
  }

  /** The task's newest review before `attempt`: the feedback a revision (or a retry) answers. */
  latestBefore(runId: string, taskId: string, attempt: number): ReviewRecord | undefined {
    return this.list(runId).filter((review) => review.taskId === taskId && review.attempt < attempt).at(-1);
  }
}

function toReview(row: Row): ReviewRecord {
  return {
    runId: String(row.run_id),
    taskId: String(row.task_id),
    prNumber: Number(row.pr_number),
    attempt: Number(row.attempt),
    verdict: row.verdict === 'approve' ? 'approve' : 'request_changes',
    summary: String(row.summary),
    comments: JSON.parse(String(row.comments_json)) as string[],
    testsPassed: row.tests_passed === 1,
  };
}
