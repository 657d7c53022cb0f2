import type Database from 'better-sqlite3';
import { now, statements, type Row, type Statements } from './sql.ts';

const sql = {
  get: 'SELECT status, result_json FROM effects WHERE run_id = ? AND step_key = ?',
  start: `INSERT OR IGNORE INTO effects (run_id, step_key, status, started_at) VALUES (?, ?, 'started', ?)`,
  finish: `UPDATE effects SET status = 'done', result_json = ?, finished_at = ? WHERE run_id = ? AND step_key = ?`,
  list: 'SELECT step_key, status FROM effects WHERE run_id = ? ORDER BY started_at, rowid',
};

/**
 * The effects journal: each side effect of a run keyed by its step, started before it acts and
 * done with its result after (services/effects.ts runs effects through it). Not reported as changes.
 */
export class EffectRepository {
  readonly #sql: Statements<typeof sql>;

  constructor(db: Database.Database) {
    this.#sql = statements(db, sql);
  }

  get(runId: string, stepKey: string): { status: 'started' | 'done'; result: unknown } | undefined {
    const row = this.#sql.get.get(runId, stepKey) as Row | undefined;
    if (!row) return undefined;
    return {
      status: row.status === 'done' ? 'done' : 'started',
      result: row.result_json === null ? undefined : (JSON.parse(String(row.result_json)) as unknown),
    };
  }

  start(runId: string, stepKey: string): void {
    this.#sql.start.run(runId, stepKey, now());
  }

  finish(runId: string, stepKey: string, result: unknown): void {
    this.#sql.finish.run(JSON.stringify(result ?? null), now(), runId, stepKey);
  }

  list(runId: string): { stepKey: string; status: string }[] {
    const rows = this.#sql.list.all(runId) as Row[];
    return rows.map((row) => ({ stepKey: String(row.step_key), status: String(row.status) }));
  }
}
