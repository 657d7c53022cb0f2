import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { migrations } from './migrations.ts';
import { StoreError } from './store-error.ts';
import { messageOf } from '../../errors.ts';
import type {
  AlertRecord, ImprovementCycleRecord, JournalMessage, MetricsRow, ModelCallFinish, ModelCallRecord, ModelCallStart, NewRun, NewTask,
  PullRequestRecord, QuestionRecord, ReviewRecord, RunRecord, RunStatus, RunTotals, StoredAlert, TaskProjection, TaskRecord, TaskStatus, TestRunRecord,
} from './types.ts';

export * from './types.ts';

export interface UsageLine {
  calls: number;
  tokens: number;
  costUsd: number;
}

/** Where Moderator keeps everything for a target: `<target>/.duo-agent`. */
export function stateDir(target: string): string {
  return path.join(target, '.duo-agent');
}

export function databasePath(target: string): string {
  return path.join(stateDir(target), 'moderator.db');
}

type Row = Record<string, unknown>;

/**
 * What a committed write changed, for readers that keep their own copy (the monitoring server's
 * run view re-reads that one row instead of querying per request). Writes to the tables named
 * here are reported; snapshots, messages, effects and test runs are not.
 */
export type StoreChange =
  | { table: 'runs'; runId: string }
  | { table: 'tasks'; runId: string; taskIds: string[] }
  | { table: 'pull_requests'; number: number }
  | { table: 'reviews'; runId: string; taskId: string; attempt: number }
  | { table: 'model_calls'; id: number }
  | { table: 'alerts'; id: number }
  | { table: 'metrics'; id: number }
  | { table: 'questions'; runId: string }
  | { table: 'improvement_cycles'; runId: string };

const now = (): string => new Date().toISOString();

/**
 * The SQLite store of one target repository. Synchronous (better-sqlite3): every write is
 * durable when the call returns, which is what makes "journal, then act" reasoning hold.
 */
export class Store {
  readonly db: Database.Database;
  private readonly listeners = new Set<(change: StoreChange) => void>();
  /** Changes made inside the open transaction: reported once it commits, dropped if it rolls back. */
  private uncommitted: StoreChange[] = [];

  private constructor(db: Database.Database) {
    this.db = db;
  }

  /** Opens (creating if needed) and migrates the database at `file`, or `:memory:`. */
  static open(file: string): Store {
    let db: Database.Database;
    try {
      if (file !== ':memory:') fs.mkdirSync(path.dirname(file), { recursive: true });
      db = new Database(file);
      db.pragma('journal_mode = WAL');
      // NORMAL in WAL mode survives a process kill (only an OS crash may lose the last commits).
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
      db.pragma('busy_timeout = 5000');
    } catch (error) {
      throw new StoreError(`cannot open the database ${file}: ${messageOf(error)}`, { cause: error });
    }
    const store = new Store(db);
    store.migrate(file);
    return store;
  }

  /** Opens the database at `file` when there is one; readers never create an empty database. */
  static openIfExists(file: string): Store | undefined {
    return fs.existsSync(file) ? Store.open(file) : undefined;
  }

