import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Snapshot } from 'xstate';
import type { ModelProvider } from '../services/llm/provider.ts';
import {
  agentDefinitionWarnings, agentsFileSchema, childProcessEnv, configForResume, loadConfig, resolveTarget,
  type AgentDefinitions, type Config, type ConfigOverrides, type Env,
} from '../config/index.ts';
import { ModeratorError, UsageError } from '../errors.ts';
import { GitService } from '../services/git/git-service.ts';
import { readSession } from '../services/llm/replay.ts';
import { Store, databasePath, stateDir } from '../services/store/store.ts';
import type { CliArgs } from './args.ts';
import { exitCodeOf, exitCodes } from './exit-codes.ts';
import { machineFingerprint, snapshotVersion } from './fingerprint.ts';
import { createProvider, preflight, recording } from './providers.ts';
import { Reporter } from './reporter.ts';
import type { SessionOptions } from './run-session.ts';
import { formatSummary, summarize, type RunSummary } from './summary.ts';

export interface CliContext {
  env: Env;
  cwd: string;
  stdout: (line: string) => void;
  reporter: Reporter;
  stdinIsTty: boolean;
}

/** What a run stores as its settings: the resolved config (no secrets) and the agent definitions. */
interface StoredSettings {
  config: Config;
  agents: AgentDefinitions;
}

const demoSession = fileURLToPath(new URL('../demos/todo-cli/session.json', import.meta.url));

function overridesOf(args: CliArgs): ConfigOverrides {
  return {
    provider: args.provider,
    replayFile: args.replay,
    replayDelayMs: args.replayDelayMs,
    maxTokens: args.maxTokens,
    logLevel: args.logLevel,
    port: args.port,
  };
}

/** `--inspect` sends to a Stately inspector relay; 8081 because the monitor has 8080. */
function inspectUrlOf(args: CliArgs): string | undefined {
  return args.inspect ? 'ws://localhost:8081' : undefined;
}

function countRuns(file: string): number {
  const store = Store.openIfExists(file);
  if (!store) return 0;
  try {
    return store.listRuns().length;
  } finally {
    store.close();
  }
}

function readSessionOrRefuse(file: string) {
  try {
    return readSession(file);
  } catch (error) {
    throw new UsageError((error as Error).message, { cause: error });
  }
}

function worktreeDir(target: string, taskId: string): string {
  return path.join(stateDir(target), 'worktrees', taskId);
}

function withRecording(args: CliArgs, provider: ModelProvider, requirements: string, config: Config): ModelProvider {
  if (!args.record) return provider;
  const file = path.resolve(args.record);
  return recording(provider, file, { requirements, project: { name: config.project.name, language: config.project.language, test_command: config.project.test_command } });
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function newRunId(): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-');
  return `${stamp}-${randomBytes(3).toString('hex')}`;
}

function finish(context: CliContext, args: CliArgs, store: Store, runId: string, interrupted: boolean): number {
  const summary: RunSummary = summarize(store, runId);
  if (args.json) context.stdout(JSON.stringify(summary));
  else context.stdout(formatSummary(summary));
  if (interrupted) {
    context.reporter.line(`interrupted: continue with  npm start -- --resume ${runId} --target ${summary.target}`);
    return exitCodes.interrupted;
  }
  return exitCodeOf(summary.outcome);
}

