/**
 * Shared helpers for the end-to-end tests: run the real CLI as a child process (optionally killing
 * it with SIGKILL, or signalling it, at a chosen moment), read the target's git repository and database, and take a
 * comparable fingerprint of a finished run.
 */
import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { RunSummary } from '../../cli/summary.ts';
import { assertBuilt } from './build.ts';
import { commitFiles } from './repository.ts';

export const root = path.resolve(import.meta.dirname, '..', '..');
/** Runs dist/main.js: every file importing these helpers spawns it, so a stale build stops them here. */
export const bin = path.join(root, 'bin', 'moderator.js');
assertBuilt();
export const demoSessionFile = path.join(root, 'demos', 'todo-cli', 'session.json');

/**
 * The monitoring server listens on 8080 by default: runs that may overlap (ava runs test files in
 * parallel, the torture runs go two at a time) each take a free port instead.
 */
export const FREE_PORT = ['--port', '0'] as const;

/**
 * The environment of a user who configured nothing: no provider, no keys, no SDK settings, no
 * test-runner leakage; then `extra` on top.
 */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const key of Object.keys(env)) {
    if (
      key.startsWith('DUO_AGENT_') || key.startsWith('ANTHROPIC_') || key.startsWith('OPENAI_') || key.endsWith('_API_KEY') ||
      key === 'NODE_OPTIONS' || key === 'NODE_TEST_CONTEXT'
    ) {
      delete env[key];
    }
  }
  return { ...env, ...extra };
}

const madeFolders: string[] = [];

/** A target folder that does not exist yet, inside a fresh temp folder. */
export function newTarget(name: string): string {
  const folder = fs.mkdtempSync(path.join(os.tmpdir(), `moderator-${name}-`));
  madeFolders.push(folder);
  return path.join(folder, 'todo');
}

/**
 * A target repository on `main` whose first commit holds `files`, with an untracked
 * `duo-agent.config.yaml` holding `config` (written as JSON, which YAML reads), as a user's own
 * repository with its settings beside it.
 */
export function repositoryWith(name: string, files: Record<string, string>, config: Record<string, unknown>): string {
  const target = newTarget(name);
  commitFiles(target, files, 'init');
  fs.writeFileSync(path.join(target, 'duo-agent.config.yaml'), `${JSON.stringify(config, null, 2)}\n`);
  return target;
}

