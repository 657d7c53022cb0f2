import fs from 'node:fs';
import path from 'node:path';
import { createActor, type Snapshot } from 'xstate';
import { formatBytes, type AgentDefinitions, type Env, type RunConfig } from '../config/index.ts';
import { StorageFullError, messageOf } from '../errors.ts';
import { interAgentEventTypes } from '../machines/events.ts';
import type { OrchestratorOutput, RetryPlan } from '../machines/orchestrator.machine.ts';
import { logName } from '../protocol/agents.ts';
import { stepKeys } from '../protocol/keys.ts';
import type { ModelProvider } from '../services/llm/provider.ts';
import type { Preferences } from '../services/preferences.ts';
import type { CommandSandbox } from '../services/sandbox/sandbox.ts';
import { Checkpointer } from '../services/store/checkpointer.ts';
import { stateDir, type Store } from '../services/store/store.ts';
import { MonitorServerError, startMonitoring } from '../server/index.ts';
import { describeForecast } from '../protocol/forecast.ts';
import { TerminalQuestions } from './ask-person.ts';
import { exportCheckpoint } from './checkpoint-export.ts';
import { composeRun, orchestratorInput } from './compose-run.ts';
import { gitHubSide } from './pull-requests.ts';
import { alertsOf, forecastOf, metricsRowOf, readingOf } from './monitor-records.ts';
import { relayListening } from './inspect-relay.ts';
import type { Reporter } from './reporter.ts';

export interface SessionOptions {
  store: Store;
  runId: string;
  target: string;
  requirements: string;
  config: RunConfig;
  agents: AgentDefinitions;
  env: Env;
  provider: ModelProvider;
  autoApprove: boolean;
  reporter: Reporter;
  /** The persisted actor tree to continue from; absent for a new run. */
  snapshot?: Snapshot<unknown>;
  /** Where the project's commands run (see commandSandbox), decided before the run was created or claimed. */
  sandbox: CommandSandbox;
  /** A run continued by `moderator retry`: a fresh tree starts from this plan (when there is no snapshot). */
  retry?: RetryPlan | undefined;
  /** Forward inspection events to the Stately inspector at this WebSocket URL (`--inspect`). */
  inspectUrl?: string | undefined;
  /** When the configured monitor port is busy, say so and take a free one instead of failing (the demo). */
  portFallback?: boolean | undefined;
  /** For git.provider github (DUO_AGENT_GIT_TOKEN); never stored with the run. */
  gitToken?: string | undefined;
  /** After the run ends, keep the monitoring server up until SIGINT or SIGTERM (`--keep-serving`). */
  keepServing?: boolean | undefined;
  /** A person can be asked (a terminal, no -y); unset: as `!autoApprove`. Only a fresh tree reads it (a restored one keeps its own). */
  attended?: boolean | undefined;
}

export type SessionResult = { kind: 'finished'; output: OrchestratorOutput } | { kind: 'interrupted'; signal: string };

/** Below this much free space a disk is full in practice: git and SQLite need room for a few pages, a ref, an object. */
const FULL_DISK_BYTES = 1024 * 1024;

/**
 * The bytes left on the disk holding `dir` when it is full, else undefined. Git does not always
 * say why a write failed (`couldn't write '.git/refs/heads/main.lock'`, measured on a full
 * tmpfs), so a failed step is also checked against the disk itself.
 */
function fullDiskFree(dir: string): number | undefined {
  try {
    const stats = fs.statfsSync(dir);
    const free = stats.bavail * stats.bsize;
    return free < FULL_DISK_BYTES ? free : undefined;
  } catch {
    return undefined;
  }
}

/** Messages after which the work left has changed: the forecast is printed again. */
const TASK_ENDS = new Set(['pr.merged', 'pr.rejected', 'review.held']);

/** Keeps how this run's improvement ideas ended, with their cycle's measured impact, for later runs (features.learning). */
function rememberIdeas(store: Store, runId: string, preferences: Preferences, cycles: number): void {
  const at = new Date().toISOString();
  const measured = store.improvementCycles.list(runId);
  const impactOf = (taskId: string) => measured.find((cycle) => cycle.tasks.includes(taskId))?.magnitude ?? null;
  const tasks = store.tasks.list(runId).filter((task) => task.origin === 'improvement');
  const taken = new Set(tasks.map((task) => task.title));
  // Ideas ranked below the threshold never became tasks; each cycle's analysis step journaled them.
  const dropped = Array.from({ length: cycles }, (_, index) => stepKeys.analyze(index + 1)).flatMap((key) => {
    const effect = store.effects.get(runId, key);
    if (effect?.status !== 'done') return [];
    const result = effect.result as { considered?: { title: string; angle: string; priority: number }[] } | undefined;
    return (result?.considered ?? [])
      .filter((idea) => !taken.has(idea.title))
      .map((idea, index) => ({ runId, taskId: `${key}#${index}`, title: idea.title, angle: idea.angle, priority: idea.priority, outcome: 'below threshold', at }));
  });
  preferences.record([
    ...tasks.map((task) => ({ runId, taskId: task.id, title: task.title, angle: task.angle, priority: task.priority, outcome: task.status, impact: impactOf(task.id), at })),
    ...dropped,
  ]);
}

