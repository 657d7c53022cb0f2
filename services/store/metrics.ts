import type Database from 'better-sqlite3';
import type { ChangeReporter } from './changes.ts';
import { statements, type Row, type Statements } from './sql.ts';
import type { MetricsRow } from './types.ts';

const sql = {
  record: `INSERT OR IGNORE INTO metrics (run_id, at, runtime_ms, tokens_used, cost_usd, calls_sent, call_errors, context_tokens, health_score,
       tasks_merged, tasks_total, forecast_tokens, forecast_cost_usd)
     VALUES (@runId, @at, @runtimeMs, @tokensUsed, @costUsd, @callsSent, @callErrors, @contextTokens, @healthScore, @tasksMerged, @tasksTotal,
       @forecastTokens, @forecastCostUsd)`,
  get: 'SELECT * FROM metrics WHERE id = ?',
  list: 'SELECT * FROM (SELECT * FROM metrics WHERE run_id = ? ORDER BY id DESC LIMIT ?) ORDER BY id',
};

/** The Monitor's metrics series: one row per tick, the dashboard's trends. */
export class MetricsRepository {
  readonly #changes: ChangeReporter;
  readonly #sql: Statements<typeof sql>;

  constructor(db: Database.Database, changes: ChangeReporter) {
    this.#changes = changes;
    this.#sql = statements(db, sql);
  }

  /** One row per Monitor tick; a tick recorded twice (a checkpoint written again) is kept once. */
  record(runId: string, row: MetricsRow): void {
    const result = this.#sql.record.run({ runId, ...row });
    if (result.changes > 0) this.#changes.changed({ table: 'metrics', id: Number(result.lastInsertRowid) });
  }

  /** One tick by its id, with the run it belongs to (a tick itself does not say). */
  get(id: number): { runId: string; tick: MetricsRow } | undefined {
    const row = this.#sql.get.get(id) as Row | undefined;
    return row ? { runId: String(row.run_id), tick: toMetricsRow(row) } : undefined;
  }

  /** The newest `limit` ticks, oldest first. */
  list(runId: string, limit = 10_000): MetricsRow[] {
    const rows = this.#sql.list.all(runId, limit) as Row[];
    return rows.map(toMetricsRow);
  }
}

function toMetricsRow(row: Row): MetricsRow {
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
