import type { RunView } from '../services/store/run-view.ts';
import type { Store } from '../services/store/store.ts';
import { AGENTS, agentOfActor, agentOfCaller, apiName, callerNames, type CallerName } from '../protocol/agents.ts';
import { forecastRun, type Forecast } from '../protocol/forecast.ts';
import { bandOf, budgetShare, healthScore, type Health } from '../protocol/health.ts';
import type { AgentName, AgentView, LiveState } from './live-state.ts';
import { groupDigits } from '../protocol/numbers.ts';

export interface Limits {
  maxTokensTotal: number;
  maxCostUsd: number | null;
  maxRuntimeMs: number;
  maxErrorRate: number;
  /** Per conversation (limits.max_context_tokens): the zones are shares of it, and the health score before the Monitor's first tick counts it. */
  maxContextTokens?: number | undefined;
  /** For the health score before the Monitor's first tick; unset: errors in a row do not count there. */
  maxConsecutiveErrors?: number;
  stagnationMs?: number;
}

/**
 * Everything a view reads: the run's rows and the live state, both in memory. Only the list of
 * runs (`/api/runs`, read by people, not polled) still queries the store.
 */
export interface ViewContext {
  store: Store;
  view: RunView;
  runId: string;
  target: string;
  live: LiveState;
  limits: Limits;
  startedAt: number;
  now: () => number;
  websocketClients: () => number;
}

export interface MetricsBody {
  tokens_used: number;
  context_size: number;
  tasks_completed: number;
  tasks_total: number;
  prs_merged: number;
  cost_usd: number;
  error_rate: number;
  runtime_seconds: number;
  improvement_cycle: number;
  calls_sent: number;
  /** Tasks started and not ended: implementing, in review, waiting to merge or merging. */
  tasks_in_flight: number;
  /** PRs waiting for a reviewer. */
  review_queue_length: number;
  /** Approved PRs waiting for the merge queue, and the one it is merging. */
  merge_queue_length: number;
  /** Per agent: the prompt tokens of its latest call, counted before sending, and its conversation's context zone. */
  context_by_agent: Record<string, { tokens: number; zone: string }>;
  /** 0-100, the Monitor's own once it has ticked (see protocol/health.ts). */
  health_score: number;
  /** Warnings and critical alerts nobody acknowledged. */
  alerts_open: number;
  consecutive_errors: number;
  /** What the run will have used when the tasks left are done; null before anything can be said. */
  forecast_tokens_at_finish: number | null;
  forecast_cost_at_finish_usd: number | null;
  forecast_tokens_to_finish: number | null;
  forecast_cost_to_finish_usd: number | null;
  forecast: { tasks_left: number; based_on_tasks: number; tokens_per_task: number; cost_per_task_usd: number } | null;
  /** The measured magnitude of the latest improvement cycle measured, when there is one. */
  improvement_magnitude: number | null;
  limits: { max_tokens_total: number; max_cost_usd: number | null; max_runtime_seconds: number; max_error_rate: number; max_context_tokens: number | null };
}

/** Outcomes that mean the run did not get where it was going. `cancelled` was a person's choice. */
const failingOutcomes = new Set(['failed', 'stuck', 'budget_exhausted', 'needs_human']);


function get(value: unknown, key: string): unknown {
  return typeof value === 'object' && value !== null && key in value ? (value as Record<string, unknown>)[key] : undefined;
}

const numberOr = (value: unknown, fallback: number): number => (typeof value === 'number' && Number.isFinite(value) ? value : fallback);
const listOf = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);

/** An actor's key in the API's JSON: the agent's (`ever_thinker`), with its slot for a slotted one (`techlead_2`). */
export function apiActorName(actorId: string): string {
  const agent = agentOfActor(actorId);
  if (agent === undefined) return actorId;
  const slot = /-([0-9]+)$/.exec(actorId)?.[1];
  return slot === undefined ? apiName(agent) : `${AGENTS[agent].configKey}_${slot}`;
}

interface SlotView {
  id: string;
  task_id: string | null;
  state: string;
}

/** The TechLeads (or reviewers) of the root's context, each with its task and its chart's state. */
function slotsOf(live: LiveState, key: 'techleads' | 'reviewers'): SlotView[] {
  return listOf(get(live.rootContext(), key)).map((slot) => {
    const id = String(get(slot, 'id'));
    const task = get(slot, 'taskId');
    return { id, task_id: typeof task === 'string' ? task : null, state: live.agent(id).state };
  });
}

/** The ids of the tasks started and not ended, in plan order. */
function inFlight(tasks: unknown): string[] {
  return listOf(tasks).filter((task) => get(task, 'status') === 'in_progress' || get(task, 'status') === 'in_review').map((task) => String(get(task, 'id')));
}

