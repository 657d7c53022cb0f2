import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline/promises';
import { createActor, type Snapshot } from 'xstate';
import { provideRun, type AskApproval } from '../actors/provide.ts';
import type { RunServices } from '../actors/run-services.ts';
import { childProcessEnv, formatBytes, gitEnv, type AgentDefinitions, type Config, type Env, type RunConfig } from '../config/index.ts';
import { StorageFullError, messageOf } from '../errors.ts';
import { interAgentEventTypes, type TaskRef } from '../machines/events.ts';
import type { OrchestratorInput, OrchestratorOutput, RetryPlan } from '../machines/orchestrator.machine.ts';
import { GitService } from '../services/git/git-service.ts';
import { ModelGateway } from '../services/llm/gateway.ts';
import type { ModelProvider } from '../services/llm/provider.ts';
import { AgentLogs } from '../services/logger.ts';
import type { CommandSandbox } from '../services/sandbox/sandbox.ts';
import { createWorktreeTools } from '../services/tools/worktree-tools.ts';
import { Preferences } from '../services/preferences.ts';
import { RunClock } from '../services/run-clock.ts';
import { Checkpointer } from '../services/store/checkpointer.ts';
import { stateDir, type Store } from '../services/store/store.ts';
import { exportCheckpoint } from './checkpoint-export.ts';
import { MonitorServerError, startMonitoring } from '../server/index.ts';
import { relayListening } from './inspect-relay.ts';
import { createPrProvider } from './pull-requests.ts';
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
}

export type SessionResult = { kind: 'finished'; output: OrchestratorOutput } | { kind: 'interrupted'; signal: string };

export function orchestratorInput(config: Config, autoApprove: boolean, retry?: RetryPlan): OrchestratorInput {
  const limits = config.limits;
  return {
    autoApprove,
    ...(retry ? { retry } : {}),
    maxReviewAttempts: limits.max_review_attempts,
    maxImprovementCycles: limits.max_improvement_cycles,
    minPriority: config.agents.ever_thinker.min_priority,
    monitor: {
      intervalMs: Math.round(config.agents.monitor.check_interval_seconds * 1000),
      limits: {
        maxTokensTotal: limits.max_tokens_total,
        maxCostUsd: limits.max_cost_usd ?? null,
        maxRuntimeMs: Math.round(limits.max_runtime_hours * 3_600_000),
        maxErrorRate: limits.max_error_rate,
        stagnationMs: Math.round(limits.stagnation_minutes * 60_000),
        maxContextTokens: limits.max_context_tokens,
      },
    },
  };
}

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

/** Log files are named like the model-call agents: `ever-thinker`, not the actor id `everThinker`. */
const logName = (actor: string): string => (actor === 'everThinker' ? 'ever-thinker' : actor);

/**
 * Decisions only the orchestrator makes (a task failed, or was skipped by a person or for
 * stagnation) are copied to the tasks table, and a skipped task's open PR is closed.
 */
function projectDecisions(store: Store, runId: string, tasks: readonly TaskRef[]): void {
  for (const ref of tasks) {
    if (ref.status !== 'failed' && ref.status !== 'skipped') continue;
    // A failed task's PR stays open for a person (and for `moderator retry`); a skipped one is closed.
    const stored = store.getTask(runId, ref.id);
    if (!stored || stored.status === ref.status) continue;
    store.updateTask(runId, ref.id, { status: ref.status });
    const pr = store.getPullRequestForTask(runId, ref.id);
    if (pr?.status === 'open' && ref.status === 'skipped') store.markPullRequestClosed(pr.number);
  }
}

/** Keeps how this run's improvement ideas ended, for later runs (features.learning). */
function rememberIdeas(store: Store, runId: string, preferences: Preferences): void {
  const at = new Date().toISOString();
  const tasks = store.listTasks(runId).filter((task) => task.origin === 'improvement');
  const taken = new Set(tasks.map((task) => task.title));
  // Ideas ranked below the threshold never became tasks; the analysis step's journal holds them.
  const dropped = store
    .listEffects(runId)
    .filter((effect) => effect.stepKey.startsWith('ever-thinker:analyze:') && effect.status === 'done')
    .flatMap((effect) => {
      const result = store.getEffect(runId, effect.stepKey)?.result as { considered?: { title: string; angle: string; priority: number }[] } | undefined;
      return (result?.considered ?? [])
        .filter((idea) => !taken.has(idea.title))
        .map((idea, index) => ({ runId, taskId: `${effect.stepKey}#${index}`, title: idea.title, angle: idea.angle, priority: idea.priority, outcome: 'below threshold', at }));
    });
  preferences.record([
    ...tasks.map((task) => ({ runId, taskId: task.id, title: task.title, angle: task.angle, priority: task.priority, outcome: task.status, at })),
    ...dropped,
  ]);
}

/** Asks the person at the terminal to approve the plan (only used without -y, on a terminal). */
const askOnTerminal: AskApproval = async () => {
  const prompt = readline.createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = (await prompt.question('Implement this plan? [y/N] ')).trim().toLowerCase();
    return answer === 'y' || answer === 'yes' ? { approved: true } : { approved: false, reason: 'the plan was declined at the prompt' };
  } finally {
    prompt.close();
  }
};

/**
 * Drives one process's share of a run: wires the services into the statecharts, starts (or
 * restores) the actor tree with the checkpointer watching, and waits for the outcome or a signal.
 */
