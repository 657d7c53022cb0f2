import type Database from 'better-sqlite3';
import { toAlert, toMetricsRow, toPullRequest, toQuestion, toReview, toTask, type Store, type StoreChange } from './store.ts';
import type { ImprovementCycleRecord, MetricsRow, PullRequestRecord, QuestionRecord, ReviewRecord, RunTotals, StoredAlert, TaskRecord } from './types.ts';

type Row = Record<string, unknown>;

/** One call's share of the totals, as its row says now. */
interface CallShare {
  taskId: string | null;
  error: boolean;
  tokens: number;
  input: number;
  output: number;
  cost: number;
}

/**
 * One run's rows the monitoring server reads (tasks, pull requests, reviews, alerts, the model
 * calls' totals, outcome and active time), kept in memory. Seeded from the store once, then kept
 * current by the store's change reports: each write re-reads the one row it touched, with
 * statements prepared once. Requests never query SQLite: a query per request cost `/api/health`
 * 35 ms at p99 during a live run (the totals scanned every model call) where the same body from
 * memory is served in well under a millisecond.
 */
export class RunView {
  private readonly tasksById = new Map<string, { record: TaskRecord; order: [string, number] }>();
  private orderedTasks: TaskRecord[] | undefined = [];
  private readonly prs = new Map<number, PullRequestRecord>();
  private orderedPrs: PullRequestRecord[] | undefined = [];
  /** Keyed by task and attempt; a review written again (INSERT OR REPLACE) moves to the end, as its new id does. */
  private readonly reviewsByKey = new Map<string, ReviewRecord>();
  private orderedReviews: ReviewRecord[] | undefined = [];
  private readonly alertsById = new Map<number, StoredAlert>();
  private orderedAlerts: StoredAlert[] | undefined = [];
  private raised = 0;
  /** The Monitor's ticks, oldest first; the dashboard's trends. Capped: a week at one tick a minute. */
  private readonly series: MetricsRow[] = [];
  private questionList: QuestionRecord[] = [];
  private cycleList: ImprovementCycleRecord[] = [];
  private readonly spendByTask = new Map<string, { tokens: number; costUsd: number }>();
  private readonly calls = new Map<number, CallShare>();
  private sums = { sent: 0, errors: 0, tokens: 0, input: 0, output: 0 };
  /**
   * Cost, summed compensated (Neumaier, as SQLite's SUM does): a plain float sum drifts with the
   * order calls finish in. The total is within a rounding step of the exact one, as SQLite's is;
   * the two may differ in the last digit, since SQLite adds in the order of the index it scans.
   */
  private cost = { sum: 0, error: 0 };
  private maxInput = 0;
  /** Each agent's latest counted prompt and its conversation's context zone (services/context/window.ts). */
  private readonly contexts = new Map<string, { id: number; tokens: number; zone: string }>();
  private run: { outcome: string | null; activeMs: number } | undefined;
  private readonly statements: Record<'task' | 'pr' | 'review' | 'call' | 'alert' | 'run' | 'metrics' | 'questions', Database.Statement>;
  private readonly store: Store;
  private readonly stop: () => void;

  constructor(
    store: Store,
    readonly runId: string,
  ) {
    const db = store.db;
    const callColumns = 'id, run_id, agent, task_id, status, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, prompt_tokens, context_zone';
    this.statements = {
      task: db.prepare('SELECT rowid AS seq, * FROM tasks WHERE run_id = ? AND id = ?'),
      pr: db.prepare('SELECT * FROM pull_requests WHERE number = ?'),
      review: db.prepare('SELECT * FROM reviews WHERE run_id = ? AND task_id = ? AND attempt = ?'),
      call: db.prepare(`SELECT ${callColumns} FROM model_calls WHERE id = ?`),
      alert: db.prepare('SELECT * FROM alerts WHERE id = ?'),
      run: db.prepare('SELECT outcome, active_ms FROM runs WHERE id = ?'),
      metrics: db.prepare('SELECT * FROM metrics WHERE id = ?'),
      questions: db.prepare('SELECT * FROM questions WHERE run_id = ? ORDER BY rowid'),
    };
    this.store = store;
    for (const row of db.prepare('SELECT rowid AS seq, * FROM tasks WHERE run_id = ? ORDER BY created_at, rowid').all(runId) as Row[]) this.putTask(row);
    for (const row of db.prepare('SELECT * FROM pull_requests WHERE run_id = ? ORDER BY number').all(runId) as Row[]) this.putPr(row);
    for (const row of db.prepare('SELECT * FROM reviews WHERE run_id = ? ORDER BY id').all(runId) as Row[]) this.putReview(row);
    for (const row of db.prepare('SELECT * FROM alerts WHERE run_id = ? ORDER BY id').all(runId) as Row[]) this.putAlert(toAlert(row));
    for (const row of db.prepare(`SELECT ${callColumns} FROM model_calls WHERE run_id = ? ORDER BY id`).all(runId) as Row[]) this.putCall(row);
    for (const row of store.listMetrics(runId, MAX_SERIES)) this.series.push(row);
    this.readQuestions();
    this.cycleList = store.listImprovementCycles(runId);
    this.readRun();
    this.stop = store.onChange((change) => this.apply(change));
  }

