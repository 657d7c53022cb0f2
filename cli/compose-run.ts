import path from 'node:path';
import readline from 'node:readline/promises';
import { provideRun, type AskApproval } from '../actors/provide.ts';
import type { RunServices } from '../actors/run-services.ts';
import { childProcessEnv, type AgentDefinitions, type Config, type Env, type RunConfig } from '../config/index.ts';
import type { OrchestratorInput, RetryPlan } from '../machines/orchestrator.machine.ts';
import { ContextManager, contextSettings } from '../services/context/context-manager.ts';
import { ModelGateway } from '../services/llm/gateway.ts';
import { withPrices } from '../services/llm/prices.ts';
import type { ModelProvider } from '../services/llm/provider.ts';
import { AgentLogs } from '../services/logger.ts';
import { Preferences } from '../services/preferences.ts';
import { RunClock } from '../services/run-clock.ts';
import type { CommandSandbox } from '../services/sandbox/sandbox.ts';
import { stateDir, type Store } from '../services/store/store.ts';
import { createWorktreeTools } from '../services/tools/worktree-tools.ts';
import { describeForecast } from '../protocol/forecast.ts';
import { gitServiceFor } from './git-service-for.ts';
import { forecastOf, roughPrior } from './monitor-records.ts';
import { createPrProvider, type GitHubSide } from './pull-requests.ts';
import type { Reporter } from './reporter.ts';

/** The one composition root of a run: what `start`, `resume`, `retry` and `demo` all wire the same way. */

/** `attended`: a person can be asked (a terminal, no -y); it defaults to "the plan waits for approval". */
export function orchestratorInput(config: Config, autoApprove: boolean, retry?: RetryPlan, attended = !autoApprove): OrchestratorInput {
  const limits = config.limits;
  return {
    autoApprove,
    ...(retry ? { retry } : {}),
    maxReviewAttempts: limits.max_review_attempts,
    maxImprovementCycles: limits.max_improvement_cycles,
    maxParallelTasks: limits.max_parallel_tasks,
    parallelReviews: config.agents.moderator.parallel_reviews,
    maxConflictRounds: limits.max_conflict_rounds,
    minPriority: config.agents.ever_thinker.min_priority,
    attended,
    maxTaskAttempts: limits.max_task_attempts,
    interventionTimeoutMs: Math.round(limits.intervention_timeout_minutes * 60_000),
    minImprovement: limits.min_improvement,
    monitor: {
      intervalMs: Math.round(config.agents.monitor.check_interval_seconds * 1000),
      limits: {
        maxTokensTotal: limits.max_tokens_total,
        maxCostUsd: limits.max_cost_usd ?? null,
        maxRuntimeMs: Math.round(limits.max_runtime_hours * 3_600_000),
        maxErrorRate: limits.max_error_rate,
        stagnationMs: Math.round(limits.stagnation_minutes * 60_000),
        maxContextTokens: limits.max_context_tokens,
        maxConsecutiveErrors: limits.max_consecutive_errors,
        minHealthScore: limits.min_health_score,
        alertWindowMs: Math.round(config.agents.monitor.alert_window_minutes * 60_000),
      },
    },
  };
}

/**
 * Asks the person at the terminal to approve the plan (only used without -y, on a terminal),
 * after showing every task with its acceptance criteria and the forecast; the prompt ends when
 * the plan is approved or rejected on the dashboard, or its time is up.
 */
function askOnTerminal(store: Store, runId: string, config: Config): AskApproval {
  return async (signal) => {
    const lines = store.tasks.list(runId).flatMap((task, index) => [
      `  ${index + 1}. ${task.id} ${task.type}: ${task.title}${task.dependsOn.length ? ` (after ${task.dependsOn.join(', ')})` : ''}`,
      ...task.acceptanceCriteria.map((criterion) => `       - ${criterion}`),
    ]);
    const forecast = forecastOf(store, runId, roughPrior(store, runId));
    const budget = { maxTokensTotal: config.limits.max_tokens_total, maxCostUsd: config.limits.max_cost_usd ?? null };
    process.stderr.write(`\nThe plan, with each task's acceptance criteria:\n${lines.join('\n')}\n${forecast ? `forecast: ${describeForecast(forecast, budget)}\n` : ''}`);
    const prompt = readline.createInterface({ input: process.stdin, output: process.stderr });
    try {
      const answer = (await prompt.question(`Implement this plan? (${config.limits.intervention_timeout_minutes} min to answer; also on the dashboard) [y/N] `, { signal })).trim().toLowerCase();
      return answer === 'y' || answer === 'yes' ? { approved: true } : { approved: false, reason: 'the plan was declined at the prompt' };
    } finally {
      prompt.close();
    }
  };
}

export interface ComposeOptions {
  store: Store;
  runId: string;
  target: string;
  requirements: string;
  config: RunConfig;
  agents: AgentDefinitions;
  env: Env;
  provider: ModelProvider;
  sandbox: CommandSandbox;
  reporter: Reporter;
  /** For git.provider github (DUO_AGENT_GIT_TOKEN); never stored with the run. */
  gitToken?: string | undefined;
  /** For git.provider github: cli/github.ts, loaded by the caller (gitHubSide). */
  github?: GitHubSide | undefined;
}

export interface RunComposition {
  services: RunServices;
  /** The orchestrator with every effect provided from `services`. */
  machine: ReturnType<typeof provideRun>;
  clock: RunClock;
  logs: AgentLogs;
  preferences: Preferences;
}

/** Builds the run's collaborators once, and the charts they are provided to. */
export function composeRun(options: ComposeOptions): RunComposition {
  const { store, runId, config, reporter, sandbox } = options;
  const childEnv = childProcessEnv(options.env, config.project.pass_env);
  const logs = new AgentLogs({ dir: path.join(stateDir(options.target), 'logs'), runId, level: config.logging.level });
  const gateway = new ModelGateway({
    store,
    runId,
    provider: options.provider,
    budget: { maxTokensTotal: config.limits.max_tokens_total, maxCostUsd: config.limits.max_cost_usd, prices: withPrices(config.model.prices) },
    onCall: (report) => {
      reporter.modelCall(report);
      const usage = report.reply?.usage;
      logs.for(report.agent).info({ callKey: report.callKey, purpose: report.purpose, taskId: report.taskId, fromJournal: report.fromJournal, usage, error: report.error }, 'model call');
    },
  });
  const preferences = new Preferences(stateDir(options.target));
  const git = gitServiceFor(options.target, config, options.env, (line) => logs.for('git').info(line));
  const services: RunServices = {
    runId,
    target: options.target,
    requirements: options.requirements,
    config,
    agents: options.agents,
    store,
    gateway,
    git,
    prs: createPrProvider({ config, gitToken: options.gitToken, store, git, runId, target: options.target, env: childEnv, logs, github: options.github }),
    context: new ContextManager(contextSettings(config), git),
    childEnv,
    sandbox,
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
              sandbox,
              baseBranch: config.git.base_branch,
            }),
  };
  const clock = new RunClock(store, runId);
  return { services, machine: provideRun(services, clock, askOnTerminal(store, runId, config)), clock, logs, preferences };
}
