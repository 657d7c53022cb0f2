import type Database from 'better-sqlite3';
import type { ChangeReporter } from './changes.ts';
import { now, statements, type Row, type Statements } from './sql.ts';
import type { ModelCallFinish, ModelCallRecord, ModelCallStart, RunTotals } from './types.ts';

export interface UsageLine {
  calls: number;
  tokens: number;
  costUsd: number;
}

/** A call's usage without its reply, for a reader that sums every call of a run as each one changes. */
export interface ModelCallUsage {
  id: number;
  runId: string;
  agent: string;
  taskId: string | null;
  status: ModelCallRecord['status'];
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheWriteTokens: number;
  costUsd: number;
  promptTokens: number | null;
  contextZone: string | null;
}

const usageColumns = 'id, run_id, agent, task_id, status, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, prompt_tokens, context_zone';

/** Calls, tokens and cost of a run's calls grouped by `column`. */
const usageBy = (column: 'agent' | 'task_id') =>
  `SELECT ${column} AS key, COUNT(*) AS calls, SUM(input_tokens + output_tokens + cache_read_tokens + cache_write_tokens) AS tokens,
          SUM(cost_usd) AS cost FROM model_calls WHERE run_id = ? AND ${column} IS NOT NULL GROUP BY ${column} ORDER BY ${column}`;

const sql = {
  begin: `INSERT INTO model_calls (run_id, call_key, agent, purpose, task_id, provider, model, status, prompt_tokens, prompt_source, context_zone, started_at)
     VALUES (@runId, @callKey, @agent, @purpose, @taskId, @provider, @model, 'sent', @promptTokens, @promptSource, @contextZone, @at)`,
  finish: `UPDATE model_calls SET status = @status, model = COALESCE(@model, model), input_tokens = @inputTokens,
       output_tokens = @outputTokens, cache_read_tokens = @cacheReadTokens, cache_write_tokens = @cacheWriteTokens,
       usage_source = @usageSource, cost_usd = @costUsd, latency_ms = @latencyMs, error = @error, reply_json = @reply, finished_at = @at
     WHERE id = @id`,
  findCompleted: `SELECT * FROM model_calls WHERE run_id = ? AND call_key = ? AND status = 'ok'`,
  countCompleted: `SELECT COUNT(*) AS n FROM model_calls WHERE run_id = ? AND agent = ? AND status = 'ok'`,
  countCompletedForTask: `SELECT COUNT(*) AS n FROM model_calls WHERE run_id = ? AND agent = ? AND task_id IS ? AND status = 'ok'`,
  list: 'SELECT * FROM model_calls WHERE run_id = ? ORDER BY id',
  usage: `SELECT ${usageColumns} FROM model_calls WHERE id = ?`,
  listUsage: `SELECT ${usageColumns} FROM model_calls WHERE run_id = ? ORDER BY id`,
  largestPrompt: 'SELECT MAX(input_tokens) AS largest FROM model_calls WHERE run_id = ?',
  totals: `SELECT COUNT(*) AS sent,
            SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END) AS errors,
            SUM(input_tokens + output_tokens + cache_read_tokens + cache_write_tokens) AS tokens,
            SUM(input_tokens) AS input, SUM(output_tokens) AS output, SUM(cost_usd) AS cost
     FROM model_calls WHERE run_id = ?`,
  usageByAgent: usageBy('agent'),
  usageByTask: usageBy('task_id'),
  recentStatuses: `SELECT status FROM model_calls WHERE run_id = ? AND started_at >= ? AND status != 'sent' ORDER BY id DESC LIMIT ?`,
};

/** The journal of model calls: each journaled as sent before it goes out, then finished with its usage and reply. */
export class ModelCallRepository {
  readonly #changes: ChangeReporter;
  readonly #sql: Statements<typeof sql>;

  constructor(db: Database.Database, changes: ChangeReporter) {
    this.#changes = changes;
    this.#sql = statements(db, sql);
  }

