import type Database from 'better-sqlite3';
import type { ChangeReporter } from './changes.ts';
import { now, statements, type Row, type Statements } from './sql.ts';
import type { RunRepository } from './runs.ts';
import type { JournalMessage } from './types.ts';

const sql = {
  journal: `INSERT OR IGNORE INTO messages (id, run_id, from_actor, to_actor, type, payload_json, correlation_id, at)
     VALUES (@id, @runId, @from, @to, @type, @payload, @correlationId, @at)`,
  upsert: `INSERT INTO snapshots (run_id, snapshot_json, status, saved_at) VALUES (?, ?, ?, ?)
     ON CONFLICT (run_id) DO UPDATE SET snapshot_json = excluded.snapshot_json, status = excluded.status,
       saved_at = excluded.saved_at, writes = writes + 1`,
  load: 'SELECT snapshot_json, status, writes FROM snapshots WHERE run_id = ?',
  messages: 'SELECT * FROM messages WHERE run_id = ? ORDER BY seq',
  lastActivity: `SELECT actor, MAX(at) AS at FROM (
       SELECT from_actor AS actor, at FROM messages WHERE run_id = @runId
       UNION ALL SELECT to_actor AS actor, at FROM messages WHERE run_id = @runId
       UNION ALL SELECT agent AS actor, COALESCE(finished_at, started_at) AS at FROM model_calls WHERE run_id = @runId
       UNION ALL SELECT 'task:' || task_id AS actor, COALESCE(finished_at, started_at) AS at FROM model_calls WHERE run_id = @runId AND task_id IS NOT NULL
     ) GROUP BY actor`,
};

/** Each run's latest snapshot of its actor tree and the journal of the messages its actors sent. */
export class CheckpointRepository {
  readonly #changes: ChangeReporter;
  readonly #sql: Statements<typeof sql>;
  readonly #runs: RunRepository;

  constructor(db: Database.Database, changes: ChangeReporter, runs: RunRepository) {
    this.#changes = changes;
    this.#sql = statements(db, sql);
    this.#runs = runs;
  }

  /**
   * Writes the latest snapshot of the actor tree together with the messages delivered since the
   * previous checkpoint, in one transaction: the journal never runs ahead of the state nor behind.
   */
  save(runId: string, snapshotJson: string, status: string, messages: JournalMessage[], phase: string | null, alsoWrite?: () => void): void {
    this.#changes.transaction(() => {
      for (const message of messages) {
        this.#sql.journal.run({ ...message, runId, payload: JSON.stringify(message.payload ?? null) });
      }
      this.#sql.upsert.run(runId, snapshotJson, status, now());
      if (phase !== null) this.#runs.setPhase(runId, phase);
      alsoWrite?.();
    });
  }

  load(runId: string): { json: string; status: string; writes: number } | undefined {
    const row = this.#sql.load.get(runId) as Row | undefined;
    if (!row) return undefined;
    return { json: String(row.snapshot_json), status: String(row.status), writes: Number(row.writes) };
  }

  listMessages(runId: string): JournalMessage[] {
    const rows = this.#sql.messages.all(runId) as Row[];
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
    const rows = this.#sql.lastActivity.all({ runId }) as Row[];
    return Object.fromEntries(rows.map((row) => [String(row.actor), String(row.at)]));
  }
}