  private migrate(file: string): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version > migrations.length) {
      throw new StoreError(
        `the database ${file} was written by a newer Moderator (schema ${version}, this one knows ${migrations.length}): upgrade Moderator`,
      );
    }
    for (let index = version; index < migrations.length; index += 1) {
      const migrate = this.db.transaction(() => {
        this.db.exec(migrations[index] as string);
        this.db.pragma(`user_version = ${index + 1}`);
      });
      migrate();
    }
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  transaction<T>(work: () => T): T {
    let result: T;
    try {
      result = this.db.transaction(work)();
    } catch (error) {
      if (!this.db.inTransaction) this.uncommitted = [];
      throw error;
    }
    if (!this.db.inTransaction) {
      const committed = this.uncommitted;
      this.uncommitted = [];
      for (const change of committed) this.report(change);
    }
    return result;
  }

  /** Calls `listener` after each committed write to the tables `StoreChange` names; returns how to stop. */
  onChange(listener: (change: StoreChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(change: StoreChange): void {
    if (this.listeners.size === 0) return;
    this.uncommitted.push(change);
    if (this.db.inTransaction) return;
    // Also what a transaction opened without `transaction()` left behind: a listener re-reads
    // the rows, so a change that was rolled back after all is only a wasted read.
    const committed = this.uncommitted;
    this.uncommitted = [];
    for (const each of committed) this.report(each);
  }

  private report(change: StoreChange): void {
    for (const listener of this.listeners) {
      try {
        listener(change);
      } catch {
        // A reader's copy going wrong never fails the write it observed (the write is durable).
      }
    }
  }

  // ---- runs ------------------------------------------------------------------------------

  /**
   * Creates the run unless another live process runs one on this target: the check and the
   * insert in one IMMEDIATE transaction, so two processes can never both pass the check.
   */
  createRunExclusive(run: NewRun, isAlive: (pid: number) => boolean): void {
    this.db
      .transaction(() => {
        const busy = this.listRuns().find((other) => other.status === 'running' && other.pid !== null && other.pid !== process.pid && other.host === os.hostname() && isAlive(other.pid));
        if (busy) throw new StoreError(`run ${busy.id} is still running on this target (process ${busy.pid}); wait for it or stop it first`);
        this.createRun(run);
      })
      .immediate();
    // The new run is in the main database file at once: losing the WAL must not lose the run.
    this.checkpointWal();
  }

  /**
   * Copies the WAL into the main database file (called at phase changes), so the main file
   * always holds a resumable run even if `moderator.db-wal` is lost. PASSIVE: it never waits
   * (a `status` reading meanwhile only delays part of the copy to the next call), so the run's
   * event loop is never held up by another process.
   */
  checkpointWal(): void {
    if (this.db.memory) return;
    this.db.pragma('wal_checkpoint(PASSIVE)');
  }

  createRun(run: NewRun): void {
    const at = now();
    this.db
      .prepare(
        `INSERT INTO runs (id, target, requirements, status, phase, started_at, updated_at, settings_json,
           snapshot_version, machine_fingerprint, pid, host)
         VALUES (@id, @target, @requirements, 'running', 'starting', @at, @at, @settings, @version, @fingerprint, @pid, @host)`,
      )
      .run({
        id: run.id,
        target: run.target,
        requirements: run.requirements,
        at,
        settings: JSON.stringify(run.settings),
        version: run.snapshotVersion,
        fingerprint: run.machineFingerprint,
        pid: process.pid,
        host: os.hostname(),
      });
    this.changed({ table: 'runs', runId: run.id });
  }

  getRun(id: string): RunRecord | undefined {
    const row = this.db.prepare('SELECT * FROM runs WHERE id = ?').get(id) as Row | undefined;
    return row ? toRun(row) : undefined;
  }

  listRuns(): RunRecord[] {
    return (this.db.prepare('SELECT * FROM runs ORDER BY started_at, rowid').all() as Row[]).map(toRun);
  }

  /**
   * Takes the run for this process. Refused while another live process on this host holds it,
   * so two processes never drive the same actor tree.
   */
  claimRun(id: string, isAlive: (pid: number) => boolean): void {
    this.db
      .transaction(() => {
        const run = this.getRun(id);
        if (!run) throw new StoreError(`unknown run ${id}`);
        if (run.pid !== null && run.pid !== process.pid && run.host === os.hostname() && isAlive(run.pid)) {
          throw new StoreError(`run ${id} is in use by process ${run.pid}; stop it first or wait for it to finish`);
        }
        this.db
          .prepare(`UPDATE runs SET pid = ?, host = ?, status = CASE status WHEN 'finished' THEN status ELSE 'running' END,
                     sessions = sessions + 1, updated_at = ? WHERE id = ?`)
          .run(process.pid, os.hostname(), now(), id);
      })
      .immediate();
    this.changed({ table: 'runs', runId: id });
  }

  releaseRun(id: string, status: RunStatus): void {
    this.db
      .prepare(`UPDATE runs SET pid = NULL, status = CASE status WHEN 'finished' THEN status ELSE ? END, updated_at = ? WHERE id = ?`)
      .run(status, now(), id);
    this.changed({ table: 'runs', runId: id });
  }

  setRunPhase(id: string, phase: string): void {
    this.db.prepare('UPDATE runs SET phase = ?, updated_at = ? WHERE id = ?').run(phase, now(), id);
    this.changed({ table: 'runs', runId: id });
  }

  setRunScope(id: string, scope: unknown): void {
    this.db.prepare('UPDATE runs SET scope_json = ?, updated_at = ? WHERE id = ?').run(JSON.stringify(scope), now(), id);
    this.changed({ table: 'runs', runId: id });
  }

  updateRunSettings(id: string, settings: unknown): void {
    this.db.prepare('UPDATE runs SET settings_json = ?, updated_at = ? WHERE id = ?').run(JSON.stringify(settings), now(), id);
    this.changed({ table: 'runs', runId: id });
  }

  finishRun(id: string, outcome: string, reason: string | null): void {
    this.db
      .prepare(`UPDATE runs SET status = 'finished', phase = 'stopped', outcome = ?, reason = ?, finished_at = ?, updated_at = ?
                WHERE id = ? AND status != 'finished'`)
      .run(outcome, reason, now(), now(), id);
    this.changed({ table: 'runs', runId: id });
  }

  /**
   * Opens a finished run again for `moderator retry`, in one transaction: its outcome cleared, its
   * settings carrying the retry plan, its final snapshot dropped (the retry starts a fresh tree
   * from the plan; a crash before its first checkpoint resumes from the plan again), the re-queued
   * tasks pending, their closed PRs reopened, and the retry journaled as a person's message.
   */
  reopenForRetry(id: string, settings: unknown, taskIds: readonly string[], message: JournalMessage): void {
    const at = now();
    this.transaction(() => {
      this.db
        .prepare(`UPDATE runs SET status = 'interrupted', phase = 'implementing', outcome = NULL, reason = NULL, finished_at = NULL, settings_json = ?, updated_at = ? WHERE id = ?`)
        .run(JSON.stringify(settings), at, id);
      this.db.prepare('DELETE FROM snapshots WHERE run_id = ?').run(id);
      const task = this.db.prepare(`UPDATE tasks SET status = 'pending', updated_at = ? WHERE run_id = ? AND id = ?`);
      const pr = this.db.prepare(`UPDATE pull_requests SET status = 'open', updated_at = ? WHERE run_id = ? AND task_id = ? AND status = 'closed'`);
      for (const taskId of taskIds) {
        task.run(at, id, taskId);
        pr.run(at, id, taskId);
        const reopened = this.getPullRequestForTask(id, taskId);
        if (reopened) this.changed({ table: 'pull_requests', number: reopened.number });
      }
      this.changed({ table: 'runs', runId: id });
      this.changed({ table: 'tasks', runId: id, taskIds: [...taskIds] });
      this.db
        .prepare(`INSERT INTO messages (id, run_id, from_actor, to_actor, type, payload_json, correlation_id, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
        .run(message.id, id, message.from, message.to, message.type, JSON.stringify(message.payload ?? null), message.correlationId, message.at);
      this.addAlert({ runId: id, level: 'info', kind: 'intervention', message: `retry: ${taskIds.join(', ')} re-queued` });
    });
  }

  /**
   * Opens again a run that a limit stopped, for `--resume` once the limit is relaxed, in one
   * transaction: its outcome cleared, its settings carrying the plan to continue from (none: it
   * starts over, its calls read back from the journal), its final snapshot dropped (the checkpoint
   * of a finished tree cannot continue; a crash before the next one resumes from the plan again),
   * and the reopening journaled as a person's message with a note among the alerts.
   */
  reopenAfterStop(id: string, settings: unknown, phase: string, message: JournalMessage, note: string): void {
    this.transaction(() => {
      this.db
        .prepare(`UPDATE runs SET status = 'interrupted', phase = ?, outcome = NULL, reason = NULL, finished_at = NULL, settings_json = ?, updated_at = ? WHERE id = ?`)
        .run(phase, JSON.stringify(settings), now(), id);
      this.db.prepare('DELETE FROM snapshots WHERE run_id = ?').run(id);
      this.changed({ table: 'runs', runId: id });
      this.db
        .prepare(`INSERT INTO messages (id, run_id, from_actor, to_actor, type, payload_json, correlation_id, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
        .run(message.id, id, message.from, message.to, message.type, JSON.stringify(message.payload ?? null), message.correlationId, message.at);
      this.addAlert({ runId: id, level: 'info', kind: 'intervention', message: note });
    });
  }

  setMonitorUrl(id: string, url: string | null): void {
    this.db.prepare('UPDATE runs SET monitor_url = ? WHERE id = ?').run(url, id);
    this.changed({ table: 'runs', runId: id });
  }

  addActiveTime(id: string, ms: number): void {
    this.db.prepare('UPDATE runs SET active_ms = active_ms + ? WHERE id = ?').run(Math.max(0, Math.round(ms)), id);
    this.changed({ table: 'runs', runId: id });
  }

  // ---- snapshots and the message journal --------------------------------------------------

  /**
   * Writes the latest snapshot of the actor tree together with the messages delivered since the
   * previous checkpoint, in one transaction: the journal never runs ahead of the state nor behind.
   */
  saveCheckpoint(runId: string, snapshotJson: string, status: string, messages: JournalMessage[], phase: string | null, alsoWrite?: () => void): void {
    const insert = this.db.prepare(
      `INSERT OR IGNORE INTO messages (id, run_id, from_actor, to_actor, type, payload_json, correlation_id, at)
       VALUES (@id, @runId, @from, @to, @type, @payload, @correlationId, @at)`,
    );
    const upsert = this.db.prepare(
      `INSERT INTO snapshots (run_id, snapshot_json, status, saved_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (run_id) DO UPDATE SET snapshot_json = excluded.snapshot_json, status = excluded.status,
         saved_at = excluded.saved_at, writes = writes + 1`,
    );
    this.transaction(() => {
      for (const message of messages) {
        insert.run({ ...message, runId, payload: JSON.stringify(message.payload ?? null) });
      }
      upsert.run(runId, snapshotJson, status, now());
      if (phase !== null) this.setRunPhase(runId, phase);
      alsoWrite?.();
    });
  }

  loadSnapshot(runId: string): { json: string; status: string; writes: number } | undefined {
    const row = this.db.prepare('SELECT snapshot_json, status, writes FROM snapshots WHERE run_id = ?').get(runId) as Row | undefined;
    if (!row) return undefined;
    return { json: String(row.snapshot_json), status: String(row.status), writes: Number(row.writes) };
  }

  listMessages(runId: string): JournalMessage[] {
    const rows = this.db.prepare('SELECT * FROM messages WHERE run_id = ? ORDER BY seq').all(runId) as Row[];
    return rows.map((row) => ({
      id: String(row.id),
      from: String(row.from_actor),
      to: String(row.to_actor),
      type: String(row.type),
      payload: JSON.parse(String(row.payload_json)) as unknown,
      correlationId: row.correlation_id === null ? null : String(row.correlation_id),
      at: String(row.at),
    }));
  }

  /**
   * When each actor last showed progress: sent or received a message, or got a model reply.
   * The monitor's measure of stagnation. Model calls are keyed by agent name (`ever-thinker`)
   * and by task (`task:T2`), for the TechLead that holds it.
   */
  lastActivityAt(runId: string): Record<string, string> {
    const rows = this.db
      .prepare(
        `SELECT actor, MAX(at) AS at FROM (
           SELECT from_actor AS actor, at FROM messages WHERE run_id = @runId
           UNION ALL SELECT to_actor AS actor, at FROM messages WHERE run_id = @runId
           UNION ALL SELECT agent AS actor, COALESCE(finished_at, started_at) AS at FROM model_calls WHERE run_id = @runId
           UNION ALL SELECT 'task:' || task_id AS actor, COALESCE(finished_at, started_at) AS at FROM model_calls WHERE run_id = @runId AND task_id IS NOT NULL
         ) GROUP BY actor`,
      )
      .all({ runId }) as Row[];
    return Object.fromEntries(rows.map((row) => [String(row.actor), String(row.at)]));
  }

  // ---- tasks -------------------------------------------------------------------------------

  /** Inserts tasks that are not there yet; a re-run plan step changes nothing. */
  addTasks(runId: string, tasks: NewTask[]): void {
    const insert = this.db.prepare(
      `INSERT OR IGNORE INTO tasks (run_id, id, title, type, description, acceptance_json, depends_json, origin, angle,
         priority, status, created_at, updated_at)
       VALUES (@runId, @id, @title, @type, @description, @acceptance, @depends, @origin, @angle, @priority, 'pending', @at, @at)`,
    );
    const at = now();
    this.transaction(() => {
      for (const task of tasks) {
        insert.run({
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
      this.changed({ table: 'tasks', runId, taskIds: tasks.map((task) => task.id) });
    });
  }

  /**
   * The next free number for a `T<n>` task id in this target, over every run: branches, commit
   * trailers and merge trailers are named after task ids, so ids must not repeat across runs.
   */
  nextTaskNumber(): number {
    const rows = this.db.prepare(`SELECT id FROM tasks`).all() as Row[];
    const numbers = rows.map((row) => /^T(\d+)$/.exec(String(row.id))?.[1]).filter((n): n is string => n !== undefined).map(Number);
    return Math.max(0, ...numbers) + 1;
  }

  getTask(runId: string, id: string): TaskRecord | undefined {
    const row = this.db.prepare('SELECT * FROM tasks WHERE run_id = ? AND id = ?').get(runId, id) as Row | undefined;
    return row ? toTask(row) : undefined;
  }

  listTasks(runId: string): TaskRecord[] {
    return (this.db.prepare('SELECT * FROM tasks WHERE run_id = ? ORDER BY created_at, rowid').all(runId) as Row[]).map(toTask);
  }

  /**
   * Writes the orchestrator's task list into the tasks table: the one writer of task status (and
   * of the attempt a started task is in). Called inside the checkpoint's transaction, so the table
   * always says what the checkpointed chart says. A task newly skipped has its local PR record
   * closed; a PR on GitHub is left for a person (see the README).
   */
  projectTasks(runId: string, tasks: readonly TaskProjection[]): void {
    const current = new Map(this.listTasks(runId).map((task) => [task.id, task]));
    const write = this.db.prepare('UPDATE tasks SET status = ?, attempts = ?, updated_at = ? WHERE run_id = ? AND id = ?');
    const written: string[] = [];
    for (const task of tasks) {
      const stored = current.get(task.id);
      if (!stored) continue;
      const attempts = task.status === 'pending' ? stored.attempts : task.attempt;
      if (stored.status === task.status && stored.attempts === attempts) continue;
      write.run(task.status, attempts, now(), runId, task.id);
      written.push(task.id);
      if (task.status === 'skipped' && stored.status !== 'skipped') {
        const pr = this.getPullRequestForTask(runId, task.id);
        if (pr?.status === 'open' && pr.provider === 'local') this.markPullRequestClosed(pr.number);
      }
    }
    if (written.length > 0) this.changed({ table: 'tasks', runId, taskIds: written });
  }

  updateTask(runId: string, id: string, change: { status?: TaskStatus; attempts?: number; branch?: string; prNumber?: number; prUrl?: string | null }): void {
    const current = this.getTask(runId, id);
    if (!current) throw new StoreError(`unknown task ${id} in run ${runId}`);
    this.db
      .prepare('UPDATE tasks SET status = ?, attempts = ?, branch = ?, pr_number = ?, pr_url = ?, updated_at = ? WHERE run_id = ? AND id = ?')
      .run(
        change.status ?? current.status,
        change.attempts ?? current.attempts,
        change.branch ?? current.branch,
        change.prNumber ?? current.prNumber,
        change.prUrl ?? current.prUrl,
        now(),
        runId,
        id,
      );
    this.changed({ table: 'tasks', runId, taskIds: [id] });
  }

  // ---- pull requests, reviews, test runs -----------------------------------------------------

  /** Opens the PR of a task, or returns the one already open (a re-run submit opens nothing new). */
  openPullRequest(
    pr: Omit<PullRequestRecord, 'number' | 'status' | 'mergeSha' | 'revision' | 'createdAt' | 'updatedAt' | 'remoteNumber' | 'url'> &
      Partial<Pick<PullRequestRecord, 'remoteNumber' | 'url'>>,
  ): PullRequestRecord {
    // Look first: a conflicting INSERT OR IGNORE would still burn an AUTOINCREMENT number.
    const existing = this.getPullRequestForBranch(pr.runId, pr.taskId, pr.branch);
    if (existing) return existing;
    const at = now();
    this.db
      .prepare(
        `INSERT INTO pull_requests (run_id, task_id, provider, branch, base, title, body, status, head_sha, merge_sha, remote_number, url, created_at, updated_at)
         VALUES (@runId, @taskId, @provider, @branch, @base, @title, @body, 'open', @headSha, NULL, @remoteNumber, @url, @at, @at)`,
      )
      .run({ ...pr, remoteNumber: pr.remoteNumber ?? null, url: pr.url ?? null, at });
    const opened = this.getPullRequestForBranch(pr.runId, pr.taskId, pr.branch) as PullRequestRecord;
    this.changed({ table: 'pull_requests', number: opened.number });
    return opened;
  }

  updatePullRequestHead(number: number, headSha: string, revision: number, body?: string): void {
    this.db
      .prepare('UPDATE pull_requests SET head_sha = ?, revision = MAX(revision, ?), body = COALESCE(?, body), updated_at = ? WHERE number = ?')
      .run(headSha, revision, body ?? null, now(), number);
    this.changed({ table: 'pull_requests', number });
  }

  markPullRequestMerged(number: number, mergeSha: string): void {
    this.db.prepare(`UPDATE pull_requests SET status = 'merged', merge_sha = ?, updated_at = ? WHERE number = ?`).run(mergeSha, now(), number);
    this.changed({ table: 'pull_requests', number });
  }

  markPullRequestClosed(number: number): void {
    this.db.prepare(`UPDATE pull_requests SET status = 'closed', updated_at = ? WHERE number = ? AND status = 'open'`).run(now(), number);
    this.changed({ table: 'pull_requests', number });
  }

  /** The task's newest PR: the one of its current branch (a re-implemented task has two). */
  getPullRequestForTask(runId: string, taskId: string): PullRequestRecord | undefined {
    const row = this.db.prepare('SELECT * FROM pull_requests WHERE run_id = ? AND task_id = ? ORDER BY number DESC LIMIT 1').get(runId, taskId) as Row | undefined;
    return row ? toPullRequest(row) : undefined;
  }

  getPullRequestForBranch(runId: string, taskId: string, branch: string): PullRequestRecord | undefined {
    const row = this.db.prepare('SELECT * FROM pull_requests WHERE run_id = ? AND task_id = ? AND branch = ?').get(runId, taskId, branch) as Row | undefined;
    return row ? toPullRequest(row) : undefined;
  }

  /** One PR of the run by its number (a provider's `get`, several times a task: one row, not the run's list). */
  getPullRequest(runId: string, number: number): PullRequestRecord | undefined {
    const row = this.db.prepare('SELECT * FROM pull_requests WHERE number = ? AND run_id = ?').get(number, runId) as Row | undefined;
    return row ? toPullRequest(row) : undefined;
  }

  listPullRequests(runId: string): PullRequestRecord[] {
    return (this.db.prepare('SELECT * FROM pull_requests WHERE run_id = ? ORDER BY number').all(runId) as Row[]).map(toPullRequest);
  }

  recordReview(review: ReviewRecord): void {
    this.db
      .prepare(
        `INSERT OR REPLACE INTO reviews (run_id, task_id, pr_number, attempt, verdict, summary, comments_json, tests_passed, at)
         VALUES (@runId, @taskId, @prNumber, @attempt, @verdict, @summary, @comments, @testsPassed, @at)`,
      )
      .run({ ...review, comments: JSON.stringify(review.comments), testsPassed: review.testsPassed ? 1 : 0, at: now() });
    this.changed({ table: 'reviews', runId: review.runId, taskId: review.taskId, attempt: review.attempt });
  }

  listReviews(runId: string): ReviewRecord[] {
    return (this.db.prepare('SELECT * FROM reviews WHERE run_id = ? ORDER BY id').all(runId) as Row[]).map(toReview);
  }

  getReview(runId: string, taskId: string, attempt: number): ReviewRecord | undefined {
    return this.listReviews(runId).find((review) => review.taskId === taskId && review.attempt === attempt);
  }

  recordTestRun(run: TestRunRecord): void {
    this.db
      .prepare(
        `INSERT OR REPLACE INTO test_runs (run_id, task_id, attempt, command, passed, exit_code, timed_out, duration_ms, output, lint_findings, at)
         VALUES (@runId, @taskId, @attempt, @command, @passed, @exitCode, @timedOut, @durationMs, @output, @lintFindings, @at)`,
      )
      .run({ ...run, passed: run.passed ? 1 : 0, timedOut: run.timedOut ? 1 : 0, lintFindings: run.lintFindings ?? null, at: now() });
  }

  getTestRun(runId: string, taskId: string, attempt: number): TestRunRecord | undefined {
    const row = this.db.prepare('SELECT * FROM test_runs WHERE run_id = ? AND task_id = ? AND attempt = ?').get(runId, taskId, attempt) as
      | Row
      | undefined;
    return row ? toTestRun(row) : undefined;
  }

  /** The task's newest test run at or before `attempt` (a retried review tests nothing new). */
  getLatestTestRun(runId: string, taskId: string, attempt: number): TestRunRecord | undefined {
    const row = this.db
      .prepare('SELECT * FROM test_runs WHERE run_id = ? AND task_id = ? AND attempt <= ? ORDER BY attempt DESC LIMIT 1')
      .get(runId, taskId, attempt) as Row | undefined;
    return row ? toTestRun(row) : undefined;
  }

  /**
   * The newest test run of a task whose PR is merged: how the tests of the latest merged work went.
   * By the PR's record, which the merge step writes before it reports the merge; the tasks table
   * follows at the next checkpoint.
   */
  latestMergedTestRun(runId: string): TestRunRecord | undefined {
    const row = this.db
      .prepare(`SELECT r.* FROM test_runs r JOIN pull_requests p ON p.run_id = r.run_id AND p.task_id = r.task_id WHERE r.run_id = ? AND p.status = 'merged' ORDER BY r.id DESC LIMIT 1`)
      .get(runId) as Row | undefined;
    return row ? toTestRun(row) : undefined;
  }

  /** The task's newest review before `attempt`: the feedback a revision (or a retry) answers. */
  getLatestReviewBefore(runId: string, taskId: string, attempt: number): ReviewRecord | undefined {
    return this.listReviews(runId).filter((review) => review.taskId === taskId && review.attempt < attempt).at(-1);
  }


  // ---- model calls ----------------------------------------------------------------------

  /** Journals a call as sent before any byte goes out, so an interrupted call is still counted. */
  beginModelCall(call: ModelCallStart): number {
    const result = this.db
      .prepare(
        `INSERT INTO model_calls (run_id, call_key, agent, purpose, task_id, provider, model, status, prompt_tokens, prompt_source, context_zone, started_at)
         VALUES (@runId, @callKey, @agent, @purpose, @taskId, @provider, @model, 'sent', @promptTokens, @promptSource, @contextZone, @at)`,
      )
      .run({ ...call, taskId: call.taskId ?? null, promptTokens: call.promptTokens ?? null, promptSource: call.promptSource ?? null, contextZone: call.contextZone ?? null, at: now() });
    const id = Number(result.lastInsertRowid);
    this.changed({ table: 'model_calls', id });
    return id;
  }

  finishModelCall(id: number, finish: ModelCallFinish): void {
    this.db
      .prepare(
        `UPDATE model_calls SET status = @status, model = COALESCE(@model, model), input_tokens = @inputTokens,
           output_tokens = @outputTokens, cache_read_tokens = @cacheReadTokens, cache_write_tokens = @cacheWriteTokens,
           usage_source = @usageSource, cost_usd = @costUsd, latency_ms = @latencyMs, error = @error, reply_json = @reply, finished_at = @at
         WHERE id = @id`,
      )
      .run({
        id,
        status: finish.status,
        model: finish.model ?? null,
        inputTokens: finish.usage?.inputTokens ?? 0,
        outputTokens: finish.usage?.outputTokens ?? 0,
        cacheReadTokens: finish.usage?.cacheReadTokens ?? 0,
        cacheWriteTokens: finish.usage?.cacheWriteTokens ?? 0,
        usageSource: finish.usage?.source ?? null,
        costUsd: finish.costUsd ?? 0,
        latencyMs: finish.latencyMs ?? null,
        error: finish.error ?? null,
        reply: finish.reply === undefined ? null : JSON.stringify(finish.reply),
        at: now(),
      });
    this.changed({ table: 'model_calls', id });
  }

  findCompletedCall(runId: string, callKey: string): ModelCallRecord | undefined {
    const row = this.db.prepare(`SELECT * FROM model_calls WHERE run_id = ? AND call_key = ? AND status = 'ok'`).get(runId, callKey) as
      | Row
      | undefined;
    return row ? toModelCall(row) : undefined;
  }

  /** An agent's answered calls; given `taskId`, only those for that task (null: for no task). */
  countCompletedCalls(runId: string, agent: string, taskId?: string | null): number {
    const row = (taskId === undefined
      ? this.db.prepare(`SELECT COUNT(*) AS n FROM model_calls WHERE run_id = ? AND agent = ? AND status = 'ok'`).get(runId, agent)
      : this.db.prepare(`SELECT COUNT(*) AS n FROM model_calls WHERE run_id = ? AND agent = ? AND task_id IS ? AND status = 'ok'`).get(runId, agent, taskId)) as Row;
    return Number(row.n);
  }

  listModelCalls(runId: string): ModelCallRecord[] {
    return (this.db.prepare('SELECT * FROM model_calls WHERE run_id = ? ORDER BY id').all(runId) as Row[]).map(toModelCall);
  }

  /** Input tokens of the largest prompt the run sent (the Monitor's measure of context use). */
  largestPrompt(runId: string): number {
    const row = this.db.prepare('SELECT MAX(input_tokens) AS largest FROM model_calls WHERE run_id = ?').get(runId) as Row;
    return Number(row.largest ?? 0);
  }

  /** Tokens and cost of every call that got a reply, plus how many were sent and failed. */
  totals(runId: string): RunTotals {
    const row = this.db
      .prepare(
        `SELECT COUNT(*) AS sent,
                SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END) AS errors,
                SUM(input_tokens + output_tokens + cache_read_tokens + cache_write_tokens) AS tokens,
                SUM(input_tokens) AS input, SUM(output_tokens) AS output, SUM(cost_usd) AS cost
         FROM model_calls WHERE run_id = ?`,
      )
      .get(runId) as Row;
    return {
      callsSent: Number(row.sent ?? 0),
      callErrors: Number(row.errors ?? 0),
      tokensUsed: Number(row.tokens ?? 0),
      inputTokens: Number(row.input ?? 0),
      outputTokens: Number(row.output ?? 0),
      costUsd: Number(row.cost ?? 0),
    };
  }

  /** Calls, tokens and cost grouped by agent and by task, for the summary and the dashboard. */
  usageBreakdown(runId: string): { byAgent: Record<string, UsageLine>; byTask: Record<string, UsageLine> } {
    const group = (column: 'agent' | 'task_id') =>
      Object.fromEntries(
        (this.db
          .prepare(
            `SELECT ${column} AS key, COUNT(*) AS calls, SUM(input_tokens + output_tokens + cache_read_tokens + cache_write_tokens) AS tokens,
                    SUM(cost_usd) AS cost FROM model_calls WHERE run_id = ? AND ${column} IS NOT NULL GROUP BY ${column} ORDER BY ${column}`,
          )
          .all(runId) as Row[]).map((row) => [String(row.key), { calls: Number(row.calls), tokens: Number(row.tokens ?? 0), costUsd: Math.round(Number(row.cost ?? 0) * 10_000) / 10_000 }]),
      );
    return { byAgent: group('agent'), byTask: group('task_id') };
  }

  // ---- effects journal -------------------------------------------------------------------

  getEffect(runId: string, stepKey: string): { status: 'started' | 'done'; result: unknown } | undefined {
    const row = this.db.prepare('SELECT status, result_json FROM effects WHERE run_id = ? AND step_key = ?').get(runId, stepKey) as
      | Row
      | undefined;
    if (!row) return undefined;
    return {
      status: row.status === 'done' ? 'done' : 'started',
      result: row.result_json === null ? undefined : (JSON.parse(String(row.result_json)) as unknown),
    };
  }

  startEffect(runId: string, stepKey: string): void {
    this.db
      .prepare(`INSERT OR IGNORE INTO effects (run_id, step_key, status, started_at) VALUES (?, ?, 'started', ?)`)
      .run(runId, stepKey, now());
  }

  finishEffect(runId: string, stepKey: string, result: unknown): void {
    this.db
      .prepare(`UPDATE effects SET status = 'done', result_json = ?, finished_at = ? WHERE run_id = ? AND step_key = ?`)
      .run(JSON.stringify(result ?? null), now(), runId, stepKey);
  }

  listEffects(runId: string): { stepKey: string; status: string }[] {
    const rows = this.db.prepare('SELECT step_key, status FROM effects WHERE run_id = ? ORDER BY started_at, rowid').all(runId) as Row[];
    return rows.map((row) => ({ stepKey: String(row.step_key), status: String(row.status) }));
  }

  // ---- alerts ----------------------------------------------------------------------------

  addAlert(alert: AlertRecord): number {
    const result = this.db
      .prepare('INSERT INTO alerts (run_id, level, kind, message, source, at) VALUES (@runId, @level, @kind, @message, @source, @at)')
      .run({ ...alert, source: alert.source ?? 'human', at: now() });
    const id = Number(result.lastInsertRowid);
    this.changed({ table: 'alerts', id });
    return id;
  }

  listAlerts(runId: string): StoredAlert[] {
    return (this.db.prepare('SELECT * FROM alerts WHERE run_id = ? ORDER BY id').all(runId) as Row[]).map(toAlert);
  }

  /** Marks an alert of the run as seen by a person; false when the run has no such alert. Acknowledged twice: the first time stays. */
  acknowledgeAlert(runId: string, id: number): boolean {
    const result = this.db.prepare('UPDATE alerts SET acknowledged_at = COALESCE(acknowledged_at, ?) WHERE run_id = ? AND id = ?').run(now(), runId, id);
    if (result.changes === 0) return false;
    this.changed({ table: 'alerts', id });
    return true;
  }

  /** Warnings and critical alerts nobody acknowledged: they lower the health score until someone does. */
  openAlerts(runId: string): { warning: number; critical: number } {
    const row = this.db
      .prepare(`SELECT SUM(level = 'warning') AS warning, SUM(level = 'critical') AS critical FROM alerts WHERE run_id = ? AND acknowledged_at IS NULL`)
      .get(runId) as Row;
    return { warning: Number(row.warning ?? 0), critical: Number(row.critical ?? 0) };
  }

  // ---- the Monitor's metrics series --------------------------------------------------------

  /** One row per Monitor tick; a tick recorded twice (a checkpoint written again) is kept once. */
  recordMetrics(runId: string, row: MetricsRow): void {
    const result = this.db
      .prepare(
        `INSERT OR IGNORE INTO metrics (run_id, at, runtime_ms, tokens_used, cost_usd, calls_sent, call_errors, context_tokens, health_score,
           tasks_merged, tasks_total, forecast_tokens, forecast_cost_usd)
         VALUES (@runId, @at, @runtimeMs, @tokensUsed, @costUsd, @callsSent, @callErrors, @contextTokens, @healthScore, @tasksMerged, @tasksTotal,
           @forecastTokens, @forecastCostUsd)`,
      )
      .run({ runId, ...row });
    if (result.changes > 0) this.changed({ table: 'metrics', id: Number(result.lastInsertRowid) });
  }

  /** The newest `limit` ticks, oldest first. */
  listMetrics(runId: string, limit = 10_000): MetricsRow[] {
    const rows = this.db.prepare('SELECT * FROM (SELECT * FROM metrics WHERE run_id = ? ORDER BY id DESC LIMIT ?) ORDER BY id').all(runId, limit) as Row[];
    return rows.map(toMetricsRow);
  }

  // ---- questions to people -----------------------------------------------------------------

  /** Records the questions of the clarify step; asked again (a re-run step), nothing changes. */
  addQuestions(runId: string, questions: readonly { id: string; text: string }[]): void {
    if (questions.length === 0) return;
    const insert = this.db.prepare('INSERT OR IGNORE INTO questions (run_id, id, text, asked_at) VALUES (?, ?, ?, ?)');
    const at = now();
    this.transaction(() => {
      for (const question of questions) insert.run(runId, question.id, question.text, at);
      this.changed({ table: 'questions', runId });
    });
  }

  /** Keeps a person's answer; false when the question is unknown or already answered (the first answer stands). */
  answerQuestion(runId: string, id: string, answer: string, by: string): boolean {
    const result = this.db
      .prepare('UPDATE questions SET answer = ?, answered_by = ?, answered_at = ? WHERE run_id = ? AND id = ? AND answer IS NULL')
      .run(answer, by, now(), runId, id);
    if (result.changes > 0) this.changed({ table: 'questions', runId });
    return result.changes > 0;
  }

  listQuestions(runId: string): QuestionRecord[] {
    return (this.db.prepare('SELECT * FROM questions WHERE run_id = ? ORDER BY rowid').all(runId) as Row[]).map(toQuestion);
  }

  // ---- improvement cycles -------------------------------------------------------------------

  /** What one cycle's measurement found: the signals it starts from, and for the cycle before, where that one ended and its magnitude. */
  saveImprovementCycle(runId: string, cycle: { cycle: number; before: unknown; tasks?: string[] }, previous?: { cycle: number; after: unknown; magnitude: number | null; tasks: string[] }): void {
    const at = now();
    this.transaction(() => {
      if (previous) {
        this.db
          .prepare(
            `INSERT INTO improvement_cycles (run_id, cycle, before_json, after_json, magnitude, tasks_json, at) VALUES (?, ?, 'null', ?, ?, ?, ?)
             ON CONFLICT (run_id, cycle) DO UPDATE SET after_json = excluded.after_json, magnitude = excluded.magnitude, tasks_json = excluded.tasks_json`,
          )
          .run(runId, previous.cycle, JSON.stringify(previous.after), previous.magnitude, JSON.stringify(previous.tasks), at);
      }
      this.db
        .prepare('INSERT OR IGNORE INTO improvement_cycles (run_id, cycle, before_json, tasks_json, at) VALUES (?, ?, ?, ?, ?)')
        .run(runId, cycle.cycle, JSON.stringify(cycle.before), JSON.stringify(cycle.tasks ?? []), at);
      this.changed({ table: 'improvement_cycles', runId });
    });
  }

  listImprovementCycles(runId: string): ImprovementCycleRecord[] {
    return (this.db.prepare('SELECT * FROM improvement_cycles WHERE run_id = ? ORDER BY cycle').all(runId) as Row[]).map(toImprovementCycle);
  }

  /** Trailing model calls of the run that failed, among those sent since `since` (one session's). */
  consecutiveCallErrors(runId: string, since: string, limit = 50): number {
    const rows = this.db
      .prepare(`SELECT status FROM model_calls WHERE run_id = ? AND started_at >= ? AND status != 'sent' ORDER BY id DESC LIMIT ?`)
      .all(runId, since, limit) as Row[];
    const firstOk = rows.findIndex((row) => row.status !== 'error');
    return firstOk === -1 ? rows.length : firstOk;
  }
}

/**
 * A JSON column of a run row, or what is wrong with it: a row corrupted on disk or edited by hand
 * must not break every listing of the target's runs, only that run.
 */
function runJson(text: unknown, what: 'its stored settings are' | 'its stored scope is', problems: string[]): unknown {
  if (text === null) return null;
  try {
    return JSON.parse(String(text)) as unknown;
  } catch (error) {
    problems.push(`${what} not JSON (${messageOf(error)})`);
    return null;
  }
}

function toRun(row: Row): RunRecord {
  const problems: string[] = [];
  return {
    id: String(row.id),
    target: String(row.target),
    requirements: String(row.requirements),
    status: row.status as RunStatus,
    phase: String(row.phase),
    outcome: row.outcome === null ? null : String(row.outcome),
    reason: row.reason === null ? null : String(row.reason),
    startedAt: String(row.started_at),
    updatedAt: String(row.updated_at),
    finishedAt: row.finished_at === null ? null : String(row.finished_at),
    settings: runJson(row.settings_json, 'its stored settings are', problems),
    snapshotVersion: Number(row.snapshot_version),
    machineFingerprint: String(row.machine_fingerprint),
    pid: row.pid === null ? null : Number(row.pid),
    host: row.host === null ? null : String(row.host),
    activeMs: Number(row.active_ms),
    sessions: Number(row.sessions),
    scope: runJson(row.scope_json, 'its stored scope is', problems),
    monitorUrl: row.monitor_url === null || row.monitor_url === undefined ? null : String(row.monitor_url),
    corrupted: problems.length > 0 ? problems.join('; ') : null,
  };
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

/** Row mappers, shared with the readers that keep a copy of some rows (run-view.ts). */
export function toTask(row: Row): TaskRecord {
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

export function toPullRequest(row: Row): PullRequestRecord {
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

export function toReview(row: Row): ReviewRecord {
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

export function toAlert(row: Row): StoredAlert {
  return {
    id: Number(row.id),
    runId: String(row.run_id),
    level: row.level === 'critical' ? 'critical' : row.level === 'warning' ? 'warning' : 'info',
    kind: String(row.kind),
    message: String(row.message),
    source: row.source === null || row.source === undefined ? 'human' : String(row.source),
    at: String(row.at),
    acknowledgedAt: row.acknowledged_at === null || row.acknowledged_at === undefined ? null : String(row.acknowledged_at),
  };
}

export function toMetricsRow(row: Row): MetricsRow {
  const nullable = (value: unknown): number | null => (value === null || value === undefined ? null : Number(value));
  return {
    at: String(row.at),
    runtimeMs: Number(row.runtime_ms),
    tokensUsed: Number(row.tokens_used),
    costUsd: Number(row.cost_usd),
    callsSent: Number(row.calls_sent),
    callErrors: Number(row.call_errors),
    contextTokens: Number(row.context_tokens),
    healthScore: Number(row.health_score),
    tasksMerged: Number(row.tasks_merged),
    tasksTotal: Number(row.tasks_total),
    forecastTokens: nullable(row.forecast_tokens),
    forecastCostUsd: nullable(row.forecast_cost_usd),
  };
}

export function toQuestion(row: Row): QuestionRecord {
  const text = (value: unknown): string | null => (value === null || value === undefined ? null : String(value));
  return { id: String(row.id), text: String(row.text), askedAt: String(row.asked_at), answer: text(row.answer), answeredBy: text(row.answered_by), answeredAt: text(row.answered_at) };
}

function toImprovementCycle(row: Row): ImprovementCycleRecord {
  const json = (value: unknown): unknown => (value === null || value === undefined ? null : (JSON.parse(String(value)) as unknown));
  return {
    cycle: Number(row.cycle),
    before: json(row.before_json),
    after: json(row.after_json),
    magnitude: row.magnitude === null ? null : Number(row.magnitude),
    tasks: (json(row.tasks_json) as string[] | null) ?? [],
    at: String(row.at),
  };
}

function toModelCall(row: Row): ModelCallRecord {
  return {
    id: Number(row.id),
    runId: String(row.run_id),
    callKey: String(row.call_key),
    agent: String(row.agent),
    purpose: String(row.purpose),
    taskId: row.task_id === null ? null : String(row.task_id),
    provider: String(row.provider),
    model: String(row.model),
    status: row.status as ModelCallRecord['status'],
    inputTokens: Number(row.input_tokens),
    outputTokens: Number(row.output_tokens),
    cacheReadTokens: Number(row.cache_read_tokens),
    cacheWriteTokens: Number(row.cache_write_tokens),
    ...(row.usage_source === 'counted' || row.usage_source === 'estimated' ? { source: row.usage_source } : {}),
    costUsd: Number(row.cost_usd),
    latencyMs: row.latency_ms === null ? null : Number(row.latency_ms),
    error: row.error === null ? null : String(row.error),
    reply: row.reply_json === null ? undefined : (JSON.parse(String(row.reply_json)) as unknown),
    promptTokens: row.prompt_tokens === null || row.prompt_tokens === undefined ? null : Number(row.prompt_tokens),
    contextZone: row.context_zone === null || row.context_zone === undefined ? null : String(row.context_zone),
  };
}
