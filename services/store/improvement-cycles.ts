import type Database from 'better-sqlite3';
import type { ChangeReporter } from './changes.ts';
import { now, statements, type Row, type Statements } from './sql.ts';
import type { ImprovementCycleRecord } from './types.ts';

const sql = {
  finishPrevious: `INSERT INTO improvement_cycles (run_id, cycle, before_json, after_json, magnitude, tasks_json, at) VALUES (?, ?, 'null', ?, ?, ?, ?)
     ON CONFLICT (run_id, cycle) DO UPDATE SET after_json = excluded.after_json, magnitude = excluded.magnitude, tasks_json = excluded.tasks_json`,
  start: 'INSERT OR IGNORE INTO improvement_cycles (run_id, cycle, before_json, tasks_json, at) VALUES (?, ?, ?, ?, ?)',
  list: 'SELECT * FROM improvement_cycles WHERE run_id = ? ORDER BY cycle',
};

/** The Ever-Thinker's cycles: the signals each started from, where it ended, and how much it moved them. */
export class ImprovementCycleRepository {
  readonly #changes: ChangeReporter;
  readonly #sql: Statements<typeof sql>;

  constructor(db: Database.Database, changes: ChangeReporter) {
    this.#changes = changes;
    this.#sql = statements(db, sql);
  }

  /** What one cycle's measurement found: the signals it starts from, and for the cycle before, where that one ended and its magnitude. */
  save(runId: string, cycle: { cycle: number; before: unknown; tasks?: string[] }, previous?: { cycle: number; after: unknown; magnitude: number | null; tasks: string[] }): void {
    const at = now();
    this.#changes.transaction(() => {
      if (previous) {
        this.#sql.finishPrevious.run(runId, previous.cycle, JSON.stringify(previous.after), previous.magnitude, JSON.stringify(previous.tasks), at);
      }
      this.#sql.start.run(runId, cycle.cycle, JSON.stringify(cycle.before), JSON.stringify(cycle.tasks ?? []), at);
      this.#changes.changed({ table: 'improvement_cycles', runId });
    });
  }

  list(runId: string): ImprovementCycleRecord[] {
    return (this.#sql.list.all(runId) as Row[]).map(toImprovementCycle);
  }
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