  /** Stops following the store. */
  close(): void {
    this.stop();
  }

  /** As `Store.totals` gives them. */
  totals(): RunTotals {
    const { sent, errors, tokens, input, output } = this.sums;
    return { callsSent: sent, callErrors: errors, tokensUsed: tokens, inputTokens: input, outputTokens: output, costUsd: this.cost.sum + this.cost.error };
  }

  /** Input tokens of the largest prompt sent so far. */
  largestPrompt(): number {
    return this.maxInput;
  }

  /** Per agent (caller name), the prompt tokens of its latest call as counted before sending, and its conversation's zone. */
  contextByAgent(): ReadonlyMap<string, { tokens: number; zone: string }> {
    return this.contexts;
  }

  /** As `Store.listTasks` gives them. */
  tasks(): readonly TaskRecord[] {
    this.orderedTasks ??= [...this.tasksById.values()].sort((a, b) => compareOrder(a.order, b.order)).map((entry) => entry.record);
    return this.orderedTasks;
  }

  pullRequests(): readonly PullRequestRecord[] {
    this.orderedPrs ??= [...this.prs.values()].sort((a, b) => a.number - b.number);
    return this.orderedPrs;
  }

  reviews(): readonly ReviewRecord[] {
    this.orderedReviews ??= [...this.reviewsByKey.values()];
    return this.orderedReviews;
  }

  /** Every alert of the run, oldest first. */
  alerts(): readonly StoredAlert[] {
    this.orderedAlerts ??= [...this.alertsById.values()].sort((a, b) => a.id - b.id);
    return this.orderedAlerts;
  }

  /** Warnings and critical alerts nobody acknowledged. */
  openAlerts(): { warning: number; critical: number } {
    let warning = 0;
    let critical = 0;
    for (const alert of this.alertsById.values()) {
      if (alert.acknowledgedAt !== null) continue;
      if (alert.level === 'warning') warning += 1;
      if (alert.level === 'critical') critical += 1;
    }
    return { warning, critical };
  }

  /** The Monitor's ticks, oldest first. */
  metricsSeries(): readonly MetricsRow[] {
    return this.series;
  }

  questions(): readonly QuestionRecord[] {
    return this.questionList;
  }

  improvementCycles(): readonly ImprovementCycleRecord[] {
    return this.cycleList;
  }

  /** Tokens and cost of the model calls made for a task so far. */
  taskSpend(taskId: string): { tokens: number; costUsd: number } {
    return this.spendByTask.get(taskId) ?? { tokens: 0, costUsd: 0 };
  }

  /** Alerts that are warnings or critical (not the info notes of interventions). */
  raisedAlerts(): number {
    return this.raised;
  }

  outcome(): string | null {
    return this.run?.outcome ?? null;
  }

  activeMs(): number {
    return this.run?.activeMs ?? 0;
  }

  private apply(change: StoreChange): void {
    switch (change.table) {
      case 'runs':
        if (change.runId === this.runId) this.readRun();
        return;
      case 'tasks':
        if (change.runId !== this.runId) return;
        for (const id of change.taskIds) {
          const row = this.statements.task.get(this.runId, id) as Row | undefined;
          if (row) this.putTask(row);
        }
        return;
      case 'pull_requests': {
        const row = this.statements.pr.get(change.number) as Row | undefined;
        if (row && row.run_id === this.runId) this.putPr(row);
        return;
      }
      case 'reviews': {
        if (change.runId !== this.runId) return;
        this.reviewsByKey.delete(reviewKey(change.taskId, change.attempt));
        this.orderedReviews = undefined;
        const row = this.statements.review.get(this.runId, change.taskId, change.attempt) as Row | undefined;
        if (row) this.putReview(row);
        return;
      }
      case 'model_calls': {
        const row = this.statements.call.get(change.id) as Row | undefined;
        if (row && row.run_id === this.runId) this.putCall(row);
        return;
      }
      case 'alerts': {
        const row = this.statements.alert.get(change.id) as Row | undefined;
        if (row && row.run_id === this.runId) this.putAlert(toAlert(row));
        return;
      }
      case 'metrics': {
        const row = this.statements.metrics.get(change.id) as Row | undefined;
        if (!row || row.run_id !== this.runId) return;
        this.series.push(toMetricsRow(row));
        if (this.series.length > MAX_SERIES) this.series.splice(0, this.series.length - MAX_SERIES);
        return;
      }
      case 'questions':
        if (change.runId === this.runId) this.readQuestions();
        return;
      case 'improvement_cycles':
        // A few rows per run, written once per cycle: read whole.
        if (change.runId === this.runId) this.cycleList = this.store.listImprovementCycles(this.runId);
        return;
    }
  }

