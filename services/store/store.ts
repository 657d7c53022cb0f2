import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { messageOf } from '../../errors.ts';
import { AlertRepository } from './alerts.ts';
import { ChangeReporter, type StoreChange } from './changes.ts';
import { CheckpointRepository } from './checkpoints.ts';
import { EffectRepository } from './effects.ts';
import { ImprovementCycleRepository } from './improvement-cycles.ts';
import { MetricsRepository } from './metrics.ts';
import { migrations } from './migrations.ts';
import { ModelCallRepository } from './model-calls.ts';
import { PullRequestRepository } from './pull-requests.ts';
import { QuestionRepository } from './questions.ts';
import { ReviewRepository } from './reviews.ts';
import { RunRepository } from './runs.ts';
import { StoreError } from './store-error.ts';
import { TaskRepository } from './tasks.ts';
import { TestRunRepository } from './test-runs.ts';

export * from './types.ts';
export type { StoreChange } from './changes.ts';
export type { UsageLine } from './model-calls.ts';

/** Where Moderator keeps everything for a target: `<target>/.duo-agent`. */
export function stateDir(target: string): string {
  return path.join(target, '.duo-agent');
}

export function databasePath(target: string): string {
  return path.join(stateDir(target), 'moderator.db');
}

/**
 * The SQLite store of one target repository: one repository per aggregate over one private
 * connection. Synchronous (better-sqlite3): every write is durable when the call returns, which
 * is what makes "journal, then act" reasoning hold.
 */
export class Store {
  readonly #db: Database.Database;
  readonly #changes: ChangeReporter;
  readonly runs: RunRepository;
  readonly checkpoints: CheckpointRepository;
  readonly tasks: TaskRepository;
  readonly pullRequests: PullRequestRepository;
  readonly reviews: ReviewRepository;
  readonly testRuns: TestRunRepository;
  readonly calls: ModelCallRepository;
  readonly effects: EffectRepository;
  readonly alerts: AlertRepository;
  readonly metrics: MetricsRepository;
  readonly questions: QuestionRepository;
  readonly improvementCycles: ImprovementCycleRepository;

  /** Over a migrated connection; each repository prepares a statement on its first use. */
  private constructor(db: Database.Database) {
    this.#db = db;
    const changes = new ChangeReporter(db);
    this.#changes = changes;
    // In the order they depend on each other: reopening a run reopens its PRs and notes an alert,
    // a checkpoint sets the run's phase, a task projected as skipped closes its local PR.
    this.pullRequests = new PullRequestRepository(db, changes);
    this.alerts = new AlertRepository(db, changes);
    this.runs = new RunRepository(db, changes, { pullRequests: this.pullRequests, alerts: this.alerts, checkpointWal: () => this.checkpointWal() });
    this.checkpoints = new CheckpointRepository(db, changes, this.runs);
    this.tasks = new TaskRepository(db, changes, this.pullRequests);
    this.reviews = new ReviewRepository(db, changes);
    this.testRuns = new TestRunRepository(db);
    this.calls = new ModelCallRepository(db, changes);
    this.effects = new EffectRepository(db);
    this.metrics = new MetricsRepository(db, changes);
    this.questions = new QuestionRepository(db, changes);
    this.improvementCycles = new ImprovementCycleRepository(db, changes);
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
    migrate(db, file);
    return new Store(db);
  }

  /** Opens the database at `file` when there is one; readers never create an empty database. */
  static openIfExists(file: string): Store | undefined {
    return fs.existsSync(file) ? Store.open(file) : undefined;
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }

  /** Runs `work` in one transaction; the changes it made are reported once it commits, none if it rolls back. */
  transaction<T>(work: () => T): T {
    return this.#changes.transaction(work);
  }

  /** Calls `listener` after each committed write to the tables `StoreChange` names; returns how to stop. */
  onChange(listener: (change: StoreChange) => void): () => void {
    return this.#changes.onChange(listener);
  }

  /**
   * Copies the WAL into the main database file (called at phase changes), so the main file
   * always holds a resumable run even if `moderator.db-wal` is lost. PASSIVE: it never waits
   * (a `status` reading meanwhile only delays part of the copy to the next call), so the run's
   * event loop is never held up by another process.
   */
  checkpointWal(): void {
    if (this.#db.memory) return;
    this.#db.pragma('wal_checkpoint(PASSIVE)');
  }
}

function migrate(db: Database.Database, file: string): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > migrations.length) {
    throw new StoreError(
      `the database ${file} was written by a newer Moderator (schema ${version}, this one knows ${migrations.length}): upgrade Moderator`,
    );
  }
  for (let index = version; index < migrations.length; index += 1) {
    const step = db.transaction(() => {
      db.exec(migrations[index] as string);
      db.pragma(`user_version = ${index + 1}`);
    });
    step();
  }
}