/** A new run: prepare the target, resolve the config, store the run, drive it to an outcome. */
export async function startRun(
  context: CliContext,
  args: CliArgs,
  start: { requirements: string; target: string; base?: { source: string; values: unknown }; overrides?: ConfigOverrides },
): Promise<number> {
  // A recorded session knows the project it was recorded on (its test command above all).
  const replayed = !start.base && args.replay ? readSessionOrRefuse(path.resolve(context.cwd, args.replay)) : undefined;
  const base = start.base ?? (replayed?.project ? { source: `the session ${args.replay ?? ''}`, values: { project: replayed.project } } : undefined);
  const loaded = loadConfig({
    target: start.target,
    configPath: args.configPath,
    agentsPath: args.agentsPath,
    env: context.env,
    flags: { ...overridesOf(args), ...start.overrides },
    ...(base ? { base } : {}),
    cwd: context.cwd,
  });
  const { config } = loaded;
  if (config.git.provider !== 'local') {
    throw new UsageError(`git.provider "${config.git.provider}" is not available in this version yet; set git.provider: local`);
  }
  const backend = await createProvider({ config, secrets: loaded.secrets, env: context.env, target: start.target, worktreeOf: (id) => worktreeDir(start.target, id), onWarning: (line) => context.reporter.line(line) });
  if (!args.yes && !context.stdinIsTty) {
    throw new UsageError('nobody can approve the plan here (stdin is not a terminal): pass -y to run unattended');
  }
  const identity = { name: config.git.author_name, email: config.git.author_email };
  try {
    // A target Moderator cannot safely work on is the user's input to fix, not a failed run.
    const env = childProcessEnv(context.env);
    await GitService.prepareTarget({ root: start.target, identity, baseBranch: config.git.base_branch, env });
    await new GitService({ root: start.target, identity, baseBranch: config.git.base_branch, env }).assertClean();
  } catch (error) {
    throw error instanceof ModeratorError && error.code === 'git' ? new UsageError(error.message, { cause: error }) : error;
  }

  await preflight(backend, config, context.env);
  const provider = withRecording(args, backend, start.requirements, config);
  const store = Store.open(databasePath(start.target));
  try {
    const busy = store.listRuns().find((run) => run.status === 'running' && run.pid !== null && run.pid !== process.pid && isAlive(run.pid));
    if (busy) throw new UsageError(`run ${busy.id} is still running on this target (process ${busy.pid}); wait for it or stop it first`);
    const runId = newRunId();
    // The intervention token is a credential: not stored with the run (a resumed run prints a new one).
    const settings: StoredSettings = { config: { ...config, monitor: { ...config.monitor, token: undefined } }, agents: loaded.agents };
    store.createRun({ id: runId, target: start.target, requirements: start.requirements, settings, snapshotVersion, machineFingerprint: machineFingerprint() });
    context.reporter.line(`run ${runId} on ${start.target}`);
    context.reporter.line(`models: ${provider.description}`);
    return await drive(context, args, {
      store, runId, target: start.target, requirements: start.requirements, config, agents: loaded.agents, env: context.env, provider, autoApprove: args.yes, reporter: context.reporter,
    });
  } catch (error) {
    markInterrupted(store);
    throw error;
  } finally {
    store.close();
  }
}

/** Runs this process's session of a run, records how it ended, prints the summary. */
async function drive(context: CliContext, args: CliArgs, session: Omit<SessionOptions, 'inspectUrl' | 'portFallback' | 'keepServing'>): Promise<number> {
  const { store, runId } = session;
  for (const warning of agentDefinitionWarnings(session.config, session.agents)) context.reporter.line(`warning: ${warning}`);
  // The actor system, the monitoring server and their dependencies load only for a run.
  const { runSession } = await import('./run-session.ts');
  const result = await runSession({ ...session, inspectUrl: inspectUrlOf(args), portFallback: args.command === 'demo', keepServing: args.keepServing });
  if (result.kind === 'finished') store.finishRun(runId, result.output.outcome, result.output.reason);
  store.releaseRun(runId, result.kind === 'finished' ? 'finished' : 'interrupted');
  return finish(context, args, store, runId, result.kind === 'interrupted');
}

/** Leaves any run this process holds resumable after an error. */
function markInterrupted(store: Store): void {
  for (const run of store.listRuns()) if (run.pid === process.pid) store.releaseRun(run.id, 'interrupted');
}

/** Continues a run from its last checkpoint, with the settings it started with unless flags override them. */
export async function resumeRun(context: CliContext, args: CliArgs, runId: string): Promise<number> {
  const target = resolveTarget(args.target, context.env, context.cwd);
  const file = databasePath(target);
  const store = Store.openIfExists(file);
  if (!store) throw new UsageError(`no Moderator runs in ${target} (${file} does not exist); pass the run's --target`);
  try {
    const run = store.getRun(runId);
    if (!run) {
      const known = store.listRuns().map((candidate) => candidate.id);
      throw new UsageError(`unknown run ${runId} in ${target}${known.length ? `; runs there: ${known.slice(-5).join(', ')}` : ''}`);
    }
    if (run.snapshotVersion !== snapshotVersion || run.machineFingerprint !== machineFingerprint()) {
      throw new UsageError(
        `run ${runId} was written by an incompatible version of Moderator (snapshot v${run.snapshotVersion}, charts ${run.machineFingerprint}; this one: v${snapshotVersion}, ${machineFingerprint()}); it cannot be resumed, start a new run`,
      );
    }
    const saved = store.loadSnapshot(runId);
    const snapshot = saved ? (JSON.parse(saved.json) as Snapshot<unknown> & { status: string; output?: { outcome: string; reason: string | null } }) : undefined;
    if (run.status === 'finished' || snapshot?.status === 'done') {
      // Killed between the last checkpoint and recording the outcome: record it now.
      if (run.status !== 'finished' && snapshot?.output) store.finishRun(runId, snapshot.output.outcome, snapshot.output.reason);
      context.reporter.line(`run ${runId} has already finished; nothing to resume`);
      return finish(context, args, store, runId, false);
    }
    const stored = run.settings as Partial<StoredSettings>;
    const { config, secrets } = configForResume(stored.config, overridesOf(args), context.env, context.cwd);
    const agents = agentsFileSchema.parse({ agents: stored.agents ?? {} }).agents;
    const backend = await createProvider({ config, secrets, env: context.env, target, worktreeOf: (id) => worktreeDir(target, id), onWarning: (line) => context.reporter.line(line) });
    await preflight(backend, config, context.env);
    const provider = withRecording(args, backend, run.requirements, config);
    try {
      store.claimRun(runId, isAlive);
    } catch (error) {
      throw new UsageError((error as Error).message, { cause: error });
    }
    // The intervention token may come from DUO_AGENT_MONITOR_TOKEN again: still not stored.
    store.updateRunSettings(runId, { config: { ...config, monitor: { ...config.monitor, token: undefined } }, agents } satisfies StoredSettings);
    const git = new GitService({ root: target, identity: { name: config.git.author_name, email: config.git.author_email }, baseBranch: config.git.base_branch, env: childProcessEnv(context.env) });
    for (const fixed of await git.recoverAfterCrash()) context.reporter.line(`recovered: ${fixed}`);
    context.reporter.line(`resuming run ${runId} (phase ${run.phase}, session ${run.sessions + 1})`);
    context.reporter.line(`models: ${provider.description}`);
    context.reporter.setTokens(store.totals(runId).tokensUsed);
    return await drive(context, args, {
      store, runId, target, requirements: run.requirements, config, agents, env: context.env, provider, autoApprove: true, reporter: context.reporter,
      ...(snapshot ? { snapshot } : {}),
    });
  } catch (error) {
    markInterrupted(store);
    throw error;
  } finally {
    store.close();
  }
}