/**
 * Drives one process's share of a run: wires the services into the statecharts, starts (or
 * restores) the actor tree with the checkpointer watching, and waits for the outcome or a signal.
 */
export async function runSession(options: SessionOptions): Promise<SessionResult> {
  const { store, runId, config, reporter } = options;
  reporter.line(options.sandbox.description);
  const { machine, clock, logs, preferences } = composeRun({ ...options, github: await gitHubSide(config) });

  /** Ends the session with an error at once, from wherever it is found (set when the session's promise starts). */
  let fail: (error: unknown) => void = () => {};
  let exportedPhase = '';
  let recordedTick = '';
  const channels = new Set(config.agents.monitor.alert_channels);
  const budget = { maxTokensTotal: config.limits.max_tokens_total, maxCostUsd: config.limits.max_cost_usd ?? null };
  const checkpointer = new Checkpointer({
    store,
    runId,
    journaled: new Set(interAgentEventTypes),
    onFlush: (messages, phase) => {
      for (const message of messages) {
        logs.for(logName(message.from)).info({ type: message.type, to: message.to, payload: message.payload, correlationId: message.correlationId }, 'message');
      }
      // A message whose text is the run's stop reason is left to the summary, which prints that reason.
      reporter.messages(messages, actor.getSnapshot().context.reason, { alerts: channels.has('console') });
      if (channels.has('log')) {
        for (const alert of alertsOf(runId, messages)) logs.for('monitor')[alert.level === 'critical' ? 'error' : 'warn']({ kind: alert.kind, level: alert.level }, alert.message);
      }
      if (messages.some((message) => TASK_ENDS.has(message.type))) {
        const forecast = forecastOf(store, runId);
        if (forecast && forecast.tasksLeft > 0) reporter.line(`forecast: ${describeForecast(forecast, budget)}`);
      }
      clock.flushIfDue(1000);
      if (phase !== exportedPhase) {
        exportedPhase = phase;
        exportCheckpoint(options.target, runId, store);
        // The main database file holds every phase change: a lost WAL loses at most one phase.
        store.checkpointWal();
      }
    },
    // The tasks table is the chart's task list, and the Monitor's alerts and ticks are its messages and
    // its context, all written with each checkpoint.
    project: (messages) => {
      store.tasks.project(runId, actor.getSnapshot().context.tasks);
      for (const alert of alertsOf(runId, messages)) store.alerts.add(alert);
      // A tick that stops the run stops the Monitor with it before this checkpoint: its last reading is then its child snapshot's.
      const monitor = actor.system.get('monitor') ?? actor.getSnapshot().children.monitor;
      const reading = readingOf(monitor?.getSnapshot().context);
      if (reading && reading.at !== recordedTick) {
        recordedTick = reading.at;
        store.metrics.record(runId, metricsRowOf(reading));
      }
    },
    onPhase: (phase) => {
      reporter.phase(phase);
      logs.for('orchestrator').info({ phase }, 'phase');
    },
    // A checkpoint that cannot be written (disk full, database gone) stops the run now: effects
    // that cannot be journaled must not go on. The last good checkpoint stays for --resume.
    onError: (error) => fail(error),
  });

  const monitoringOptions = {
    store,
    runId,
    target: options.target,
    host: config.monitor.host,
    port: config.monitor.port,
    enableWebSocket: config.monitor.enable_websocket,
    ...(config.monitor.token ? { token: config.monitor.token } : {}),
    logsDir: path.join(stateDir(options.target), 'logs'),
    limits: {
      maxTokensTotal: config.limits.max_tokens_total,
      maxCostUsd: config.limits.max_cost_usd ?? null,
      maxRuntimeMs: Math.round(config.limits.max_runtime_hours * 3_600_000),
      maxErrorRate: config.limits.max_error_rate,
      maxContextTokens: config.limits.max_context_tokens,
      maxConsecutiveErrors: config.limits.max_consecutive_errors,
      stagnationMs: Math.round(config.limits.stagnation_minutes * 60_000),
    },
    liveAlerts: channels.has('live'),
  };
  const monitoring = await startMonitoring(monitoringOptions).catch((error: unknown) => {
    if (!options.portFallback || !(error instanceof MonitorServerError) || config.monitor.port === 0) throw error;
    reporter.line(`${error.problem}; the demo monitors on a free port instead`);
    return startMonitoring({ ...monitoringOptions, port: 0 });
  });
  // @statelyai/inspect loads only for --inspect.
  const inspector = options.inspectUrl ? (await import('../server/inspector.ts')).createStatelyInspector({ url: options.inspectUrl }) : undefined;
  store.runs.setMonitorUrl(runId, monitoring.url);
  reporter.line(`monitoring: ${monitoring.url}${config.monitor.token ? '' : ` (intervention token ${monitoring.token})`}`);
  if (monitoring.exposure) reporter.line(monitoring.exposure);
  if (inspector) reporter.line(`inspection events also go to the Stately inspector at ${options.inspectUrl}`);
  if (options.inspectUrl && !(await relayListening(options.inspectUrl))) {
    reporter.line(`warning: no Stately inspector relay listens at ${options.inspectUrl}; events wait until one does (start one with: node -e "import('@statelyai/inspect/server').then((m) => m.createInspectorServer({ port: 8081 }))")`);
  }

  const actor = createActor(machine, {
    id: 'orchestrator',
    systemId: 'orchestrator',
    input: orchestratorInput(config, options.autoApprove, options.retry, options.attended),
    inspect: (event) => {
      // A full disk halts the session before the failure becomes a decision in any checkpoint:
      // the step runs again on resume, once there is space.
      if (event.type === '@xstate.event' && event.event.type === 'agent.failed') {
        const failed = event.event as { code?: unknown; message?: unknown };
        const free = failed.code === 'storage_full' ? undefined : fullDiskFree(options.target);
        if (failed.code === 'storage_full' || free !== undefined) {
          fail(new StorageFullError(`${String(failed.message)}${free !== undefined ? `; ${formatBytes(free)} left on that disk` : ''}`));
          return;
        }
      }
      checkpointer.observe(event);
      monitoring.observe(event);
      inspector?.inspect(event);
    },
    ...(options.snapshot ? { snapshot: options.snapshot } : {}),
  });
  checkpointer.attach(actor);
  monitoring.attach(actor);
  // The questions the run asks a person, on this terminal too (the dashboard and the API always have them).
  const attended = (actor.getSnapshot().context.settings.attended ?? false) && process.stdin.isTTY === true;
  let terminal: TerminalQuestions | undefined;

  let interrupted = false;
  const result = await new Promise<SessionResult>((resolve, reject) => {
    let settled = false;
    const settle = (finish: () => void) => {
      if (settled) return;
      settled = true;
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      finish();
    };
    const onSignal = (signal: NodeJS.Signals) =>
      settle(() => {
        interrupted = true;
        // Keep what is journaled, tear nothing down into the checkpoint: the run resumes from here.
        checkpointer.flush();
        checkpointer.stop();
        actor.stop();
        resolve({ kind: 'interrupted', signal });
      });
    fail = (error) =>
      settle(() => {
        checkpointer.stop();
        actor.stop();
        reject(error);
      });
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    actor.subscribe({
      next: (snapshot) => {
        if (snapshot.status !== 'done') return;
        settle(() => {
          checkpointer.flush();
          checkpointer.stop();
          try {
            rememberIdeas(store, runId, preferences, snapshot.context.improvementCycle);
          } catch (error) {
            logs.for('orchestrator').warn({ error: messageOf(error) }, 'could not record the improvement outcomes');
          }
          resolve({ kind: 'finished', output: snapshot.output as OrchestratorOutput });
        });
      },
      // A bug in a chart or an action: keep the last good checkpoint, stop every child (rule 6).
      error: (error) => fail(new Error(`the actor tree failed: ${messageOf(error)}`, { cause: error })),
    });
    try {
      actor.start();
      if (attended) terminal = new TerminalQuestions({ store, runId, root: actor, input: process.stdin, output: process.stderr, timeoutMinutes: config.limits.intervention_timeout_minutes });
    } catch (error) {
      fail(error);
    }
  }).finally(async () => {
    // Also when the tree failed or the disk is full: every step runs, so the port is always
    // released and the process can exit; a step that fails (a write to a full disk) is logged.
    const steps: [string, () => unknown][] = [
      ['stop asking on the terminal', () => terminal?.stop()],
      ['account the run time', () => clock.flush()],
      ['stop the inspector bridge', () => inspector?.stop()],
      // --keep-serving: the dashboard stays up after the run until Ctrl-C (not after an interruption).
      ['keep serving', () => (options.keepServing && !interrupted ? keepServing(reporter, monitoring.url) : undefined)],
      ['close the monitoring server', () => monitoring.close()],
      ['clear the monitor address', () => store.runs.setMonitorUrl(runId, null)],
    ];
    for (const [what, step] of steps) {
      try {
        await step();
      } catch (error) {
        logs.for('orchestrator').warn({ error: messageOf(error) }, `could not ${what}`);
      }
    }
  });
  return result;
}

async function keepServing(reporter: Reporter, url: string): Promise<void> {
  reporter.line(`the run has ended; the dashboard stays up at ${url} until Ctrl-C`);
  await nextSignal();
}

/** Resolves at the next SIGINT or SIGTERM, which it takes instead of the default exit. */
function nextSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
