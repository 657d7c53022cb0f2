import os from 'node:os';
import type Database from 'better-sqlite3';
import { messageOf } from '../../errors.ts';
import type { AlertRepository } from './alerts.ts';
import type { ChangeReporter } from './changes.ts';
import type { PullRequestRepository } from './pull-requests.ts';
import { now, statements, type Row, type Statements } from './sql.ts';
import { StoreError } from './store-error.ts';
import type { JournalMessage, NewRun, RunRecord, RunStatus } from './types.ts';

const sql = {
  insert: `INSERT INTO runs (id, target, requirements, status, phase, started_at, updated_at, settings_json,
       snapshot_version, machine_fingerprint, pid, host)
     VALUES (@id, @target, @requirements, 'running', 'starting', @at, @at, @settings, @version, @fingerprint, @pid, @host)`,
  get: 'SELECT * FROM runs WHERE id = ?',
  list: 'SELECT * FROM runs ORDER BY started_at, rowid',
  outcome: 'SELECT outcome, active_ms FROM runs WHERE id = ?',
  claim: `UPDATE runs SET pid = ?, host = ?, status = CASE status WHEN 'finished' THEN status ELSE 'running' END,
                     sessions = sessions + 1, updated_at = ? WHERE id = ?`,
  release: `UPDATE runs SET pid = NULL, status = CASE status WHEN 'finished' THEN status ELSE ? END, updated_at = ? WHERE id = ?`,
  setPhase: 'UPDATE runs SET phase = ?, updated_at = ? WHERE id = ?',
  setScope: 'UPDATE runs SET scope_json = ?, updated_at = ? WHERE id = ?',
  updateSettings: 'UPDATE runs SET settings_json = ?, updated_at = ? WHERE id = ?',
  finish: `UPDATE runs SET status = 'finished', phase = 'stopped', outcome = ?, reason = ?, finished_at = ?, updated_at = ?
                WHERE id = ? AND status != 'finished'`,
  setMonitorUrl: 'UPDATE runs SET monitor_url = ? WHERE id = ?',
  addActiveTime: 'UPDATE runs SET active_ms = active_ms + ? WHERE id = ?',
  // The reopenings write the run's other tables in the same transaction as its row.
  reopenForRetry: `UPDATE runs SET status = 'interrupted', phase = 'implementing', outcome = NULL, reason = NULL, finished_at = NULL, settings_json = ?, updated_at = ? WHERE id = ?`,
  reopenAfterStop: `UPDATE runs SET status = 'interrupted', phase = ?, outcome = NULL, reason = NULL, finished_at = NULL, settings_json = ?, updated_at = ? WHERE id = ?`,
  dropSnapshot: 'DELETE FROM snapshots WHERE run_id = ?',
  requeueTask: `UPDATE tasks SET status = 'pending', updated_at = ? WHERE run_id = ? AND id = ?`,
  reopenPullRequest: `UPDATE pull_requests SET status = 'open', updated_at = ? WHERE run_id = ? AND task_id = ? AND status = 'closed'`,
  journal: `INSERT INTO messages (id, run_id, from_actor, to_actor, type, payload_json, correlation_id, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
};

/** The runs of a target: who drives each, its phase, outcome and settings, and reopening a finished one. */
export class RunRepository {
  readonly #db: Database.Database;
  readonly #changes: ChangeReporter;
  readonly #sql: Statements<typeof sql>;
  readonly #pullRequests: PullRequestRepository;
  readonly #alerts: AlertRepository;
  readonly #checkpointWal: () => void;

  constructor(
    db: Database.Database,
    changes: ChangeReporter,
    related: { pullRequests: PullRequestRepository; alerts: AlertRepository; checkpointWal: () => void },
  ) {
    this.#db = db;
    this.#changes = changes;
    this.#sql = statements(db, sql);
    this.#pullRequests = related.pullRequests;
    this.#alerts = related.alerts;
    this.#checkpointWal = related.checkpointWal;
  }

  /**
   * Creates the run unless another live process runs one on this target: the check and the
   * insert in one IMMEDIATE transaction, so two processes can never both pass the check.
   */
  createExclusive(run: NewRun, isAlive: (pid: number) => boolean): void {
    this.#db
      .transaction(() => {
        const busy = this.list().find((other) => other.status === 'running' && other.pid !== null && other.pid !== process.pid && other.host === os.hostname() && isAlive(other.pid));
        if (busy) throw new StoreError(`run ${busy.id} is still running on this target (process ${busy.pid}); wait for it or stop it first`);
        this.create(run);
      })
      .immediate();
    // The new run is in the main database file at once: losing the WAL must not lose the run.
    this.#checkpointWal();
  }

  create(run: NewRun): void {
    const at = now();
    this.#sql.insert.run({
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
    this.#changes.changed({ table: 'runs', runId: run.id });
  }

  get(id: string): RunRecord | undefined {
    const row = this.#sql.get.get(id) as Row | undefined;
    return row ? toRun(row) : undefined;
  }

  list(): RunRecord[] {
    return (this.#sql.list.all() as Row[]).map(toRun);
  }

  /** The two columns the monitoring server's run view keeps, without parsing the rest of the row. */
  outcomeAndActiveTime(id: string): { outcome: string | null; activeMs: number } | undefined {
    const row = this.#sql.outcome.get(id) as Row | undefined;
    return row ? { outcome: row.outcome === null ? null : String(row.outcome), activeMs: Number(row.active_ms) } : undefined;
  }

  /**
   * Takes the run for this process. Refused while another live process on this host holds it,
   * so two processes never drive the same actor tree.
   */
  claim(id: string, isAlive: (pid: number) => boolean): void {
    this.#db
      .transaction(() => {
        const run = this.get(id);
        if (!run) throw new StoreError(`unknown run ${id}`);
        if (run.pid !== null && run.pid !== process.pid && run.host === os.hostname() && isAlive(run.pid)) {
          throw new StoreError(`run ${id} is in use by process ${run.pid}; stop it first or wait for it to finish`);
        }
        this.#sql.claim.run(process.pid, os.hostname(), now(), id);
      })
      .immediate();
    this.#changes.changed({ table: 'runs', runId: id });
  }

  release(id: string, status: RunStatus): void {
    this.#sql.release.run(status, now(), id);
    this.#changes.changed({ table: 'runs', runId: id });
  }

  setPhase(id: string, phase: string): void {
    this.#sql.setPhase.run(phase, now(), id);
    this.#changes.changed({ table: 'runs', runId: id });
  }

  setScope(id: string, scope: unknown): void {
    this.#sql.setScope.run(JSON.stringify(scope), now(), id);
    this.#changes.changed({ table: 'runs', runId: id });
  }

  updateSettings(id: string, settings: unknown): void {
    this.#sql.updateSettings.run(JSON.stringify(settings), now(), id);
    this.#changes.changed({ table: 'runs', runId: id });
  }

  finish(id: string, outcome: string, reason: string | null): void {
    this.#sql.finish.run(outcome, reason, now(), now(), id);
    this.#changes.changed({ table: 'runs', runId: id });
  }

  /**
   * Opens a finished run again for `moderator retry`, in one transaction: its outcome cleared, its
   * settings carrying the retry plan, its final snapshot dropped (the retry starts a fresh tree
   * from the plan; a crash before its first checkpoint resumes from the plan again), the re-queued
   * tasks pending, their closed PRs reopened, and the retry journaled as a person's message.
   */
  reopenForRetry(id: string, settings: unknown, taskIds: readonly string[], message: JournalMessage): void {
    const at = now();
    this.#changes.transaction(() => {
      this.#sql.reopenForRetry.run(JSON.stringify(settings), at, id);
      this.#sql.dropSnapshot.run(id);
      for (const taskId of taskIds) {
        this.#sql.requeueTask.run(at, id, taskId);
        this.#sql.reopenPullRequest.run(at, id, taskId);
        const reopened = this.#pullRequests.forTask(id, taskId);
        if (reopened) this.#changes.changed({ table: 'pull_requests', number: reopened.number });
      }
      this.#changes.changed({ table: 'runs', runId: id });
      this.#changes.changed({ table: 'tasks', runId: id, taskIds: [...taskIds] });
      this.#journal(id, message);
      this.#alerts.add({ runId: id, level: 'info', kind: 'intervention', message: `retry: ${taskIds.join(', ')} re-queued` });
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
    this.#changes.transaction(() => {
      this.#sql.reopenAfterStop.run(phase, JSON.stringify(settings), now(), id);
      this.#sql.dropSnapshot.run(id);
      this.#changes.changed({ table: 'runs', runId: id });
      this.#journal(id, message);
      this.#alerts.add({ runId: id, level: 'info', kind: 'intervention', message: note });
    });
  }

  setMonitorUrl(id: string, url: string | null): void {
    this.#sql.setMonitorUrl.run(url, id);
    this.#changes.changed({ table: 'runs', runId: id });
  }

  addActiveTime(id: string, ms: number): void {
    this.#sql.addActiveTime.run(Math.max(0, Math.round(ms)), id);
    this.#changes.changed({ table: 'runs', runId: id });
  }

  #journal(id: string, message: JournalMessage): void {
    this.#sql.journal.run(message.id, id, message.from, message.to, message.type, JSON.stringify(message.payload ?? null), message.correlationId, message.at);
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
