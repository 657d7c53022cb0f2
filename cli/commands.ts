import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Snapshot } from 'xstate';
import { z } from 'zod';
import type { TaskRef } from '../machines/events.ts';
import { TASK_STATUSES } from '../protocol/tasks.ts';
import type { RetryPlan } from '../machines/orchestrator.machine.ts';
import type { ModelProvider } from '../services/llm/provider.ts';
import {
  agentDefinitionWarnings, agentsFileSchema, configForResume, gitEnv, isRunConfig, loadConfig, resolveTarget, withBaseBranch,
  type AgentDefinitions, type Config, type ConfigOverrides, type Env, type LoadedConfig, type RunConfig, type Secrets,
} from '../config/index.ts';
import { ModeratorError, StorageFullError, UsageError, isStorageFull, messageOf } from '../errors.ts';
import { GitService } from '../services/git/git-service.ts';
import { readSession, type Session } from '../services/llm/replay.ts';
import { Store, databasePath, stateDir, type RunRecord } from '../services/store/store.ts';
import { StoreError } from '../services/store/store-error.ts';
import { lockTarget } from '../services/target-lock.ts';
import { CommandLineError, splitCommand } from '../services/test-runner.ts';
import type { CliArgs } from './args.ts';
import { exitCodeOf, exitCodes } from './exit-codes.ts';
import { machineFingerprint, snapshotVersion } from './fingerprint.ts';
import { createProvider, preflight, recording } from './providers.ts';
import { prepareGitHub } from './pull-requests.ts';
import { Reporter } from './reporter.ts';
import { commandSandbox } from './command-sandbox.ts';
import { gitServiceFor } from './git-service-for.ts';
import type { SessionOptions } from './run-session.ts';
import type { CommandSandbox } from '../services/sandbox/sandbox.ts';
import { formatSummary, summarize, type RunSummary } from './summary.ts';
import { exportCheckpoint } from './checkpoint-export.ts';
import { continuationPlan, continued, factsOf, resumable, stillHolds, stopRecordOf } from './reopen.ts';
import { runStatusOf } from './status.ts';

export interface CliContext {
  env: Env;
  cwd: string;
  stdout: (line: string) => void;
  reporter: Reporter;
  stdinIsTty: boolean;
}

/** What a run stores as its settings: the resolved config (no secrets), the agent definitions, and a retry's plan. */
interface StoredSettings {
  config: RunConfig;
  agents: AgentDefinitions;
  /** Set by `moderator retry`: a resume that finds no snapshot starts the retry again from it. */
  retry?: RetryPlan | undefined;
  /** Started with -y: a run continued from its beginning (reopened after a limit) does not ask to approve the plan again. */
  autoApprove?: boolean | undefined;
}

const demoSession = fileURLToPath(new URL('../demos/todo-cli/session.json', import.meta.url));