  private putTask(row: Row): void {
    this.tasksById.set(String(row.id), { record: toTask(row), order: [String(row.created_at), Number(row.seq)] });
    this.orderedTasks = undefined;
  }

  private putPr(row: Row): void {
    const pr = toPullRequest(row);
    this.prs.set(pr.number, pr);
    this.orderedPrs = undefined;
  }

  private putReview(row: Row): void {
    const review = toReview(row);
    this.reviewsByKey.set(reviewKey(review.taskId, review.attempt), review);
    this.orderedReviews = undefined;
  }

  /** A new alert, or an acknowledgement of one already kept. */
  private putAlert(alert: StoredAlert): void {
    if (!this.alertsById.has(alert.id) && alert.level !== 'info') this.raised += 1;
    this.alertsById.set(alert.id, alert);
    this.orderedAlerts = undefined;
  }

  private readQuestions(): void {
    this.questionList = (this.statements.questions.all(this.runId) as Row[]).map(toQuestion);
  }

  /** Replaces a call's share of the totals with what its row says now (sent, then finished). */
  private putCall(row: Row): void {
    const id = Number(row.id);
    const input = Number(row.input_tokens);
    const output = Number(row.output_tokens);
    const share: CallShare = {
      taskId: row.task_id === null || row.task_id === undefined ? null : String(row.task_id),
      error: row.status === 'error',
      tokens: input + output + Number(row.cache_read_tokens) + Number(row.cache_write_tokens),
      input,
      output,
      cost: Number(row.cost_usd),
    };
    const before = this.calls.get(id);
    this.calls.set(id, share);
    const sums = this.sums;
    if (!before) sums.sent += 1;
    sums.errors += Number(share.error) - Number(before?.error ?? false);
    sums.tokens += share.tokens - (before?.tokens ?? 0);
    sums.input += share.input - (before?.input ?? 0);
    sums.output += share.output - (before?.output ?? 0);
    if (share.cost !== (before?.cost ?? 0)) this.addCost(share.cost - (before?.cost ?? 0));
    const agent = String(row.agent);
    if (row.prompt_tokens !== null && row.prompt_tokens !== undefined && id >= (this.contexts.get(agent)?.id ?? 0)) {
      this.contexts.set(agent, { id, tokens: Number(row.prompt_tokens), zone: row.context_zone === null ? 'ok' : String(row.context_zone) });
    }
    if (share.taskId !== null) {
      const spend = this.spendByTask.get(share.taskId) ?? { tokens: 0, costUsd: 0 };
      this.spendByTask.set(share.taskId, { tokens: spend.tokens + share.tokens - (before?.tokens ?? 0), costUsd: spend.costUsd + share.cost - (before?.cost ?? 0) });
    }
    if (input >= this.maxInput) this.maxInput = input;
    else if (before && before.input === this.maxInput) this.maxInput = Math.max(0, ...[...this.calls.values()].map((call) => call.input));
  }

  private addCost(amount: number): void {
    const { sum } = this.cost;
    const next = sum + amount;
    this.cost.error += Math.abs(sum) >= Math.abs(amount) ? sum - next + amount : amount - next + sum;
    this.cost.sum = next;
  }

  private readRun(): void {
    const row = this.statements.run.get(this.runId) as Row | undefined;
    this.run = row ? { outcome: row.outcome === null ? null : String(row.outcome), activeMs: Number(row.active_ms) } : undefined;
  }
}

/** Ticks kept in memory for the trends: a week at the default one a minute. */
const MAX_SERIES = 10_080;

const reviewKey = (taskId: string, attempt: number): string => `${taskId}\u0000${attempt}`;

function compareOrder(a: [string, number], b: [string, number]): number {
  return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] - b[1];
}
