/** Rows of the store, as the rest of the program sees them (camelCase, parsed JSON). */

export type RunStatus = 'running' | 'interrupted' | 'finished';

export type { TaskStatus } from '../../protocol/tasks.ts';
import type { TaskStatus } from '../../protocol/tasks.ts';

export interface NewRun {
  id: string;
  target: string;
  requirements: string;
  /** The resolved configuration the run started with, without secrets. */
  settings: unknown;
  snapshotVersion: number;
  machineFingerprint: string;
}

export interface RunRecord {
  id: string;
  target: string;
  requirements: string;
  status: RunStatus;
  phase: string;
  outcome: string | null;
  reason: string | null;
  startedAt: string;
  updatedAt: string;
  finishedAt: string | null;
  settings: unknown;
  snapshotVersion: number;
  machineFingerprint: string;
  pid: number | null;
  host: string | null;
  /** Wall time the run was actually running, summed over every process that drove it. */
  activeMs: number;
  sessions: number;
  scope: unknown;
  /** The monitoring server of the process driving the run, while it runs. */
  monitorUrl: string | null;
  /**
   * What of the stored row cannot be read ("its stored settings are not JSON (...)"), or null. A
   * corrupted row is still listed; its unreadable fields are null. It cannot be resumed or retried.
   */
  corrupted: string | null;
}

/** One inter-agent event, as journaled. */
export interface JournalMessage {
  id: string;
  from: string;
  to: string;
  type: string;
  payload: unknown;
  correlationId: string | null;
  at: string;
}

export interface NewTask {
  id: string;
  title: string;
  type: string;
  description: string;
  acceptanceCriteria: string[];
  dependsOn: string[];
  origin: 'plan' | 'improvement';
  angle?: string | null;
  priority?: number | null;
}

/** What the orchestrator's chart says of a task: written to the tasks table at every checkpoint. */
export interface TaskProjection {
  id: string;
  status: TaskStatus;
  attempt: number;
}

export interface TaskRecord extends Required<NewTask> {
  runId: string;
  status: TaskStatus;
  attempts: number;
  branch: string | null;
  prNumber: number | null;
  /** The PR's page where it lives (GitHub); null for local PRs. */
  prUrl: string | null;
  angle: string | null;
  priority: number | null;
}

export interface PullRequestRecord {
  number: number;
  runId: string;
  taskId: string;
  provider: string;
  branch: string;
  base: string;
  title: string;
  body: string;
  status: 'open' | 'merged' | 'closed';
  headSha: string | null;
  mergeSha: string | null;
  /** The PR's number on GitHub (`number` is Moderator's own, unique in the target); null for local PRs. */
  remoteNumber: number | null;
  /** The PR's page on GitHub; null for local PRs. */
  url: string | null;
  revision: number;
  createdAt: string;
  updatedAt: string;
}

export interface ReviewRecord {
  runId: string;
  taskId: string;
  prNumber: number;
  attempt: number;
  verdict: 'approve' | 'request_changes';
  summary: string;
  comments: string[];
  testsPassed: boolean;
}

export interface TestRunRecord {
  runId: string;
  taskId: string;
  attempt: number;
  /** The setup and test commands, as run: `npm ci && npm test`. */
  command: string;
  passed: boolean;
  exitCode: number | null;
  timedOut: boolean;
  durationMs: number;
  output: string;
  /** What the project's `lint_command` found after the tests, when one is set and its output could be counted. */
  lintFindings?: number | null;
}

export interface TokenUsage {
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheWriteTokens: number;
  /**
   * Absent when the API reported the usage. `counted`: the server sent none and the tokens were
   * counted with the model's own tokenizer; `estimated`: counted with a tokenizer of another model.
   */
  source?: 'counted' | 'estimated' | undefined;
}

export interface ModelCallStart {
  runId: string;
  callKey: string;
  agent: string;
  purpose: string;
  taskId?: string | null;
  provider: string;
  model: string;
  /** The prompt's input tokens as counted before it was sent. */
  promptTokens?: number | null;
  promptSource?: 'counted' | 'estimated' | null;
  /** The context zone of the call's conversation (services/context/window.ts). */
  contextZone?: string | null;
}

export interface ModelCallFinish {
  status: 'ok' | 'error';
  model?: string;
  usage?: TokenUsage;
  costUsd?: number;
  latencyMs?: number;
  error?: string;
  reply?: unknown;
}

export interface ModelCallRecord extends TokenUsage {
  id: number;
  runId: string;
  callKey: string;
  agent: string;
  purpose: string;
  taskId: string | null;
  provider: string;
  model: string;
  status: 'sent' | 'ok' | 'error';
  costUsd: number;
  latencyMs: number | null;
  error: string | null;
  reply: unknown;
  promptTokens: number | null;
  contextZone: string | null;
}

export interface RunTotals {
  /** Every call that went out, over all sessions of the run, including failed and interrupted ones. */
  callsSent: number;
  callErrors: number;
  tokensUsed: number;
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
}

export interface AlertRecord {
  runId: string;
  level: 'info' | 'warning' | 'critical';
  kind: string;
  message: string;
  /** Who raised it: `monitor`, or `human` for the notes of interventions. */
  source?: string;
}

/** An alert as stored: with its id (what an acknowledgement names), time and acknowledgement. */
export interface StoredAlert extends Required<AlertRecord> {
  id: number;
  at: string;
  acknowledgedAt: string | null;
}

/** One Monitor tick, as the metrics series keeps it. */
export interface MetricsRow {
  at: string;
  runtimeMs: number;
  tokensUsed: number;
  costUsd: number;
  callsSent: number;
  callErrors: number;
  contextTokens: number;
  healthScore: number;
  tasksMerged: number;
  tasksTotal: number;
  forecastTokens: number | null;
  forecastCostUsd: number | null;
}

/** A question the Moderator's clarify step left for a person, and its answer once given. */
export interface QuestionRecord {
  id: string;
  text: string;
  askedAt: string;
  answer: string | null;
  /** `terminal` or `api`. */
  answeredBy: string | null;
  answeredAt: string | null;
}

/** What an improvement cycle's measurement found; `after` and `magnitude` once the next cycle measured it. */
export interface ImprovementCycleRecord {
  cycle: number;
  before: unknown;
  after: unknown;
  magnitude: number | null;
  tasks: string[];
  at: string;
}