/** The queues between the agents, as the orchestrator holds them. */
function queuesOf(live: LiveState) {
  const root = live.rootContext();
  const merging = get(root, 'merging');
  return {
    work_queue: listOf(get(root, 'workQueue')).map(String),
    review_queue: listOf(get(root, 'reviewQueue')).map(String),
    merge_queue: listOf(get(root, 'mergeQueue')).map(String),
    merging: typeof merging === 'string' ? merging : null,
  };
}

function outcomeOf(context: ViewContext): string | null {
  const live = get(context.live.rootContext(), 'outcome');
  if (typeof live === 'string' && context.live.rootStatus() !== 'active') return live;
  return context.view.outcome();
}

/** The Monitor's latest reading, once it has ticked. */
function monitorReading(context: ViewContext): { health?: Health; consecutiveErrors?: number; runtimeMs?: number; contextTokens?: number } | undefined {
  const last = get(context.live.agentContext('monitor'), 'last');
  return last !== null && typeof last === 'object' ? (last as ReturnType<typeof monitorReading>) : undefined;
}

/**
 * The health score: the Monitor's from its latest tick (what the floor is checked against), or,
 * before its first tick, the same function over what the view holds (no stagnation measured yet).
 */
export function healthOf(context: ViewContext): Health {
  const { view, limits } = context;
  const measured = monitorReading(context)?.health;
  const open = view.openAlerts();
  if (measured) {
    // Alerts acknowledged since the tick count at once: acknowledging is how a person clears them.
    const alerts = Math.min(10, 2 * open.warning + 5 * open.critical);
    const score = Math.max(0, Math.min(100, Math.round(measured.score + measured.lost.alerts - alerts)));
    return { score, band: bandOf(score), lost: { ...measured.lost, alerts } };
  }
  const totals = view.totals();
  return healthScore({
    callsSent: totals.callsSent,
    callErrors: totals.callErrors,
    maxErrorRate: limits.maxErrorRate,
    consecutiveErrors: 0,
    maxConsecutiveErrors: limits.maxConsecutiveErrors ?? 0,
    budgetShare: budgetShare({ tokens: totals.tokensUsed, costUsd: totals.costUsd, runtimeMs: view.activeMs() }, limits),
    contextShare: limits.maxContextTokens ? view.largestPrompt() / limits.maxContextTokens : 0,
    stagnationShare: 0,
    openAlerts: open,
  });
}

/** The forecast from the view's tasks and what each has spent. */
export function forecastOfView(view: RunView): Forecast | null {
  const totals = view.totals();
  return forecastRun({ tokens: totals.tokensUsed, costUsd: totals.costUsd }, view.tasks().map((task) => ({ status: task.status, ...view.taskSpend(task.id) })));
}

export function healthView(context: ViewContext) {
  const { live, view, runId } = context;
  const agents = Object.fromEntries(live.actorNames().filter((id) => id !== 'orchestrator').map((id) => [apiActorName(id), live.agent(id).state]));
  const outcome = outcomeOf(context);
  const alerting = live.agent('monitor').state.split('.').includes('alerting');
  const raised = view.raisedAlerts();
  const errors = view.totals().callErrors;
  const health = healthOf(context);
  const status =
    live.rootStatus() === 'error' || (outcome !== null && failingOutcomes.has(outcome)) || health.band === 'critical'
      ? 'unhealthy'
      : alerting || raised > 0 || live.alertsSeen > 0 || errors > 0 || health.band === 'degraded'
        ? 'degraded'
        : 'healthy';
  return {
    status,
    uptime_seconds: Math.floor((context.now() - context.startedAt) / 1000),
    agents,
    health_score: health.score,
    health_band: health.band,
    health_lost: health.lost,
    run_id: runId,
    phase: live.currentPhase(),
    outcome,
    techleads: slotsOf(live, 'techleads'),
    websocket_clients: context.websocketClients(),
  };
}