/** Deletes the temp folders of `newTarget` (call from `test.after`: only when every test passed, so failures keep theirs). */
export function removeTargets(): void {
  for (const folder of madeFolders.splice(0)) {
    try {
      fs.rmSync(folder, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // An orphaned `node --test` of a killed run may still be writing there; leave it.
    }
  }
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs the CLI to completion, synchronously (for the short commands: runs, resume of a finished run). */
export function cliSync(args: string[], options: { timeoutMs?: number; env?: Record<string, string> } = {}): CliResult {
  const started = Date.now();
  const result = spawnSync(process.execPath, [bin, ...args], { cwd: root, env: cleanEnv(options.env), encoding: 'utf8', timeout: options.timeoutMs ?? 60_000 });
  return { code: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr, ms: Date.now() - started };
}

/** When to kill a running CLI with SIGKILL (or send it another signal). */
export interface KillPoint {
  /** A name for the log. */
  label: string;
  /** Kill after the `nth` (1-based, default 1) stderr line matching this. */
  line?: RegExp;
  nth?: number;
  /** Or when this predicate, polled every 2 ms, first holds. */
  poll?: () => boolean;
  /** Or this long after the process was spawned. */
  afterMs?: number;
  /** Extra wait between the trigger and the kill. */
  delayMs?: number;
  /**
   * Kill the whole process group (the CLI and the git and test processes it spawned), like a
   * power cut, instead of only the CLI process like `kill -9 <pid>`.
   */
  group?: boolean;
  /** Called when the process has ended, e.g. to close what `poll` opened. */
  dispose?: () => void;
  /**
   * The signal to send (default SIGKILL): SIGTERM as `kill <pid>` or `docker stop` would, SIGINT
   * with `group` as Ctrl-C at a terminal does (to the foreground process group).
   */
  signal?: NodeJS.Signals;
}

export interface KilledResult extends CliResult {
  /** True when the kill point was reached and its signal sent (the process may have ended by itself otherwise). */
  killed: boolean;
  /** The stderr line that triggered the kill, if any. */
  trigger: string | null;
  /** The last stderr line seen before the signal was sent (or before the process ended). */
  lastLine: string | null;
}

/**
 * Runs the CLI asynchronously; with `kill`, sends SIGKILL (or `kill.signal`) at that moment to the
 * CLI process (only that process, like `kill -9 <pid>`: children it spawned are orphaned, as in a
 * real crash), or with `group` to its whole process group. The first of `line`, `poll` and `afterMs` to hold fires.
 */
export function cliAsync(args: string[], options: { kill?: KillPoint; timeoutMs?: number; env?: Record<string, string> } = {}): Promise<KilledResult> {
  const started = Date.now();
  const kill = options.kill;
  // Its own process group when the group is to be killed (the CLI is the group leader).
  const child = spawn(process.execPath, [bin, ...args], { cwd: root, env: cleanEnv(options.env), stdio: ['ignore', 'pipe', 'pipe'], detached: kill?.group === true });
  let stdout = '';
  let stderr = '';
  let partial = '';
  let matches = 0;
  let killed = false;
  let trigger: string | null = null;
  let lastLine: string | null = null;
  let exited = false;
  const timers: NodeJS.Timeout[] = [];

  const fire = (line: string | null) => {
    if (trigger !== null || killed || exited) return;
    trigger = line ?? '(no line)';
    const doKill = () => {
      if (exited || killed) return;
      killed = true;
      try {
        const signal = kill?.signal ?? 'SIGKILL';
        if (kill?.group && child.pid !== undefined) process.kill(-child.pid, signal);
        else child.kill(signal);
      } catch {
        // It ended by itself a moment ago (ESRCH); 'close' tells how.
      }
    };
    if (kill?.delayMs) timers.push(setTimeout(doKill, kill.delayMs));
    else doKill();
  };

  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
    partial += chunk;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!killed) lastLine = line;
      if (kill?.line && kill.line.test(line)) {
        matches += 1;
        if (matches === (kill.nth ?? 1)) fire(line);
      }
    }
  });
  if (kill?.afterMs !== undefined) timers.push(setTimeout(() => fire(null), kill.afterMs));
  if (kill?.poll) {
    const poller = setInterval(() => {
      let hit = false;
      try {
        hit = kill.poll?.() ?? false;
      } catch {
        hit = false;
      }
      if (hit) {
        clearInterval(poller);
        fire('(poll)');
      }
    }, 2);
    timers.push(poller);
  }
  const timeout = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 180_000);
  timers.push(timeout);

  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      exited = true;
      kill?.dispose?.();
      for (const timer of timers) {
        clearTimeout(timer);
        clearInterval(timer);
      }
      if (partial !== '' && !killed) lastLine = partial;
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started, killed, trigger, lastLine });
    });
  });
}

/** git in `cwd`, stdout trimmed. */
export function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd, encoding: 'utf8', env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

/**
 * git in `cwd` without blocking the event loop: the torture runs watch several live processes'
 * stderr at once, and a synchronous spawn would delay every kill point.
 */
export function gitAsync(cwd: string, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('git', args, { cwd, encoding: 'utf8', env: cleanEnv(), maxBuffer: 64 * 1024 * 1024 }, (error, stdout) => {
      if (error) reject(error);
      else resolve(stdout.trim());
    });
  });
}

export function dbPath(target: string): string {
  return path.join(target, '.duo-agent', 'moderator.db');
}

/** Runs `work` on the target's database opened read-only, then closes it. */
export function withDb<T>(target: string, work: (db: Database.Database) => T): T {
  const db = new Database(dbPath(target), { readonly: true, fileMustExist: true });
  try {
    return work(db);
  } finally {
    db.close();
  }
}

