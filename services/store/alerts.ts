import type Database from 'better-sqlite3';
import type { ChangeReporter } from './changes.ts';
import { now, statements, type Row, type Statements } from './sql.ts';
import type { AlertRecord, StoredAlert } from './types.ts';

const sql = {
  add: 'INSERT INTO alerts (run_id, level, kind, message, source, at) VALUES (@runId, @level, @kind, @message, @source, @at)',
  get: 'SELECT * FROM alerts WHERE id = ?',
  list: 'SELECT * FROM alerts WHERE run_id = ? ORDER BY id',
  acknowledge: 'UPDATE alerts SET acknowledged_at = COALESCE(acknowledged_at, ?) WHERE run_id = ? AND id = ?',
  countOpen: `SELECT SUM(level = 'warning') AS warning, SUM(level = 'critical') AS critical FROM alerts WHERE run_id = ? AND acknowledged_at IS NULL`,
};

/** The alerts of each run: the Monitor's, and the notes of people's interventions. */
export class AlertRepository {
  readonly #changes: ChangeReporter;
  readonly #sql: Statements<typeof sql>;

  constructor(db: Database.Database, changes: ChangeReporter) {
    this.#changes = changes;
    this.#sql = statements(db, sql);
  }

  add(alert: AlertRecord): number {
    const result = this.#sql.add.run({ ...alert, source: alert.source ?? 'human', at: now() });
    const id = Number(result.lastInsertRowid);
    this.#changes.changed({ table: 'alerts', id });
    return id;
  }

  get(id: number): StoredAlert | undefined {
    const row = this.#sql.get.get(id) as Row | undefined;
    return row ? toAlert(row) : undefined;
  }

  list(runId: string): StoredAlert[] {
    return (this.#sql.list.all(runId) as Row[]).map(toAlert);
  }

  /** Marks an alert of the run as seen by a person; false when the run has no such alert. Acknowledged twice: the first time stays. */
  acknowledge(runId: string, id: number): boolean {
    const result = this.#sql.acknowledge.run(now(), runId, id);
    if (result.changes === 0) return false;
    this.#changes.changed({ table: 'alerts', id });
    return true;
  }

  /** Warnings and critical alerts nobody acknowledged: they lower the health score until someone does. */
  countOpen(runId: string): { warning: number; critical: number } {
    const row = this.#sql.countOpen.get(runId) as Row;
    return { warning: Number(row.warning ?? 0), critical: Number(row.critical ?? 0) };
  }
}

function toAlert(row: Row): StoredAlert {
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