export function metricsView(context: ViewContext): MetricsBody {
  const { view, live, limits } = context;
  const totals = view.totals();
  const tasks = view.tasks();
  const lastSample = get(live.agentContext('monitor'), 'last');
  const queues = queuesOf(live);
  const activeMs = view.activeMs();
  const forecast = forecastOfView(view);
  const open = view.openAlerts();
  const cycles = view.improvementCycles().filter((cycle) => cycle.magnitude !== null);
  return {
    tokens_used: totals.tokensUsed,
    // The monitor's own measure once it has ticked; before that, the largest prompt sent.
    context_size: numberOr(get(lastSample, 'contextTokens'), view.largestPrompt()),
    tasks_completed: tasks.filter((task) => task.status === 'merged').length,
    tasks_total: tasks.length,
    prs_merged: view.pullRequests().filter((pr) => pr.status === 'merged').length,
    cost_usd: totals.costUsd,
    error_rate: totals.callsSent === 0 ? 0 : totals.callErrors / totals.callsSent,
    runtime_seconds: Math.round(Math.max(activeMs, numberOr(get(lastSample, 'runtimeMs'), 0)) / 1000),
    improvement_cycle: numberOr(get(live.rootContext(), 'improvementCycle'), 0),
    calls_sent: totals.callsSent,
    tasks_in_flight: inFlight(get(live.rootContext(), 'tasks')).length,
    review_queue_length: queues.review_queue.length,
    merge_queue_length: queues.merge_queue.length + (queues.merging === null ? 0 : 1),
    context_by_agent: Object.fromEntries(
      [...view.contextByAgent()].map(([caller, context]) => [callerNames.includes(caller as CallerName) ? apiName(agentOfCaller(caller as CallerName)) : caller, { tokens: context.tokens, zone: context.zone }]),
    ),
    health_score: healthOf(context).score,
    alerts_open: open.warning + open.critical,
    consecutive_errors: numberOr(get(lastSample, 'consecutiveErrors'), 0),
    forecast_tokens_at_finish: forecast?.tokensAtFinish ?? null,
    forecast_cost_at_finish_usd: forecast?.costAtFinish ?? null,
    forecast_tokens_to_finish: forecast?.tokensToFinish ?? null,
    forecast_cost_to_finish_usd: forecast?.costToFinish ?? null,
    forecast: forecast
      ? { tasks_left: forecast.tasksLeft, based_on_tasks: forecast.basedOn, tokens_per_task: forecast.tokensPerTask, cost_per_task_usd: forecast.costPerTask }
      : null,
    improvement_magnitude: cycles.at(-1)?.magnitude ?? null,
    limits: {
      max_tokens_total: limits.maxTokensTotal,
      max_cost_usd: limits.maxCostUsd,
      max_runtime_seconds: Math.round(limits.maxRuntimeMs / 1000),
      max_error_rate: limits.maxErrorRate,
      max_context_tokens: limits.maxContextTokens ?? null,
    },
  };
}

export function stateView(context: ViewContext, withDefinitions: boolean) {
  const { live, view, runId } = context;
  const root = live.rootContext();
  const phase = live.currentPhase();
  const tasks = get(root, 'tasks');
  const agents: Record<AgentName, AgentView> = {};
  for (const name of live.actorNames()) agents[name] = live.agent(name);
  return {
    run_id: runId,
    target: context.target,
    phase,
    status: live.rootStatus(),
    live: live.isLive(),
    agents,
    context: {
      tasks: Array.isArray(tasks) ? tasks : [],
      // The seed's field: the first task in flight; `tasks_in_flight` has them all.
      current_task_id: inFlight(tasks)[0] ?? null,
      tasks_in_flight: inFlight(tasks),
      techleads: slotsOf(live, 'techleads'),
      reviewers: slotsOf(live, 'reviewers'),
      ...queuesOf(live),
      outcome: get(root, 'outcome') ?? view.outcome(),
      reason: get(root, 'reason') ?? null,
      improvement_cycle: numberOr(get(root, 'improvementCycle'), 0),
      paused: get(root, 'paused') === true,
    },
    pending_question: live.isLive() ? pendingQuestion(context, phase, root) : null,
    alerts: view.alerts().slice(-20).map((alert) => ({ ...alert, acknowledged_at: alert.acknowledgedAt })),
    ...(withDefinitions ? { definitions: live.definitions } : {}),
  };
}

/** When the Monitor will stop waiting for an answer (it keeps every deadline), once it has set it. */
function deadlineOf(context: ViewContext, id: string): string | null {
  const deadlines = get(context.live.agentContext('monitor'), 'deadlines');
  const found = Array.isArray(deadlines) ? (deadlines as { id?: unknown; due?: unknown }[]).find((deadline) => deadline.id === id) : undefined;
  return typeof found?.due === 'string' ? found.due : null;
}