/**
 * A poll predicate that holds once `sql` (run with `params`) returns a row in the target's
 * database; one read-only connection, opened when the file appears, closed by `dispose`.
 */
export function dbPoll(target: string, sql: string, ...params: unknown[]): { poll: () => boolean; dispose: () => void } {
  let db: Database.Database | undefined;
  return {
    poll: () => {
      if (!db) {
        if (!fs.existsSync(dbPath(target))) return false;
        db = new Database(dbPath(target), { readonly: true, fileMustExist: true });
      }
      try {
        return db.prepare(sql).get(...params) !== undefined;
      } catch {
        // The schema may not be there yet.
        return false;
      }
    },
    dispose: () => db?.close(),
  };
}

/** The `--json` summary line, plus what `runs --json` adds. */
export type RunSummaryJson = RunSummary & { startedAt?: string; status?: string };

/** The summary on stdout of a `--json` command (the last non-empty line). */
export function parseSummary(stdout: string): RunSummaryJson {
  const lines = stdout.split('\n').filter((line) => line.trim() !== '');
  if (lines.length !== 1) throw new Error(`expected one JSON line on stdout, got ${lines.length}: ${stdout}`);
  return JSON.parse(lines[0] as string) as RunSummaryJson;
}

function parseRuns(result: CliResult): RunSummaryJson[] {
  if (result.code !== 0) throw new Error(`runs --json exited ${result.code}: ${result.stderr}`);
  return result.stdout.split('\n').filter((line) => line.trim() !== '').map((line) => JSON.parse(line) as RunSummaryJson);
}

/** The runs of a target, from `runs --json`. */
export function listRuns(target: string): RunSummaryJson[] {
  return parseRuns(cliSync(['runs', '--target', target, '--json']));
}

/** The same, without blocking the event loop. */
export async function listRunsAsync(target: string): Promise<RunSummaryJson[]> {
  return parseRuns(await cliAsync(['runs', '--target', target, '--json'], { timeoutMs: 60_000 }));
}

interface RecordedCall {
  purpose: string;
  task?: string;
  reply: { text: string };
  usage: { input_tokens: number; output_tokens: number; cache_read_input_tokens?: number; cache_creation_input_tokens?: number };
}

export interface DemoSession {
  requirements: string;
  calls: Record<string, RecordedCall[]>;
}

export function readDemoSession(): DemoSession {
  return JSON.parse(fs.readFileSync(demoSessionFile, 'utf8')) as DemoSession;
}

/** Every token the recording's replies report, as the gateway counts them. */
export function sessionTokens(session: DemoSession = readDemoSession()): number {
  let total = 0;
  for (const calls of Object.values(session.calls)) {
    for (const call of calls) {
      total += call.usage.input_tokens + call.usage.output_tokens + (call.usage.cache_read_input_tokens ?? 0) + (call.usage.cache_creation_input_tokens ?? 0);
    }
  }
  return total;
}

export function sessionCallCount(session: DemoSession = readDemoSession()): number {
  return Object.values(session.calls).reduce((sum, calls) => sum + calls.length, 0);
}

/** What a finished run left behind, in a form two runs of the same scenario can be compared by. */
export interface RunFingerprint {
  mainTree: string;
  mergeSubjects: string[];
  mergeParents: number[];
  commitsOnMain: number;
  firstParentCommits: number;
  commitsOnAllBranches: number;
  branches: string[];
  worktrees: number;
  /** How often each `Moderator-Step:` trailer occurs over all branches (each must be exactly once). */
  stepTrailers: Record<string, number>;
  statusPorcelain: string;
  prs: { taskId: string; status: string; revision: number }[];
  tasks: { id: string; status: string; attempts: number }[];
  reviews: { taskId: string; attempt: number; verdict: string }[];
  testRuns: { taskId: string; attempt: number; passed: number }[];
  okCallKeys: string[];
  okCalls: number;
  callRows: number;
  maxOkPerKey: number;
  effects: { stepKey: string; status: string }[];
  /** The message journal as `from>to:type`, in order. */
  journal: string[];
}

