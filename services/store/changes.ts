import type Database from 'better-sqlite3';

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

/**
 * The store's change reports, shared by every repository of one connection: a write reports what
 * it changed, and a report made inside `transaction` waits until that transaction commits.
 */
export class ChangeReporter {
  readonly #db: Database.Database;
  readonly #listeners = new Set<(change: StoreChange) => void>();
  /** Changes made inside the open transaction: reported once it commits, dropped if it rolls back. */
  #uncommitted: StoreChange[] = [];

  constructor(db: Database.Database) {
    this.#db = db;
  }

  transaction<T>(work: () => T): T {
    let result: T;
    try {
      result = this.#db.transaction(work)();
    } catch (error) {
      if (!this.#db.inTransaction) this.#uncommitted = [];
      throw error;
    }
    if (!this.#db.inTransaction) {
      const committed = this.#uncommitted;
      this.#uncommitted = [];
      for (const change of committed) this.#report(change);
    }
    return result;
  }

  /** Calls `listener` after each committed write to the tables `StoreChange` names; returns how to stop. */
  onChange(listener: (change: StoreChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  changed(change: StoreChange): void {
    if (this.#listeners.size === 0) return;
    this.#uncommitted.push(change);
    if (this.#db.inTransaction) return;
    // Also what a transaction opened without `transaction()` left behind: a listener re-reads
    // the rows, so a change that was rolled back after all is only a wasted read.
    const committed = this.#uncommitted;
    this.#uncommitted = [];
    for (const each of committed) this.#report(each);
  }

  #report(change: StoreChange): void {
    for (const listener of this.#listeners) {
      try {
        listener(change);
      } catch {
        // A reader's copy going wrong never fails the write it observed (the write is durable).
      }
    }
  }
}
