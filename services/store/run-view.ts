import type { ModelCallUsage } from './model-calls.ts';
import type { Store, StoreChange } from './store.ts';
import type { OrderedTask } from './tasks.ts';
import type { ImprovementCycleRecord, MetricsRow, PullRequestRecord, QuestionRecord, ReviewRecord, RunTotals, StoredAlert, TaskRecord } from './types.ts';

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
 * current by the store's change reports: each write re-reads the one row it touched, through
 * the repositories' statements (each prepared once). Requests never query SQLite: a query per
 * request cost `/api/health` 35 ms at p99 during a live run (the totals scanned every model
 * call) where the same body from memory is served in well under a millisecond.
 */
export class RunView {
  private readonly tasksById = new Map<string, OrderedTask>();
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
  private readonly store: Store;
  private readonly stop: () => void;

  constructor(
    store: Store,
    readonly runId: string,
  ) {
    this.store = store;
    for (const task of store.tasks.listOrdered(runId)) this.putTask(task);
    for (const pr of store.pullRequests.list(runId)) this.putPr(pr);
    for (const review of store.reviews.list(runId)) this.putReview(review);
    for (const alert of store.alerts.list(runId)) this.putAlert(alert);
    for (const call of store.calls.listUsage(runId)) this.putCall(call);
    for (const row of store.metrics.list(runId, MAX_SERIES)) this.series.push(row);
    this.readQuestions();
    this.cycleList = store.improvementCycles.list(runId);
    this.readRun();
    this.stop = store.onChange((change) => this.apply(change));
  }

  /** Stops following the store. */
  close(): void {
    this.stop();
  }

  /** As `store.calls.totals` gives them. */
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

  /** As `store.tasks.list` gives them. */
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
          const task = this.store.tasks.ordered(this.runId, id);
          if (task) this.putTask(task);
        }
        return;
      case 'pull_requests': {
        const pr = this.store.pullRequests.get(change.number);
        if (pr && pr.runId === this.runId) this.putPr(pr);
        return;
      }
      case 'reviews': {
        if (change.runId !== this.runId) return;
        this.reviewsByKey.delete(reviewKey(change.taskId, change.attempt));
        this.orderedReviews = undefined;
        const review = this.store.reviews.get(this.runId, change.taskId, change.attempt);
        if (review) this.putReview(review);
        return;
      }
      case 'model_calls': {
        const call = this.store.calls.usage(change.id);
        if (call && call.runId === this.runId) this.putCall(call);
        return;
      }
      case 'alerts': {
        const alert = this.store.alerts.get(change.id);
        if (alert && alert.runId === this.runId) this.putAlert(alert);
        return;
      }
      case 'metrics': {
        const metrics = this.store.metrics.get(change.id);
        if (!metrics || metrics.runId !== this.runId) return;
        this.series.push(metrics.tick);
        if (this.series.length > MAX_SERIES) this.series.splice(0, this.series.length - MAX_SERIES);
        return;
      }
      case 'questions':
        if (change.runId === this.runId) this.readQuestions();
        return;
      case 'improvement_cycles':
        // A few rows per run, written once per cycle: read whole.
        if (change.runId === this.runId) this.cycleList = this.store.improvementCycles.list(this.runId);
        return;
    }
  }

  private putTask(task: OrderedTask): void {
    this.tasksById.set(task.record.id, task);
    this.orderedTasks = undefined;
  }

  private putPr(pr: PullRequestRecord): void {
    this.prs.set(pr.number, pr);
    this.orderedPrs = undefined;
  }

  private putReview(review: ReviewRecord): void {
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
    this.questionList = this.store.questions.list(this.runId);
  }

  /** Replaces a call's share of the totals with what its row says now (sent, then finished). */
  private putCall(call: ModelCallUsage): void {
    const id = call.id;
    const input = call.inputTokens;
    const output = call.outputTokens;
    const share: CallShare = {
      taskId: call.taskId,
      error: call.status === 'error',
      tokens: input + output + call.cacheReadTokens + call.cacheWriteTokens,
      input,
      output,
      cost: call.costUsd,
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
    const agent = call.agent;
    if (call.promptTokens !== null && id >= (this.contexts.get(agent)?.id ?? 0)) {
      this.contexts.set(agent, { id, tokens: call.promptTokens, zone: call.contextZone ?? 'ok' });
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
    this.run = this.store.runs.outcomeAndActiveTime(this.runId);
  }
}

/** Ticks kept in memory for the trends: a week at the default one a minute. */
const MAX_SERIES = 10_080;

const reviewKey = (taskId: string, attempt: number): string => `${taskId}\u0000${attempt}`;

function compareOrder(a: [string, number], b: [string, number]): number {
  return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] - b[1];
}
