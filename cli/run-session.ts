import path from 'node:path';
import readline from 'node:readline/promises';
import { createActor, type Snapshot } from 'xstate';
import { provideRun, type AskApproval } from '../actors/provide.ts';
import type { RunServices } from '../actors/run-services.ts';
import { childProcessEnv, type AgentDefinitions, type Config, type Env } from '../config/index.ts';
import { messageOf } from '../errors.ts';
import { interAgentEventTypes, type TaskRef } from '../machines/events.ts';
import type { OrchestratorInput, OrchestratorOutput } from '../machines/orchestrator.machine.ts';
import { GitService } from '../services/git/git-service.ts';
import { ModelGateway } from '../services/llm/gateway.ts';
import type { ModelProvider } from '../services/llm/provider.ts';
import { AgentLogs } from '../services/logger.ts';
import { LocalPrProvider } from '../services/pr/local-pr-provider.ts';
import { createWorktreeTools } from '../services/tools/worktree-tools.ts';
import { Preferences } from '../services/preferences.ts';
import { RunClock } from '../services/run-clock.ts';
import { Checkpointer } from '../services/store/checkpointer.ts';
import { stateDir, type Store } from '../services/store/store.ts';
import { exportCheckpoint } from './checkpoint-export.ts';
import { MonitorServerError, createStatelyInspector, startMonitoring } from '../server/index.ts';
import type { Reporter } from './reporter.ts';

export interface SessionOptions {
  store: Store;
  runId: string;
  target: string;
  requirements: string;
  config: Config;
  agents: AgentDefinitions;
  env: Env;
  provider: ModelProvider;
  autoApprove: boolean;
  reporter: Reporter;
  /** The persisted actor tree to continue from; absent for a new run. */
  snapshot?: Snapshot<unknown>;
  /** Forward inspection events to the Stately inspector at this WebSocket URL (`--inspect`). */
  inspectUrl?: string | undefined;
  /** When the configured monitor port is busy, say so and take a free one instead of failing (the demo). */
  portFallback?: boolean | undefined;
}

export type SessionResult = { kind: 'finished'; output: OrchestratorOutput } | { kind: 'interrupted'; signal: string };

export function orchestratorInput(config: Config, autoApprove: boolean): OrchestratorInput {
  const limits = config.limits;
  return {
    autoApprove,
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

/** Log files are named like the model-call agents: `ever-thinker`, not the actor id `everThinker`. */
const logName = (actor: string): string => (actor === 'everThinker' ? 'ever-thinker' : actor);

/**
 * Decisions only the orchestrator makes (a task failed, or was skipped by a person or for
 * stagnation) are copied to the tasks table, and a skipped task's open PR is closed.
 */
function projectDecisions(store: Store, runId: string, tasks: readonly TaskRef[]): void {
  for (const ref of tasks) {
    if (ref.status !== 'failed' && ref.status !== 'skipped') continue;
    const stored = store.getTask(runId, ref.id);
    if (!stored || stored.status === ref.status) continue;
    store.updateTask(runId, ref.id, { status: ref.status });
    const pr = store.getPullRequestForTask(runId, ref.id);
    if (pr?.status === 'open') store.markPullRequestClosed(pr.number);
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
  const childEnv = childProcessEnv(options.env);
  const preferences = new Preferences(stateDir(options.target));
  const git = new GitService({
    root: options.target,
    identity: { name: config.git.author_name, email: config.git.author_email },
    baseBranch: config.git.base_branch,
    env: childEnv,
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
    prs: new LocalPrProvider({ store, git, runId }),
    childEnv,
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
              baseBranch: config.git.base_branch,
            }),
  };
  const clock = new RunClock(store, runId);
  const machine = provideRun(services, clock, askOnTerminal);

  let failure: unknown;
  let exportedPhase = '';
  const checkpointer = new Checkpointer({
    store,
    runId,
    journaled: new Set(interAgentEventTypes),
    onFlush: (messages, phase) => {
      for (const message of messages) {
        logs.for(logName(message.from)).info({ type: message.type, to: message.to, payload: message.payload, correlationId: message.correlationId }, 'message');
      }
      reporter.messages(messages);
      clock.flushIfDue(1000);
      projectDecisions(store, runId, actor.getSnapshot().context.tasks);
      if (phase !== exportedPhase) {
        exportedPhase = phase;
        exportCheckpoint(options.target, runId, store);
      }
    },
    onPhase: (phase) => {
      reporter.phase(phase);
      logs.for('orchestrator').info({ phase }, 'phase');
    },
    onError: (error) => {
      failure = error;
    },
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
  const inspector = options.inspectUrl ? createStatelyInspector({ url: options.inspectUrl }) : undefined;
  store.setMonitorUrl(runId, monitoring.url);
  reporter.line(`monitoring: ${monitoring.url}${config.monitor.token ? '' : ` (intervention token ${monitoring.token})`}`);
  if (monitoring.exposure) reporter.line(monitoring.exposure);
  if (inspector) reporter.line(`inspection events also go to the Stately inspector at ${options.inspectUrl}`);

  const actor = createActor(machine, {
    id: 'orchestrator',
    systemId: 'orchestrator',
    input: orchestratorInput(config, options.autoApprove),
    inspect: (event) => {
      checkpointer.observe(event);
      monitoring.observe(event);
      inspector?.inspect(event);
    },
    ...(options.snapshot ? { snapshot: options.snapshot } : {}),
  });
  checkpointer.attach(actor);
  monitoring.attach(actor);

  const result = await new Promise<SessionResult>((resolve, reject) => {
    const onSignal = (signal: NodeJS.Signals) => {
      // Keep what is journaled, tear nothing down into the checkpoint: the run resumes from here.
      checkpointer.flush();
      checkpointer.stop();
      actor.stop();
      resolve({ kind: 'interrupted', signal });
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    const cleanup = () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    };
    actor.subscribe({
      next: (snapshot) => {
        if (failure) {
          cleanup();
          checkpointer.stop();
          actor.stop();
          reject(failure);
        } else if (snapshot.status === 'done') {
          cleanup();
          checkpointer.flush();
          checkpointer.stop();
          rememberIdeas(store, runId, preferences);
          resolve({ kind: 'finished', output: snapshot.output as OrchestratorOutput });
        }
      },
      // A bug in a chart or an action: keep the last good checkpoint, stop every child (rule 6).
      error: (error) => {
        cleanup();
        checkpointer.stop();
        actor.stop();
        reject(new Error(`the actor tree failed: ${messageOf(error)}`, { cause: error }));
      },
    });
    try {
      actor.start();
    } catch (error) {
      cleanup();
      checkpointer.stop();
      reject(error);
    }
  }).finally(async () => {
    // Also when the tree failed: the port is released and status stops pointing at it.
    clock.flush();
    inspector?.stop();
    await monitoring.close();
    store.setMonitorUrl(runId, null);
  });
  return result;
}