  /** Journals a call as sent before any byte goes out, so an interrupted call is still counted. */
  begin(call: ModelCallStart): number {
    const result = this.#sql.begin.run({
      ...call, taskId: call.taskId ?? null, promptTokens: call.promptTokens ?? null, promptSource: call.promptSource ?? null, contextZone: call.contextZone ?? null, at: now(),
    });
    const id = Number(result.lastInsertRowid);
    this.#changes.changed({ table: 'model_calls', id });
    return id;
  }

  finish(id: number, finish: ModelCallFinish): void {
    this.#sql.finish.run({
      id,
      status: finish.status,
      model: finish.model ?? null,
      inputTokens: finish.usage?.inputTokens ?? 0,
      outputTokens: finish.usage?.outputTokens ?? 0,
      cacheReadTokens: finish.usage?.cacheReadTokens ?? 0,
      cacheWriteTokens: finish.usage?.cacheWriteTokens ?? 0,
      usageSource: finish.usage?.source ?? null,
      costUsd: finish.costUsd ?? 0,
      latencyMs: finish.latencyMs ?? null,
      error: finish.error ?? null,
      reply: finish.reply === undefined ? null : JSON.stringify(finish.reply),
      at: now(),
    });
    this.#changes.changed({ table: 'model_calls', id });
  }

  findCompleted(runId: string, callKey: string): ModelCallRecord | undefined {
    const row = this.#sql.findCompleted.get(runId, callKey) as Row | undefined;
    return row ? toModelCall(row) : undefined;
  }

  /** An agent's answered calls; given `taskId`, only those for that task (null: for no task). */
  countCompleted(runId: string, agent: string, taskId?: string | null): number {
    const row = (taskId === undefined ? this.#sql.countCompleted.get(runId, agent) : this.#sql.countCompletedForTask.get(runId, agent, taskId)) as Row;
    return Number(row.n);
  }

  list(runId: string): ModelCallRecord[] {
    return (this.#sql.list.all(runId) as Row[]).map(toModelCall);
  }

  usage(id: number): ModelCallUsage | undefined {
    const row = this.#sql.usage.get(id) as Row | undefined;
    return row ? toUsage(row) : undefined;
  }

  /** As `list` orders them. */
  listUsage(runId: string): ModelCallUsage[] {
    return (this.#sql.listUsage.all(runId) as Row[]).map(toUsage);
  }

  /** Input tokens of the largest prompt the run sent (the Monitor's measure of context use). */
  largestPrompt(runId: string): number {
    const row = this.#sql.largestPrompt.get(runId) as Row;
    return Number(row.largest ?? 0);
  }

  /** Tokens and cost of every call that got a reply, plus how many were sent and failed. */
  totals(runId: string): RunTotals {
    const row = this.#sql.totals.get(runId) as Row;
    return {
      callsSent: Number(row.sent ?? 0),
      callErrors: Number(row.errors ?? 0),
      tokensUsed: Number(row.tokens ?? 0),
      inputTokens: Number(row.input ?? 0),
      outputTokens: Number(row.output ?? 0),
      costUsd: Number(row.cost ?? 0),
    };
  }

  /** Calls, tokens and cost grouped by agent and by task, for the summary and the dashboard. */
  usageBreakdown(runId: string): { byAgent: Record<string, UsageLine>; byTask: Record<string, UsageLine> } {
    const group = (statement: Database.Statement) =>
      Object.fromEntries(
        (statement.all(runId) as Row[]).map((row) => [String(row.key), { calls: Number(row.calls), tokens: Number(row.tokens ?? 0), costUsd: Math.round(Number(row.cost ?? 0) * 10_000) / 10_000 }]),
      );
    return { byAgent: group(this.#sql.usageByAgent), byTask: group(this.#sql.usageByTask) };
  }

  /** Trailing model calls of the run that failed, among those sent since `since` (one session's). */
  consecutiveErrors(runId: string, since: string, limit = 50): number {
    const rows = this.#sql.recentStatuses.all(runId, since, limit) as Row[];
    const firstOk = rows.findIndex((row) => row.status !== 'error');
    return firstOk === -1 ? rows.length : firstOk;
  }
}

function toModelCall(row: Row): ModelCallRecord {
  return {
    id: Number(row.id),
    runId: String(row.run_id),
    callKey: String(row.call_key),
    agent: String(row.agent),
    purpose: String(row.purpose),
    taskId: row.task_id === null ? null : String(row.task_id),
    provider: String(row.provider),
    model: String(row.model),
    status: row.status as ModelCallRecord['status'],
    inputTokens: Number(row.input_tokens),
    outputTokens: Number(row.output_tokens),
    cacheReadTokens: Number(row.cache_read_tokens),
    cacheWriteTokens: Number(row.cache_write_tokens),
    ...(row.usage_source === 'counted' || row.usage_source === 'estimated' ? { source: row.usage_source } : {}),
    costUsd: Number(row.cost_usd),
    latencyMs: row.latency_ms === null ? null : Number(row.latency_ms),
    error: row.error === null ? null : String(row.error),
    reply: row.reply_json === null ? undefined : (JSON.parse(String(row.reply_json)) as unknown),
    promptTokens: row.prompt_tokens === null || row.prompt_tokens === undefined ? null : Number(row.prompt_tokens),
    contextZone: row.context_zone === null || row.context_zone === undefined ? null : String(row.context_zone),
  };
}

function toUsage(row: Row): ModelCallUsage {
  return {
    id: Number(row.id),
    runId: String(row.run_id),
    agent: String(row.agent),
    taskId: row.task_id === null || row.task_id === undefined ? null : String(row.task_id),
    status: row.status as ModelCallRecord['status'],
    inputTokens: Number(row.input_tokens),
    outputTokens: Number(row.output_tokens),
    cacheReadTokens: Number(row.cache_read_tokens),
    cacheWriteTokens: Number(row.cache_write_tokens),
    costUsd: Number(row.cost_usd),
    promptTokens: row.prompt_tokens === null || row.prompt_tokens === undefined ? null : Number(row.prompt_tokens),
    contextZone: row.context_zone === null || row.context_zone === undefined ? null : String(row.context_zone),
  };
}