/** What the run asks a person now: to approve the plan, to answer the clarify questions, or whether to go on past the budget. */
function pendingQuestion(context: ViewContext, phase: string, root: unknown) {
  const { view } = context;
  const tasks = get(root, 'tasks');
  if (phase === 'awaitingApproval') {
    const forecast = forecastOfView(view);
    return {
      kind: 'approve_plan',
      question: `Implement the plan of ${Array.isArray(tasks) ? tasks.length : 0} task(s)?`,
      actions: ['approve', 'reject'],
      tasks: view.tasks().map((task) => ({ id: task.id, title: task.title, type: task.type, depends_on: task.dependsOn, acceptance_criteria: task.acceptanceCriteria })),
      forecast: forecast ? { tokens_at_finish: forecast.tokensAtFinish, cost_at_finish_usd: forecast.costAtFinish, rough: forecast.rough } : null,
      deadline: deadlineOf(context, 'approval'),
    };
  }
  const asking = get(root, 'asking') as { kind?: unknown; ids?: unknown; answered?: unknown; forecast?: Record<string, unknown> } | null | undefined;
  if (asking?.kind === 'questions' && Array.isArray(asking.ids)) {
    const ids = asking.ids as string[];
    const answered = new Set(Array.isArray(asking.answered) ? (asking.answered as string[]) : []);
    return {
      kind: 'clarify',
      question: `The Moderator asks ${ids.length} question(s) before it plans; unanswered, its assumptions stand.`,
      actions: ['answer'],
      questions: view.questions().filter((question) => ids.includes(question.id)).map((question) => ({ id: question.id, text: question.text, answer: question.answer, open: !answered.has(question.id) })),
      deadline: deadlineOf(context, 'questions'),
    };
  }
  if (asking?.kind === 'budget' && asking.forecast) {
    const forecast = asking.forecast;
    return {
      kind: 'budget',
      question_id: 'budget',
      question: `The forecast to finish ${String(forecast.tasksLeft)} task(s) is ~${groupDigits(Number(forecast.tokensAtFinish))} tokens ($${Number(forecast.costAtFinish).toFixed(2)}), past the budget. Go on (the run still stops at the budget), or stop now?`,
      actions: ['answer'],
      answers: ['continue', 'stop'],
      forecast,
      deadline: deadlineOf(context, 'budget'),
    };
  }
  return null;
}

/** Every alert of the run, newest first. */
export function alertsView(context: ViewContext) {
  return {
    alerts: [...context.view.alerts()].reverse().map((alert) => ({
      id: alert.id,
      at: alert.at,
      level: alert.level,
      kind: alert.kind,
      message: alert.message,
      source: alert.source,
      acknowledged_at: alert.acknowledgedAt,
    })),
  };
}

/** The Monitor's ticks, oldest first: the dashboard's trends. `limit` keeps the newest ones. */
export function metricsHistoryView(context: ViewContext, limit: number) {
  return {
    series: context.view.metricsSeries().slice(-limit).map((row) => ({
      at: row.at,
      tokens_used: row.tokensUsed,
      cost_usd: row.costUsd,
      health_score: row.healthScore,
      tasks_completed: row.tasksMerged,
      tasks_total: row.tasksTotal,
      context_size: row.contextTokens,
      error_rate: row.callsSent === 0 ? 0 : row.callErrors / row.callsSent,
      forecast_tokens_at_finish: row.forecastTokens,
      forecast_cost_at_finish_usd: row.forecastCostUsd,
    })),
  };
}

export function tasksView(context: ViewContext) {
  const { view } = context;
  const reviews = view.reviews();
  return {
    tasks: view.tasks().map((task) => ({
      id: task.id,
      title: task.title,
      type: task.type,
      status: task.status,
      attempts: task.attempts,
      origin: task.origin,
      branch: task.branch,
      pr_number: task.prNumber,
      pr_url: task.prUrl,
      acceptance_criteria: task.acceptanceCriteria,
    })),
    pull_requests: view.pullRequests().map((pr) => ({
      number: pr.number,
      task_id: pr.taskId,
      title: pr.title,
      status: pr.status,
      branch: pr.branch,
      revision: pr.revision,
      reviews: reviews
        .filter((review) => review.prNumber === pr.number)
        .map((review) => ({
          attempt: review.attempt,
          verdict: review.verdict,
          summary: review.summary,
          comments: review.comments,
          tests_passed: review.testsPassed,
        })),
    })),
  };
}

export function runsView(context: ViewContext) {
  return {
    runs: context.store.runs.list().map((run) => ({
      id: run.id,
      current: run.id === context.runId,
      status: run.status,
      phase: run.phase,
      outcome: run.outcome,
      reason: run.reason,
      started_at: run.startedAt,
      finished_at: run.finishedAt,
      active_seconds: Math.round(run.activeMs / 1000),
      sessions: run.sessions,
      requirements: run.requirements.length > 200 ? `${run.requirements.slice(0, 200)}...` : run.requirements,
    })),
  };
}
