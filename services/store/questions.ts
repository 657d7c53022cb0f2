import type Database from 'better-sqlite3';
import type { ChangeReporter } from './changes.ts';
import { now, statements, type Row, type Statements } from './sql.ts';
import type { QuestionRecord } from './types.ts';

const sql = {
  add: 'INSERT OR IGNORE INTO questions (run_id, id, text, asked_at) VALUES (?, ?, ?, ?)',
  answer: 'UPDATE questions SET answer = ?, answered_by = ?, answered_at = ? WHERE run_id = ? AND id = ? AND answer IS NULL',
  list: 'SELECT * FROM questions WHERE run_id = ? ORDER BY rowid',
};

/** The questions the clarify step left for people, and their answers. */
export class QuestionRepository {
  readonly #changes: ChangeReporter;
  readonly #sql: Statements<typeof sql>;

  constructor(db: Database.Database, changes: ChangeReporter) {
    this.#changes = changes;
    this.#sql = statements(db, sql);
  }

  /** Records the questions of the clarify step; asked again (a re-run step), nothing changes. */
  add(runId: string, questions: readonly { id: string; text: string }[]): void {
    if (questions.length === 0) return;
    const at = now();
    this.#changes.transaction(() => {
      for (const question of questions) this.#sql.add.run(runId, question.id, question.text, at);
      this.#changes.changed({ table: 'questions', runId });
    });
  }

  /** Keeps a person's answer; false when the question is unknown or already answered (the first answer stands). */
  answer(runId: string, id: string, answer: string, by: string): boolean {
    const result = this.#sql.answer.run(answer, by, now(), runId, id);
    if (result.changes > 0) this.#changes.changed({ table: 'questions', runId });
    return result.changes > 0;
  }

  list(runId: string): QuestionRecord[] {
    return (this.#sql.list.all(runId) as Row[]).map(toQuestion);
  }
}

function toQuestion(row: Row): QuestionRecord {
  const text = (value: unknown): string | null => (value === null || value === undefined ? null : String(value));
  return { id: String(row.id), text: String(row.text), askedAt: String(row.asked_at), answer: text(row.answer), answeredBy: text(row.answered_by), answeredAt: text(row.answered_at) };
}