export async function fingerprint(target: string, runId: string): Promise<RunFingerprint> {
  const git = (...args: string[]) => gitAsync(target, ...args);
  const mergeLines = (await git('log', '--merges', '--format=%P%x09%s', 'main')).split('\n').filter((line) => line !== '');
  const trailers: Record<string, number> = {};
  for (const line of (await git('log', '--branches', '--format=%(trailers:key=Moderator-Step,valueonly)')).split('\n')) {
    if (line.trim() !== '') trailers[line.trim()] = (trailers[line.trim()] ?? 0) + 1;
  }
  const worktrees = (await git('worktree', 'list', '--porcelain')).split('\n').filter((line) => line.startsWith('worktree ')).length;
  const fromDb = withDb(target, (db) => {
    const all = <T>(sql: string): T[] => db.prepare(sql).all(runId) as T[];
    const okCallKeys = all<{ call_key: string }>(`SELECT call_key FROM model_calls WHERE run_id = ? AND status = 'ok' ORDER BY call_key`).map((row) => row.call_key);
    const perKey = all<{ n: number }>(`SELECT COUNT(*) AS n FROM model_calls WHERE run_id = ? AND status = 'ok' GROUP BY call_key`);
    return {
      prs: all<{ task_id: string; status: string; revision: number }>('SELECT task_id, status, revision FROM pull_requests WHERE run_id = ? ORDER BY number')
        .map((row) => ({ taskId: row.task_id, status: row.status, revision: row.revision })),
      tasks: all<{ id: string; status: string; attempts: number }>('SELECT id, status, attempts FROM tasks WHERE run_id = ? ORDER BY id'),
      reviews: all<{ task_id: string; attempt: number; verdict: string }>('SELECT task_id, attempt, verdict FROM reviews WHERE run_id = ? ORDER BY task_id, attempt')
        .map((row) => ({ taskId: row.task_id, attempt: row.attempt, verdict: row.verdict })),
      testRuns: all<{ task_id: string; attempt: number; passed: number }>('SELECT task_id, attempt, passed FROM test_runs WHERE run_id = ? ORDER BY task_id, attempt')
        .map((row) => ({ taskId: row.task_id, attempt: row.attempt, passed: row.passed })),
      okCallKeys,
      okCalls: okCallKeys.length,
      callRows: all<{ n: number }>('SELECT COUNT(*) AS n FROM model_calls WHERE run_id = ?')[0]?.n ?? 0,
      maxOkPerKey: Math.max(0, ...perKey.map((row) => row.n)),
      effects: all<{ step_key: string; status: string }>('SELECT step_key, status FROM effects WHERE run_id = ? ORDER BY step_key')
        .map((row) => ({ stepKey: row.step_key, status: row.status })),
      journal: all<{ from_actor: string; to_actor: string; type: string }>('SELECT from_actor, to_actor, type FROM messages WHERE run_id = ? ORDER BY seq')
        .map((row) => `${row.from_actor}>${row.to_actor}:${row.type}`),
    };
  });
  return {
    mainTree: await git('rev-parse', 'main^{tree}'),
    mergeSubjects: mergeLines.map((line) => line.split('\t')[1] ?? ''),
    mergeParents: mergeLines.map((line) => (line.split('\t')[0] ?? '').split(' ').length),
    commitsOnMain: Number(await git('rev-list', '--count', 'main')),
    firstParentCommits: Number(await git('rev-list', '--count', '--first-parent', 'main')),
    commitsOnAllBranches: Number(await git('rev-list', '--count', '--branches')),
    branches: (await git('for-each-ref', '--format=%(refname:short)', 'refs/heads/')).split('\n').filter((line) => line !== '').sort(),
    worktrees,
    stepTrailers: trailers,
    statusPorcelain: await git('status', '--porcelain'),
    ...fromDb,
  };
}