export async function runSession(options: SessionOptions): Promise<SessionResult> {
  const { store, runId, config, reporter } = options;
  const childEnv = childProcessEnv(options.env, config.project.pass_env);
  const commands = { sandbox: options.sandbox };
  reporter.line(commands.sandbox.description);
  const logs = new AgentLogs({ dir: path.join(stateDir(options.target), 'logs'), runId, level: config.logging.level });
  const gateway = new ModelGateway({
    store,
    runId,
    provider: options.provider,
    budget: { maxTokensTotal: config.limits.max_tokens_total, maxCostUsd: config.limits.max_cost_usd },
    onCall: (report) => {
      reporter.modelCall(report);
      const usage = report.reply?.usage;
      logs.for(report.agent).info({ callKey: report.callKey, purpose: report.purpose, taskId: report.taskId, fromJournal: report.fromJournal, usage, error: report.error }, 'model call');
    },
  });
  const preferences = new Preferences(stateDir(options.target));
  const git = new GitService({
    root: options.target,
    identity: { name: config.git.author_name, email: config.git.author_email },
    baseBranch: config.git.base_branch,
    env: gitEnv(options.env),
    log: (line) => logs.for('git').info(line),
  });
  const services: RunServices = {
    runId,
    target: options.target,
    requirements: options.requirements,
    config,
    agents: options.agents,
    store,
    gateway,
    git,
    prs: createPrProvider({ config, gitToken: options.gitToken, store, git, runId, target: options.target, env: childEnv, logs }),
    childEnv,
    sandbox: commands.sandbox,
    logs,
    progress: (line) => reporter.line(line),
    pastIdeas: () => preferences.recent(),
    // Claude Code edits the worktree itself; every other backend loops its tool calls through us.
    toolsFor:
      config.model.provider === 'claude-cli'
        ? undefined
        : (worktree) =>
            createWorktreeTools({
              root: worktree,
              allowedCommands: config.agents.techlead.allowed_commands,
              commandTimeoutMs: config.agents.techlead.command_timeout_seconds * 1000,
              outputCapBytes: 32 * 1024,
              env: childEnv,
              sandbox: commands.sandbox,
              baseBranch: config.git.base_branch,
            }),
  };
  const clock = new RunClock(store, runId);
  const machine = provideRun(services, clock, askOnTerminal);

  /** Ends the session with an error at once, from wherever it is found (set when the session's promise starts). */
  let fail: (error: unknown) => void = () => {};
  let exportedPhase = '';
  const checkpointer = new Checkpointer({
    store,
    runId,
    journaled: new Set(interAgentEventTypes),
    onFlush: (messages, phase) => {
      for (const message of messages) {
        logs.for(logName(message.from)).info({ type: message.type, to: message.to, payload: message.payload, correlationId: message.correlationId }, 'message');
      }
      // A message whose text is the run's stop reason is left to the summary, which prints that reason.
      reporter.messages(messages, actor.getSnapshot().context.reason);
      clock.flushIfDue(1000);
      projectDecisions(store, runId, actor.getSnapshot().context.tasks);
      if (phase !== exportedPhase) {
        exportedPhase = phase;
        exportCheckpoint(options.target, runId, store);
        // The main database file holds every phase change: a lost WAL loses at most one phase.
        store.checkpointWal();
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
    },
  };
  const monitoring = await startMonitoring(monitoringOptions).catch((error: unknown) => {
    if (!options.portFallback || !(error instanceof MonitorServerError) || config.monitor.port === 0) throw error;
    reporter.line(`${(error as Error).message.split(':')[0]}; the demo monitors on a free port instead`);
    return startMonitoring({ ...monitoringOptions, port: 0 });
  });
  // @statelyai/inspect loads only for --inspect.
  const inspector = options.inspectUrl ? (await import('../server/inspector.ts')).createStatelyInspector({ url: options.inspectUrl }) : undefined;
  store.setMonitorUrl(runId, monitoring.url);
  reporter.line(`monitoring: ${monitoring.url}${config.monitor.token ? '' : ` (intervention token ${monitoring.token})`}`);
  if (inspector) reporter.line(`inspection events also go to the Stately inspector at ${options.inspectUrl}`);
  if (options.inspectUrl && !(await relayListening(options.inspectUrl))) {
    reporter.line(`warning: no Stately inspector relay listens at ${options.inspectUrl}; events wait until one does (start one with: node -e "import('@statelyai/inspect/server').then((m) => m.createInspectorServer({ port: 8081 }))")`);
  }

  const actor = createActor(machine, {
    id: 'orchestrator',
    systemId: 'orchestrator',
    input: orchestratorInput(config, options.autoApprove, options.retry),
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
            rememberIdeas(store, runId, preferences);
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
    } catch (error) {
      fail(error);
    }
  }).finally(async () => {
    // Also when the tree failed or the disk is full: every step runs, so the port is always
    // released and the process can exit; a step that fails (a write to a full disk) is logged.
    const steps: [string, () => unknown][] = [
      ['account the run time', () => clock.flush()],
      ['stop the inspector bridge', () => inspector?.stop()],
      // --keep-serving: the dashboard stays up after the run until Ctrl-C (not after an interruption).
      ['keep serving', () => (options.keepServing && !interrupted ? keepServing(reporter, monitoring.url) : undefined)],
      ['close the monitoring server', () => monitoring.close()],
      ['clear the monitor address', () => store.setMonitorUrl(runId, null)],
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