function overridesOf(args: CliArgs): ConfigOverrides {
  return {
    provider: args.provider,
    replayFile: args.replay,
    replayDelayMs: args.replayDelayMs,
    maxTokens: args.maxTokens,
    parallel: args.parallel,
    limits: args.limits,
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
    return store.runs.list().length;
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

function withRecording(args: CliArgs, provider: ModelProvider, run: { requirements: string; startTree?: string }, config: Config): ModelProvider {
  if (!args.record) return provider;
  const file = path.resolve(args.record);
  const project = { name: config.project.name, language: config.project.language, ...(config.project.test_command ? { test_command: config.project.test_command } : {}) };
  return recording(provider, file, { requirements: run.requirements, ...(run.startTree ? { startTree: run.startTree } : {}), project });
}

/** The tree of an empty repository (Moderator's initial commit): what the bundled demo was recorded on. */
const EMPTY_TREE = '4b825dc642cb6eb9a060e54bf8d69288fbee4904';

/**
 * A recording replays the project it was made on, file by file: on other requirements or another
 * starting tree it would write that project into the user's repository. Refused up front.
 */
function assertReplayFits(session: Session, file: string, requirements: string, startTree: string): void {
  const label = path.basename(file);
  if (session.requirements.trim() !== requirements.trim()) {
    const recorded = session.requirements.length > 80 ? `${session.requirements.slice(0, 77)}...` : session.requirements;
    throw new UsageError(`the recording ${label} was made for other requirements ("${recorded}"); replaying it would write that project here: give the same requirements, or use a real model provider`);
  }
  const recordedTree = session.start_tree ?? EMPTY_TREE;
  if (recordedTree !== startTree) {
    throw new UsageError(
      session.start_tree
        ? `the recording ${label} was made on another tree (${recordedTree.slice(0, 12)}; this base branch is at ${startTree.slice(0, 12)}); replaying it would overwrite this repository's files with the recorded ones: replay it on the repository it was recorded on`
        : `the recording ${label} was made on an empty repository and this one has files; replaying it would overwrite them: replay it in an empty --target`,
    );
  }
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
  assertProjectCommands(loaded.config);
  void loadSession();
  const backend = await createProvider({ config: loaded.config, secrets: loaded.secrets, env: context.env, target: start.target, worktreeOf: (id) => worktreeDir(start.target, id), onWarning: (line) => context.reporter.line(line) });
  if (!args.yes && !context.stdinIsTty) {
    throw new UsageError('nobody can approve the plan here (stdin is not a terminal): pass -y to run unattended');
  }
  const held = takeTarget(start.target, 'another new run');
  try {
    return await startLocked(context, args, start, loaded, backend);
  } finally {
    held.release();
  }
}

/**
 * A project command that needs a shell (a pipe, `&&`, `$(...)`) cannot run as written: refused
 * before the run starts or resumes, naming the setting, instead of failing after the first commit.
 */
function assertProjectCommands(config: Config): void {
  const commands = [
    ['project.setup_command', config.project.setup_command], ['project.test_command', config.project.test_command], ['project.lint_command', config.project.lint_command],
  ] as const;
  for (const [setting, command] of commands) {
    if (command === undefined) continue;
    try {
      splitCommand(command);
    } catch (error) {
      throw error instanceof CommandLineError ? new UsageError(`${setting}: ${error.describe('the command')}`, { cause: error }) : error;
    }
  }
}

/**
 * Takes the target for this process (see services/target-lock.ts). What the lock had to create
 * (the target folder, its state folder) is removed again if nothing else came to be there, so a
 * refused start leaves the user's folder as it was.
 */
function takeTarget(target: string, what: string): { release(): void } {
  if (fs.existsSync(target) && !fs.statSync(target).isDirectory()) throw new UsageError(`--target ${target} is not a folder: give a folder (a git repository, or a new or empty folder)`);
  const created = [target, stateDir(target)].filter((dir) => !fs.existsSync(dir));
  let lock;
  try {
    lock = lockTarget(stateDir(target), what, isAlive);
  } catch (error) {
    removeIfEmpty(created);
    throw error;
  }
  return {
    release() {
      lock.release();
      removeIfEmpty(created);
    },
  };
}

function removeIfEmpty(dirs: string[]): void {
  for (const dir of [...dirs].reverse()) {
    try {
      fs.rmdirSync(dir);
    } catch {
      // Not empty (the run is there) or already gone: left as it is.
    }
  }
}

async function startLocked(
  context: CliContext,
  args: CliArgs,
  start: { requirements: string; target: string },
  loaded: LoadedConfig,
  backend: ModelProvider,
): Promise<number> {
  const target = start.target;
  const identity = { name: loaded.config.git.author_name, email: loaded.config.git.author_email };
  const env = gitEnv(context.env);
  let config: RunConfig;
  let startTree: string;
  try {
    // The base branch defaults to what the target has checked out (a `master` repository works).
    const checkedOut = loaded.config.git.base_branch ?? (await GitService.currentBranchOf({ root: start.target, identity, baseBranch: 'main', env }));
    if (checkedOut === null && fs.existsSync(path.join(start.target, '.git'))) {
      throw new UsageError(`the work tree of ${start.target} has a detached HEAD: check out the branch Moderator should work on, or set git.base_branch`);
    }
    config = withBaseBranch(loaded.config, checkedOut ?? 'main');
    // A target Moderator cannot safely work on is the user's input to fix, not a failed run.
    const git = gitServiceFor(start.target, config, context.env);
    await git.prepareTarget();
    await git.assertClean();
    startTree = await git.treeHash(config.git.base_branch);
  } catch (error) {
    throw error instanceof ModeratorError && error.code === 'git' ? new UsageError(error.message, { cause: error }) : error;
  }
  if (config.model.provider === 'replay' && config.model.replay_file) {
    assertReplayFits(readSessionOrRefuse(config.model.replay_file), config.model.replay_file, start.requirements, startTree);
  }
  await prepareGitHub({ config, secrets: loaded.secrets, target: start.target, env: context.env, report: (line) => context.reporter.line(line) });

  const sandbox = await commandSandbox(config, context.env);
  await preflight(backend, config, context.env);
  const provider = withRecording(args, backend, { requirements: start.requirements, startTree }, config);
  const store = Store.open(databasePath(start.target));
  let created: string | undefined;
  try {
    const runId = newRunId();
    // The intervention token is a credential: not stored with the run (a resumed run prints a new one).
    const settings: StoredSettings = { config: { ...config, monitor: { ...config.monitor, token: undefined } }, agents: loaded.agents, autoApprove: args.yes };
    try {
      store.runs.createExclusive({ id: runId, target: start.target, requirements: start.requirements, settings, snapshotVersion, machineFingerprint: machineFingerprint() }, isAlive);
    } catch (error) {
      throw error instanceof StoreError ? new UsageError(error.message, { cause: error }) : error;
    }
    created = runId;
    context.reporter.line(`run ${runId} on ${start.target} (base branch ${config.git.base_branch})`);
    context.reporter.line(`models: ${provider.description}`);
    return await drive(context, args, {
      store, runId, target: start.target, requirements: start.requirements, config, agents: loaded.agents, env: context.env, provider, sandbox, autoApprove: args.yes, reporter: context.reporter,
      gitToken: loaded.secrets.gitToken,
    });
  } catch (error) {
    throw afterError(store, target, error, created);
  } finally {
    store.close();
  }
}

let sessionModule: Promise<typeof import('./run-session.ts')> | undefined;

/**
 * The actor system, the monitoring server and their dependencies: loaded only for a run, and
 * started as soon as the settings say one will run, so that parsing them fills the time spent
 * waiting for git's crash recovery, the sandbox probe and the endpoint check.
 */
function loadSession(): Promise<typeof import('./run-session.ts')> {
  if (sessionModule === undefined) {
    sessionModule = import('./run-session.ts');
    // Awaited by drive, which reports a failure; a run refused before that must not end with an unhandled rejection.
    sessionModule.catch(() => {});
  }
  return sessionModule;
}

/** Runs this process's session of a run, records how it ended, prints the summary. */
async function drive(context: CliContext, args: CliArgs, session: Omit<SessionOptions, 'inspectUrl' | 'portFallback' | 'keepServing'>): Promise<number> {
  const { store, runId } = session;
  for (const warning of agentDefinitionWarnings(session.config, session.agents)) context.reporter.line(`warning: ${warning}`);
  const { runSession } = await loadSession();
  const result = await runSession({ ...session, inspectUrl: inspectUrlOf(args), portFallback: args.command === 'demo', keepServing: args.keepServing });
  if (result.kind === 'finished') store.runs.finish(runId, result.output.outcome, result.output.reason);
  store.runs.release(runId, result.kind === 'finished' ? 'finished' : 'interrupted');
  // The export was last written at the final phase change, before the outcome was recorded.
  exportCheckpoint(session.target, runId, store);
  store.checkpointWal();
  return finish(context, args, store, runId, result.kind === 'interrupted');
}

/**
 * Leaves any run this process holds resumable after an error, and says what to do when the disk
 * filled up. Marking the run may itself fail on a full disk: a run whose process is gone counts as
 * interrupted anyway, so that is no reason to hide the first error. `runId` is the run the command
 * works on, when it exists: the disk may fill up after the run let go of it (its last checkpoint).
 */
function afterError(store: Store, target: string, error: unknown, runId?: string): unknown {
  const held = (() => {
    try {
      return store.runs.list().filter((run) => run.pid === process.pid);
    } catch {
      return [];
    }
  })();
  for (const run of held) {
    try {
      store.runs.release(run.id, 'interrupted');
    } catch {
      // See above: the run is resumable either way.
    }
  }
  if (!isStorageFull(error)) return error;
  const resumableRun = runId ?? held[0]?.id;
  return new StorageFullError(
    `the disk holding ${target} is full (${messageOf(error)}): free some space, then ${resumableRun ? `continue with  moderator --resume ${resumableRun} --target ${target}` : 'start again'}`,
    { cause: error },
  );
}

function openRuns(context: CliContext, args: CliArgs): { store: Store; target: string } {
  const target = resolveTarget(args.target, context.env, context.cwd);
  const file = databasePath(target);
  const store = Store.openIfExists(file);
  if (!store) throw new UsageError(`no Moderator runs in ${target} (${file} does not exist); pass the run's --target`);
  return { store, target };
}

function knownRun(store: Store, target: string, runId: string): RunRecord {
  const run = store.runs.get(runId);
  if (run) return run;
  const known = store.runs.list().map((candidate) => candidate.id);
  throw new UsageError(`unknown run ${runId} in ${target}${known.length ? `; runs there: ${known.slice(-5).join(', ')}` : ''}${lostWrites(target, runId)}`);
}

/**
 * Why a run the target once held may be missing from its database, said only when the target
 * shows it was there: its checkpoint export (written at its phase changes) exists. A database
 * without the run lost its latest writes: with an empty WAL (SQLite made a new one, as for this
 * very read) they were in a moderator.db-wal that is gone; otherwise moderator.db itself was
 * replaced by an older copy.
 */
function lostWrites(target: string, runId: string): string {
  if (!/^[\w-][\w.-]*$/.test(runId)) return '';
  const exported = path.join(stateDir(target), 'checkpoints', `${runId}.json`);
  if (!fs.existsSync(exported)) return '';
  const walEmpty = (fs.statSync(`${databasePath(target)}-wal`, { throwIfNoEntry: false })?.size ?? 0) === 0;
  const how = walEmpty ? 'the latest writes were lost with moderator.db-wal (deleted after a crash?)' : 'moderator.db was replaced by an older copy';
  return `; yet ${path.relative(target, exported)} shows the run was here: ${how}, and the run cannot be resumed: start a new run`;
}

function assertCompatible(run: RunRecord, verb: string): void {
  if (run.corrupted !== null) throw new UsageError(`run ${run.id} is corrupted in the database: ${run.corrupted}; it cannot be ${verb}, start a new run`);
  if (run.snapshotVersion !== snapshotVersion || run.machineFingerprint !== machineFingerprint()) {
    throw new UsageError(
      `run ${run.id} was written by an incompatible version of Moderator (snapshot v${run.snapshotVersion}, charts ${run.machineFingerprint}; this one: v${snapshotVersion}, ${machineFingerprint()}); it cannot be ${verb}, start a new run`,
    );
  }
}

type StoredSnapshot = Snapshot<unknown> & { status: string; output?: { outcome: string; reason: string | null }; context?: { tasks?: unknown; improvementCycle?: unknown; stop?: unknown; techleads?: unknown[] } };

/**
 * Takes the stored run for this process and drives it: the settings it started with (flags
 * override them), crash recovery of the repository, then the actor tree from `snapshot`, or
 * fresh (a retry, or a run killed before its first checkpoint).
 */
async function continueRun(context: CliContext, args: CliArgs, store: Store, target: string, run: RunRecord, snapshot: StoredSnapshot | undefined, announce: string): Promise<number> {
  const stored = run.settings as Partial<StoredSettings>;
  const resolved = configForResume(stored.config, overridesOf(args), context.env, context.cwd);
  if (!isRunConfig(resolved.config)) throw new UsageError(`run ${run.id}'s stored settings have no base branch; they were not written by this version: start a new run`);
  const config = resolved.config;
  assertProjectCommands(config);
  const agents = agentsFileSchema.parse({ agents: stored.agents ?? {} }).agents;
  void loadSession();
  const backend = await createProvider({ config, secrets: resolved.secrets, env: context.env, target, worktreeOf: (id) => worktreeDir(target, id), onWarning: (line) => context.reporter.line(line) });
  const sandbox = await commandSandbox(config, context.env);
  await preflight(backend, config, context.env);
  const provider = withRecording(args, backend, { requirements: run.requirements }, config);
  const held = takeTarget(target, `run ${run.id}`);
  try {
    return await continueLocked(context, args, store, target, run, snapshot, announce, { config, secrets: resolved.secrets, agents, provider, sandbox, retry: stored.retry, autoApprove: stored.autoApprove });
  } finally {
    held.release();
  }
}

async function continueLocked(
  context: CliContext,
  args: CliArgs,
  store: Store,
  target: string,
  run: RunRecord,
  snapshot: StoredSnapshot | undefined,
  announce: string,
  settings: { config: RunConfig; secrets: Secrets; agents: AgentDefinitions; provider: ModelProvider; sandbox: CommandSandbox; retry: RetryPlan | undefined; autoApprove: boolean | undefined },
): Promise<number> {
  const { config, secrets, agents, provider, sandbox, retry } = settings;
  // A fresh tree that starts at the beginning (a run reopened before its plan was approved) asks again unless it was started with -y.
  const autoApprove = snapshot !== undefined || retry !== undefined || args.yes || settings.autoApprove !== false;
  if (!autoApprove && !context.stdinIsTty) throw new UsageError(`run ${run.id} continues from its plan, which waits for approval, and stdin is not a terminal: pass -y`);
  try {
    store.runs.claim(run.id, isAlive);
  } catch (error) {
    throw new UsageError((error as Error).message, { cause: error });
  }
  // The intervention token may come from DUO_AGENT_MONITOR_TOKEN again: still not stored.
  store.runs.updateSettings(run.id, {
    config: { ...config, monitor: { ...config.monitor, token: undefined } }, agents, ...(retry ? { retry } : {}), ...(settings.autoApprove !== undefined ? { autoApprove: settings.autoApprove } : {}),
  } satisfies StoredSettings);
  const git = gitServiceFor(target, config, context.env);
  for (const fixed of await git.recoverAfterCrash()) context.reporter.line(`recovered: ${fixed}`);
  await prepareGitHub({ config, secrets, target, env: context.env, report: (line) => context.reporter.line(line) });
  context.reporter.line(`${announce} (phase ${run.phase}, session ${run.sessions + 1})`);
  context.reporter.line(`models: ${provider.description}`);
  context.reporter.setTokens(store.calls.totals(run.id).tokensUsed);
  return drive(context, args, {
    store, runId: run.id, target, requirements: run.requirements, config, agents, env: context.env, provider, sandbox, autoApprove, reporter: context.reporter,
    gitToken: secrets.gitToken,
    attended: !args.yes && context.stdinIsTty,
    ...(snapshot ? { snapshot } : {}),
    ...(retry ? { retry } : {}),
  });
}

function loadStoredSnapshot(store: Store, runId: string, verb: 'resumed' | 'retried'): StoredSnapshot | undefined {
  const saved = store.checkpoints.load(runId);
  if (!saved) return undefined;
  try {
    return JSON.parse(saved.json) as StoredSnapshot;
  } catch (error) {
    throw new UsageError(`run ${runId} is corrupted in the database: its stored checkpoint is not JSON (${(error as Error).message}); it cannot be ${verb}, start a new run`, { cause: error });
  }
}

/** Continues a run from its last checkpoint, with the settings it started with unless flags override them. */
export async function resumeRun(context: CliContext, args: CliArgs, runId: string): Promise<number> {
  const { store, target } = openRuns(context, args);
  try {
    const run = knownRun(store, target, runId);
    assertCompatible(run, 'resumed');
    const snapshot = loadStoredSnapshot(store, runId, 'resumed');
    if (run.status === 'finished' || snapshot?.status === 'done') {
      // Killed between the last checkpoint and recording the outcome: record it now.
      if (run.status !== 'finished' && snapshot?.output) store.runs.finish(runId, snapshot.output.outcome, snapshot.output.reason);
      const reopened = reopenAfterLimit(context, args, store, store.runs.get(runId) as RunRecord, snapshot);
      if (reopened) return await continueRun(context, args, store, target, store.runs.get(runId) as RunRecord, undefined, `continuing run ${runId}`);
      return finish(context, args, store, runId, false);
    }
    const parallelFlag = args.parallel !== undefined ? '--parallel' : args.limits?.some((limit) => /^\s*max_parallel_tasks\s*=/.test(limit)) ? '--limit max_parallel_tasks' : undefined;
    if (snapshot && parallelFlag !== undefined) {
      // The TechLeads are actors in the checkpointed tree, each with its task and step: their number is the run's.
      const running = snapshot.context?.techleads?.length;
      throw new UsageError(`${parallelFlag}: a resumed run keeps the ${running ?? 'number of'} TechLeads it started with (they are part of its checkpoint); resume without it, or give it to \`moderator retry\` once the run has ended`);
    }
    return await continueRun(context, args, store, target, run, snapshot, `resuming run ${runId}`);
  } catch (error) {
    throw afterError(store, target, error, runId);
  } finally {
    store.close();
  }
}

/**
 * A finished run that a limit stopped (its final checkpoint names the condition) is opened again
 * when that limit was relaxed for this resume; else the line says what to change. Returns whether
 * it was opened (the caller then continues it from the stored plan).
 */
function reopenAfterLimit(context: CliContext, args: CliArgs, store: Store, run: RunRecord, snapshot: StoredSnapshot | undefined): boolean {
  const stop = stopRecordOf(snapshot?.context);
  const retryHint = run.outcome === 'done' ? '' : ` (\`moderator retry ${run.id}\` re-queues its failed, rejected, skipped and held tasks)`;
  if (stop === null || !resumable(stop.condition)) {
    context.reporter.line(`run ${run.id} has already finished; nothing to resume${retryHint}`);
    return false;
  }
  const stored = run.settings as Partial<StoredSettings>;
  const before = configForResume(stored.config, undefined, context.env, context.cwd).config;
  const config = configForResume(stored.config, overridesOf(args), context.env, context.cwd).config;
  const holds = stillHolds(stop, before, config, factsOf(store, run.id, config));
  if (holds !== null) {
    context.reporter.line(`run ${run.id} was stopped by ${stop.condition.replace('_', ' ')} (${run.reason ?? 'no reason'}); to continue it: ${holds}, then --resume${retryHint}`);
    return false;
  }
  const tasks = taskRefsSchema.safeParse(snapshot?.context?.tasks);
  const cycle = typeof snapshot?.context?.improvementCycle === 'number' ? snapshot.context.improvementCycle : 0;
  const plan = continuationPlan(stop, tasks.success ? tasks.data : [], cycle);
  const { retry: _previous, ...rest } = stored;
  const note = `--resume after ${stop.condition.replace('_', ' ')}: ${plan ? `continues in ${stop.phase}` : 'starts again from its scope (the journal replays what was done)'}`;
  store.runs.reopenAfterStop(run.id, { ...rest, ...(plan ? { retry: plan } : {}) }, plan ? 'implementing' : 'starting', {
    id: randomUUID(), from: 'human', to: 'orchestrator', type: 'run.reopened', payload: { condition: stop.condition, phase: stop.phase }, correlationId: null, at: new Date().toISOString(),
  }, note);
  context.reporter.line(`run ${run.id} was stopped by ${stop.condition.replace('_', ' ')}; the limit is relaxed: ${note}`);
  return true;
}

/** Outcomes a retry can continue from: the work stopped short, not by a person's choice. */
const RETRYABLE_OUTCOMES = new Set(['failed', 'needs_human', 'stuck', 'budget_exhausted']);
/** Task states a retry re-queues. */
const RETRYABLE_TASKS = new Set<TaskRef['status']>(['failed', 'rejected', 'skipped', 'held']);

/**
 * Re-queues a finished run's failed, rejected, skipped and held tasks (or only `--task` ones),
 * with their history: each starts a fresh allowance of review rounds at its next attempt, a task
 * with a PR revises it (reopened if it was closed), a held one is reviewed again.
 */
export function retryPlan(tasks: readonly TaskRef[], improvementCycle: number, started: (taskId: string) => boolean, only: readonly string[]): { plan: RetryPlan; requeued: TaskRef[] } {
  for (const id of only) {
    const task = tasks.find((candidate) => candidate.id === id);
    if (!task) throw new UsageError(`--task ${id}: the run has no such task (tasks: ${tasks.map((candidate) => candidate.id).join(', ')})`);
    if (!RETRYABLE_TASKS.has(task.status)) throw new UsageError(`--task ${id}: the task is ${task.status}; only failed, rejected, skipped or held tasks are retried`);
  }
  const chosen = (task: TaskRef) => RETRYABLE_TASKS.has(task.status) && (only.length === 0 || only.includes(task.id));
  const requeued: TaskRef[] = [];
  const next = tasks.map((task): TaskRef => {
    // A task a limit caught in flight goes on from the round it was in.
    if (!chosen(task)) return continued(task);
    const attempt = started(task.id) ? task.attempt + 1 : task.attempt;
    const stage = task.status === 'held' && task.prNumber !== null ? 'review' : task.prNumber !== null ? 'revise' : 'implement';
    // A fresh allowance of review rounds and of merge-queue rounds; the branch stays the one it had.
    const again: TaskRef = { ...task, status: 'pending', attempt, roundStart: attempt, stage, conflictRounds: 0 };
    requeued.push(again);
    return again;
  });
  return { plan: { tasks: next, improvementCycle }, requeued };
}

const taskRefsSchema = z.array(
  z.object({
    id: z.string(), type: z.string(), origin: z.enum(['plan', 'improvement']),
    status: z.enum(TASK_STATUSES),
    attempt: z.int(), roundStart: z.int(), stage: z.enum(['implement', 'revise', 'review']), prNumber: z.int().nullable(), dependsOn: z.array(z.string()),
    conflictRounds: z.int().default(0), generation: z.int().default(1),
  }),
);

/** `moderator retry <runId> [--task T]`: continues a failed or needs_human run with its unfinished tasks. */
export async function retryRun(context: CliContext, args: CliArgs, runId: string): Promise<number> {
  const { store, target } = openRuns(context, args);
  try {
    const run = knownRun(store, target, runId);
    assertCompatible(run, 'retried');
    if (run.status !== 'finished') {
      throw new UsageError(`run ${runId} has not finished${run.status === 'interrupted' ? ': continue it with --resume' : ' (it is running)'}; retry continues finished runs`);
    }
    if (!RETRYABLE_OUTCOMES.has(run.outcome ?? '')) {
      throw new UsageError(`run ${runId} ended ${run.outcome ?? 'without an outcome'}; retry continues runs that ended failed, needs_human, stuck or budget_exhausted`);
    }
    const snapshot = loadStoredSnapshot(store, runId, 'retried');
    const tasks = taskRefsSchema.safeParse(snapshot?.context?.tasks);
    if (!tasks.success) throw new UsageError(`run ${runId} has no readable task list in its last checkpoint; it cannot be retried`);
    const improvementCycle = typeof snapshot?.context?.improvementCycle === 'number' ? snapshot.context.improvementCycle : 0;
    const { plan, requeued } = retryPlan(tasks.data, improvementCycle, (id) => store.tasks.get(runId, id)?.branch != null, args.tasks ?? []);
    if (requeued.length === 0) throw new UsageError(`run ${runId} has no failed, rejected, skipped or held task to retry`);
    const stored = run.settings as StoredSettings;
    store.runs.reopenForRetry(runId, { ...stored, retry: plan } satisfies StoredSettings, requeued.map((task) => task.id), {
      id: randomUUID(), from: 'human', to: 'orchestrator', type: 'run.retry', payload: { tasks: requeued.map((task) => ({ id: task.id, attempt: task.attempt, stage: task.stage })) }, correlationId: null, at: new Date().toISOString(),
    });
    context.reporter.line(`retry of run ${runId}: ${requeued.map((task) => `${task.id} (${task.stage}, attempt ${task.attempt})`).join(', ')}`);
    return await continueRun(context, args, store, target, store.runs.get(runId) as RunRecord, undefined, `retrying run ${runId}`);
  } catch (error) {
    throw afterError(store, target, error, runId);
  } finally {
    store.close();
  }
}

/** The bundled offline scenario in a fresh temp repository (or --target), replayed. */
export async function runDemo(context: CliContext, args: CliArgs): Promise<number> {
  const sessionFile = args.replay ? path.resolve(context.cwd, args.replay) : demoSession;
  const session = readSessionOrRefuse(sessionFile);
  const target = args.target ? resolveTarget(args.target, context.env, context.cwd) : fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-demo-'));
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
    const runs = store.runs.list();
    // A corrupted row is listed like the others, and said once on stderr.
    for (const run of runs) if (run.corrupted !== null) context.reporter.line(`warning: run ${run.id} is corrupted in the database: ${run.corrupted}; it cannot be resumed or retried`);
    if (args.json) {
      for (const run of runs) context.stdout(JSON.stringify({ ...summarize(store, run.id), startedAt: run.startedAt, status: runStatusOf(run, isAlive), ...(run.corrupted !== null ? { corrupted: run.corrupted } : {}) }));
      return 0;
    }
    if (runs.length === 0) context.stdout(`no runs in ${target}`);
    else context.stdout(['RUN ID                  STARTED                   STATUS       PHASE            OUTCOME', ...runs.map((run) =>
      `${run.id.padEnd(23)} ${run.startedAt.padEnd(25)} ${(run.corrupted !== null ? 'corrupted' : runStatusOf(run, isAlive)).padEnd(12)} ${run.phase.padEnd(16)} ${run.outcome ?? '-'}`)].join('\n'));
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