/** The bundled offline scenario in a fresh temp repository (or --target), replayed. */
export async function runDemo(context: CliContext, args: CliArgs): Promise<number> {
  const sessionFile = args.replay ? path.resolve(context.cwd, args.replay) : demoSession;
  const session = readSessionOrRefuse(sessionFile);
  const target = args.target ? path.resolve(context.cwd, args.target) : fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-demo-'));
  // The recording was made on an empty repository; replayed elsewhere its replies would not fit.
  // What a demo killed before its run was stored leaves behind (a fresh repository) is still empty enough.
  const existing = fs.existsSync(target) ? fs.readdirSync(target).filter((name) => name !== '.git' && name !== '.duo-agent') : [];
  const earlierRuns = countRuns(databasePath(target));
  if (existing.length > 0 || earlierRuns > 0) {
    throw new UsageError(
      earlierRuns > 0
        ? `${target} already holds a run: continue it with --resume (see \`moderator runs --target ${target}\`), or give a new --target`
        : `the demo builds its program from scratch: ${target} is not empty; give a new or empty --target (or none for a temp folder)`,
    );
  }
  context.reporter.line(`demo: "${session.title ?? session.requirements}", replayed from ${path.relative(context.cwd, sessionFile) || sessionFile}`);
  if (args.replayDelayMs === undefined && !args.keepServing) {
    context.reporter.line('to watch it on the dashboard: --replay-delay-ms 1500 (a slower replay) and --keep-serving (the dashboard stays up after the run until Ctrl-C)');
  }
  const code = await startRun(context, { ...args, yes: true }, {
    requirements: session.requirements,
    target,
    base: { source: 'the demo session', values: session.project ? { project: session.project } : {} },
    overrides: { provider: args.provider ?? 'replay', replayFile: sessionFile },
  });
  if (code === 0) context.reporter.line(`look at the result:  cd ${target} && git log --oneline --graph && node --test test/`);
  return code;
}

/** Lists the runs of a target: a table, or one JSON line per run with --json. */
export function listRuns(context: CliContext, args: CliArgs): number {
  const target = resolveTarget(args.target, context.env, context.cwd);
  const store = Store.openIfExists(databasePath(target));
  if (!store) {
    context.reporter.line(`no runs in ${target}`);
    return 0;
  }
  try {
    const runs = store.listRuns();
    if (args.json) {
      for (const run of runs) context.stdout(JSON.stringify({ ...summarize(store, run.id), startedAt: run.startedAt, status: run.status }));
      return 0;
    }
    if (runs.length === 0) context.stdout(`no runs in ${target}`);
    else context.stdout(['RUN ID                  STARTED                   STATUS       PHASE            OUTCOME', ...runs.map((run) =>
      `${run.id.padEnd(23)} ${run.startedAt.padEnd(25)} ${run.status.padEnd(12)} ${run.phase.padEnd(16)} ${run.outcome ?? '-'}`)].join('\n'));
    return 0;
  } finally {
    store.close();
  }
}

/** Exit status for an error that escaped a command. */
export function exitCodeForError(error: unknown): number {
  if (error instanceof UsageError) return exitCodes.usage;
  // A busy monitor port is the user's to fix, like a bad flag.
  if (error instanceof ModeratorError && (error.code === 'config' || error.code === 'usage' || error.code === 'monitor')) return exitCodes.usage;
  return exitCodes.failed;
}
