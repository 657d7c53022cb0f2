import type Database from 'better-sqlite3';
import type { ChangeReporter } from './changes.ts';
import type { PullRequestRepository } from './pull-requests.ts';
import { now, statements, type Row, type Statements } from './sql.ts';
import { StoreError } from './store-error.ts';
import type { NewTask, TaskProjection, TaskRecord, TaskStatus } from './types.ts';

/** A task with where it sorts among the run's tasks (created, then inserted), for a reader that keeps them in order. */
export interface OrderedTask {
  record: TaskRecord;
  order: [createdAt: string, seq: number];
}

const sql = {
  insert: `INSERT OR IGNORE INTO tasks (run_id, id, title, type, description, acceptance_json, depends_json, origin, angle,
       priority, status, created_at, updated_at)
     VALUES (@runId, @id, @title, @type, @description, @acceptance, @depends, @origin, @angle, @priority, 'pending', @at, @at)`,
  ids: `SELECT id FROM tasks`,
  get: 'SELECT * FROM tasks WHERE run_id = ? AND id = ?',
  list: 'SELECT * FROM tasks WHERE run_id = ? ORDER BY created_at, rowid',
  ordered: 'SELECT rowid AS seq, * FROM tasks WHERE run_id = ? AND id = ?',
  listOrdered: 'SELECT rowid AS seq, * FROM tasks WHERE run_id = ? ORDER BY created_at, rowid',
  project: 'UPDATE tasks SET status = ?, attempts = ?, updated_at = ? WHERE run_id = ? AND id = ?',
  update: 'UPDATE tasks SET status = ?, attempts = ?, branch = ?, pr_number = ?, pr_url = ?, updated_at = ? WHERE run_id = ? AND id = ?',
};

/** The tasks of each run: what the plan and the Ever-Thinker asked for, and where each stands. */
export class TaskRepository {
  readonly #changes: ChangeReporter;
  readonly #sql: Statements<typeof sql>;
  readonly #pullRequests: PullRequestRepository;

  constructor(db: Database.Database, changes: ChangeReporter, pullRequests: PullRequestRepository) {
    this.#changes = changes;
    this.#sql = statements(db, sql);
    this.#pullRequests = pullRequests;
  }

  /** Inserts tasks that are not there yet; a re-run plan step changes nothing. */
  add(runId: string, tasks: NewTask[]): void {
    const at = now();
    this.#changes.transaction(() => {
      for (const task of tasks) {
        this.#sql.insert.run({
          runId,
          id: task.id,
          title: task.title,
          type: task.type,
          description: task.description,
          acceptance: JSON.stringify(task.acceptanceCriteria),
          depends: JSON.stringify(task.dependsOn),
          origin: task.origin,
          angle: task.angle ?? null,
          priority: task.priority ?? null,
          at,
        });
      }
      this.#changes.changed({ table: 'tasks', runId, taskIds: tasks.map((task) => task.id) });
    });
  }

  /**
   * The next free number for a `T<n>` task id in this target, over every run: branches, commit
   * trailers and merge trailers are named after task ids, so ids must not repeat across runs.
   */
  nextNumber(): number {
    const rows = this.#sql.ids.all() as Row[];
    const numbers = rows.map((row) => /^T(\d+)$/.exec(String(row.id))?.[1]).filter((n): n is string => n !== undefined).map(Number);
    return Math.max(0, ...numbers) + 1;
  }

  get(runId: string, id: string): TaskRecord | undefined {
    const row = this.#sql.get.get(runId, id) as Row | undefined;
    return row ? toTask(row) : undefined;
  }

  list(runId: string): TaskRecord[] {
    return (this.#sql.list.all(runId) as Row[]).map(toTask);
  }

  ordered(runId: string, id: string): OrderedTask | undefined {
    const row = this.#sql.ordered.get(runId, id) as Row | undefined;
    return row ? toOrderedTask(row) : undefined;
  }

  /** As `list` gives them, each with its place in that order. */
  listOrdered(runId: string): OrderedTask[] {
    return (this.#sql.listOrdered.all(runId) as Row[]).map(toOrderedTask);
  }

  /**
   * Writes the orchestrator's task list into the tasks table: the one writer of task status (and
   * of the attempt a started task is in). Called inside the checkpoint's transaction, so the table
   * always says what the checkpointed chart says. A task newly skipped has its local PR record
   * closed; a PR on GitHub is left for a person (see the README).
   */
  project(runId: string, tasks: readonly TaskProjection[]): void {
    const current = new Map(this.list(runId).map((task) => [task.id, task]));
    const written: string[] = [];
    for (const task of tasks) {
      const stored = current.get(task.id);
      if (!stored) continue;
      const attempts = task.status === 'pending' ? stored.attempts : task.attempt;
      if (stored.status === task.status && stored.attempts === attempts) continue;
      this.#sql.project.run(task.status, attempts, now(), runId, task.id);
      written.push(task.id);
      if (task.status === 'skipped' && stored.status !== 'skipped') {
        const pr = this.#pullRequests.forTask(runId, task.id);
        if (pr?.status === 'open' && pr.provider === 'local') this.#pullRequests.markClosed(pr.number);
      }
    }
    if (written.length > 0) this.#changes.changed({ table: 'tasks', runId, taskIds: written });
  }

  update(runId: string, id: string, change: { status?: TaskStatus; attempts?: number; branch?: string; prNumber?: number; prUrl?: string | null }): void {
    const current = this.get(runId, id);
    if (!current) throw new StoreError(`unknown task ${id} in run ${runId}`);
    this.#sql.update.run(
      change.status ?? current.status,
      change.attempts ?? current.attempts,
      change.branch ?? current.branch,
      change.prNumber ?? current.prNumber,
      change.prUrl ?? current.prUrl,
      now(),
      runId,
      id,
    );
    this.#changes.changed({ table: 'tasks', runId, taskIds: [id] });
  }
}

function toOrderedTask(row: Row): OrderedTask {
  return { record: toTask(row), order: [String(row.created_at), Number(row.seq)] };
}

function toTask(row: Row): TaskRecord {
  return {
    runId: String(row.run_id),
    id: String(row.id),
    title: String(row.title),
    type: String(row.type),
    description: String(row.description),
    acceptanceCriteria: JSON.parse(String(row.acceptance_json)) as string[],
    dependsOn: JSON.parse(String(row.depends_json)) as string[],
    origin: row.origin === 'improvement' ? 'improvement' : 'plan',
    angle: row.angle === null ? null : String(row.angle),
    priority: row.priority === null ? null : Number(row.priority),
    status: row.status as TaskStatus,
    attempts: Number(row.attempts),
    branch: row.branch === null ? null : String(row.branch),
    prNumber: row.pr_number === null ? null : Number(row.pr_number),
    prUrl: row.pr_url === null || row.pr_url === undefined ? null : String(row.pr_url),
  };
}
