import type Database from 'better-sqlite3';
import type { ChangeReporter } from './changes.ts';
import { now, statements, type Row, type Statements } from './sql.ts';
import type { PullRequestRecord } from './types.ts';

const sql = {
  insert: `INSERT INTO pull_requests (run_id, task_id, provider, branch, base, title, body, status, head_sha, merge_sha, remote_number, url, created_at, updated_at)
     VALUES (@runId, @taskId, @provider, @branch, @base, @title, @body, 'open', @headSha, NULL, @remoteNumber, @url, @at, @at)`,
  updateHead: 'UPDATE pull_requests SET head_sha = ?, revision = MAX(revision, ?), body = COALESCE(?, body), updated_at = ? WHERE number = ?',
  markMerged: `UPDATE pull_requests SET status = 'merged', merge_sha = ?, updated_at = ? WHERE number = ?`,
  markClosed: `UPDATE pull_requests SET status = 'closed', updated_at = ? WHERE number = ? AND status = 'open'`,
  get: 'SELECT * FROM pull_requests WHERE number = ?',
  inRun: 'SELECT * FROM pull_requests WHERE number = ? AND run_id = ?',
  forTask: 'SELECT * FROM pull_requests WHERE run_id = ? AND task_id = ? ORDER BY number DESC LIMIT 1',
  forBranch: 'SELECT * FROM pull_requests WHERE run_id = ? AND task_id = ? AND branch = ?',
  list: 'SELECT * FROM pull_requests WHERE run_id = ? ORDER BY number',
};

/** The pull requests of the target, local and on GitHub, numbered by Moderator across every run. */
export class PullRequestRepository {
  readonly #changes: ChangeReporter;
  readonly #sql: Statements<typeof sql>;

  constructor(db: Database.Database, changes: ChangeReporter) {
    this.#changes = changes;
    this.#sql = statements(db, sql);
  }

  /** Opens the PR of a task, or returns the one already open (a re-run submit opens nothing new). */
  open(
    pr: Omit<PullRequestRecord, 'number' | 'status' | 'mergeSha' | 'revision' | 'createdAt' | 'updatedAt' | 'remoteNumber' | 'url'> &
      Partial<Pick<PullRequestRecord, 'remoteNumber' | 'url'>>,
  ): PullRequestRecord {
    // Look first: a conflicting INSERT OR IGNORE would still burn an AUTOINCREMENT number.
    const existing = this.forBranch(pr.runId, pr.taskId, pr.branch);
    if (existing) return existing;
    const at = now();
    this.#sql.insert.run({ ...pr, remoteNumber: pr.remoteNumber ?? null, url: pr.url ?? null, at });
    const opened = this.forBranch(pr.runId, pr.taskId, pr.branch) as PullRequestRecord;
    this.#changes.changed({ table: 'pull_requests', number: opened.number });
    return opened;
  }

  updateHead(number: number, headSha: string, revision: number, body?: string): void {
    this.#sql.updateHead.run(headSha, revision, body ?? null, now(), number);
    this.#changes.changed({ table: 'pull_requests', number });
  }

  markMerged(number: number, mergeSha: string): void {
    this.#sql.markMerged.run(mergeSha, now(), number);
    this.#changes.changed({ table: 'pull_requests', number });
  }

  markClosed(number: number): void {
    this.#sql.markClosed.run(now(), number);
    this.#changes.changed({ table: 'pull_requests', number });
  }

  get(number: number): PullRequestRecord | undefined {
    const row = this.#sql.get.get(number) as Row | undefined;
    return row ? toPullRequest(row) : undefined;
  }

  /** One PR of the run by its number (a provider's `get`, several times a task: one row, not the run's list). */
  inRun(runId: string, number: number): PullRequestRecord | undefined {
    const row = this.#sql.inRun.get(number, runId) as Row | undefined;
    return row ? toPullRequest(row) : undefined;
  }

  /** The task's newest PR: the one of its current branch (a re-implemented task has two). */
  forTask(runId: string, taskId: string): PullRequestRecord | undefined {
    const row = this.#sql.forTask.get(runId, taskId) as Row | undefined;
    return row ? toPullRequest(row) : undefined;
  }

  forBranch(runId: string, taskId: string, branch: string): PullRequestRecord | undefined {
    const row = this.#sql.forBranch.get(runId, taskId, branch) as Row | undefined;
    return row ? toPullRequest(row) : undefined;
  }

  list(runId: string): PullRequestRecord[] {
    return (this.#sql.list.all(runId) as Row[]).map(toPullRequest);
  }
}

function toPullRequest(row: Row): PullRequestRecord {
  return {
    number: Number(row.number),
    runId: String(row.run_id),
    taskId: String(row.task_id),
    provider: String(row.provider),
    branch: String(row.branch),
    base: String(row.base),
    title: String(row.title),
    body: String(row.body),
    status: row.status as PullRequestRecord['status'],
    headSha: row.head_sha === null ? null : String(row.head_sha),
    mergeSha: row.merge_sha === null ? null : String(row.merge_sha),
    remoteNumber: row.remote_number === null || row.remote_number === undefined ? null : Number(row.remote_number),
    url: row.url === null || row.url === undefined ? null : String(row.url),
    revision: Number(row.revision),
    createdAt: String(row.created_at),
    updatedAt: String(row.updated_at),
  };
}
