/**
 * Benchmark of the whole demo (zero replay delay) against the plain git work it amounts to.
 * Prints ONE JSON line. Run with `node --import tsx bench/demo.bench.ts`.
 *
 * - wallMs: the demo run in this process (the same composition the CLI uses: `runDemo`), from
 *   start to summary; it does not include the CLI's process and tsx start-up.
 * - checkpoint figures: from the run's own `Checkpointer.stats`. The composition root does not
 *   expose its checkpointer, so its `attach` is wrapped here to keep the instance and to add a
 *   second inspection observer on the actor system that counts transitions. They are
 *   cross-checked against the database (snapshots.writes, length(snapshot_json)), and the pure
 *   store write is timed again by replaying `store.checkpoints.save` with the final snapshot on a temp store.
 * - plainGitMs: the same mutating git operations by a plain script with `execFileSync('git')`,
 *   without tests, model calls or bookkeeping: init, initial commit, and for each task worktree
 *   add -b, write the files of the recorded techlead replies, add -A, commit (twice for T2),
 *   merge --no-ff into main, worktree remove. The median of 3 runs (plainGitRunsMs).
 * - testMs: time the generated program's own tests took (test_runs.duration_ms), so the
 *   orchestration overhead reads honestly: overheadMs = wallMs - testMs, and
 *   overheadRatio = overheadMs / plainGitMs against its goal (<= 1.3).
 * - git calls: every git process the run started, counted by wrapping GitRunner (bench/git-calls.ts:
 *   the one runner all of Moderator's git calls go through), against the plain script's
 *   own count, per task: gitCallsRatio = gitCallsPerTask / plainGitCallsPerTask (goal <= 2).
 *   gitCallsByCommand says where they go, gitMs how long the run waited for git in all.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import type { AnyActorRef, InspectionEvent } from 'xstate';
import { parseCli } from '../cli/args.ts';
import { runDemo, type CliContext } from '../cli/commands.ts';
import { Reporter } from '../cli/reporter.ts';
import type { RunSummary } from '../cli/summary.ts';
import { extractJson } from '../actors/replies.ts';
import { Checkpointer } from '../services/store/checkpointer.ts';
import { Store, databasePath } from '../services/store/store.ts';
import { countGitCalls } from './git-calls.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const sessionFile = path.join(root, 'demos', 'todo-cli', 'session.json');

interface RecordedCall {
  purpose: string;
  task?: string;
  reply: { text: string };
}

interface Session {
  calls: Record<string, RecordedCall[]>;
}

/** The environment a user who configured nothing would have (config/ reads it, so keep it clean). */
function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined) continue;
    if (key.startsWith('DUO_AGENT_') || key.endsWith('_API_KEY') || key === 'NODE_OPTIONS' || key === 'NODE_TEST_CONTEXT') continue;
    env[key] = value;
  }
  return env;
}

// ---- instrument the checkpointer the composition root creates -------------------------------

const checkpointers: Checkpointer[] = [];
const counts = { snapshots: 0, microsteps: 0, events: 0 };
const originalAttach = Checkpointer.prototype.attach;
Checkpointer.prototype.attach = function attach(this: Checkpointer, rootActor: AnyActorRef): void {
  checkpointers.push(this);
  // A second observer next to the checkpointer's own; it is registered before the actor starts.
  rootActor.system.inspect((event: InspectionEvent) => {
    if (event.type === '@xstate.snapshot') counts.snapshots += 1;
    else if (event.type === '@xstate.microstep') counts.microsteps += 1;
    else if (event.type === '@xstate.event') counts.events += 1;
  });
  originalAttach.call(this, rootActor);
};

// ---- count the git processes the run starts ------------------------------------------------

const gitCalls = countGitCalls();

// ---- the demo, in this process ---------------------------------------------------------------

async function demo(target: string): Promise<{ wallMs: number; summary: RunSummary }> {
  const lines: string[] = [];
  const context: CliContext = {
    env: cleanEnv(),
    cwd: root,
    stdout: (line) => lines.push(line),
    reporter: new Reporter(() => {}),
    stdinIsTty: false,
  };
  // Through the real parser, so the arguments are exactly what `moderator demo` would get.
  // A free port for the monitoring server, so the bench never collides with a run on 8080.
  const args = parseCli(['demo', '--target', target, '--replay-delay-ms', '0', '--json', '--port', '0']);
  const started = performance.now();
  const code = await runDemo(context, args);
  const wallMs = performance.now() - started;
  if (code !== 0) throw new Error(`the demo exited ${code}: ${lines.join('\n')}`);
  const summary = JSON.parse(lines.at(-1) ?? '{}') as RunSummary;
  return { wallMs, summary };
}

// ---- the same git work, plainly ---------------------------------------------------------------

interface TaskWork {
  id: string;
  branch: string;
  commits: { message: string; files: { path: string; content: string }[] }[];
}

/** The techlead's recorded replies grouped by task, in order, with the branch each task used. */
function plannedWork(session: Session, branches: Map<string, string>): TaskWork[] {
  const tasks: TaskWork[] = [];
  for (const call of session.calls.techlead ?? []) {
    const id = call.task ?? `task${tasks.length + 1}`;
    const change = JSON.parse(extractJson(call.reply.text)) as { summary: string; files: { path: string; content: string }[] };
    let task = tasks.find((candidate) => candidate.id === id);
    if (!task) {
      task = { id, branch: branches.get(id) ?? `duo-agent/task/${id}`, commits: [] };
      tasks.push(task);
    }
    task.commits.push({ message: `${id}: ${change.summary}`, files: change.files });
  }
  return tasks;
}

function plainGit(dir: string, work: TaskWork[]): { ms: number; calls: number } {
  const env = { ...cleanEnv(), GIT_CONFIG_NOSYSTEM: '1' };
  let calls = 0;
  const git = (cwd: string, ...args: string[]) => {
    calls += 1;
    return execFileSync('git', ['-c', 'user.name=Bench', '-c', 'user.email=bench@localhost', '-c', 'commit.gpgsign=false', ...args], { cwd, env, stdio: 'pipe' });
  };
  const started = performance.now();
  fs.mkdirSync(dir, { recursive: true });
  git(dir, 'init', '--quiet', '--initial-branch=main');
  fs.appendFileSync(path.join(dir, '.git', 'info', 'exclude'), '.duo-agent/\n');
  git(dir, 'commit', '--quiet', '--allow-empty', '-m', 'Initial commit');
  for (const task of work) {
    const worktree = path.join(dir, '.duo-agent', 'worktrees', task.id);
    git(dir, 'worktree', 'add', '--quiet', '-b', task.branch, worktree, 'main');
    for (const commit of task.commits) {
      for (const file of commit.files) {
        const target = path.join(worktree, file.path);
        fs.mkdirSync(path.dirname(target), { recursive: true });
        fs.writeFileSync(target, file.content);
      }
      git(worktree, 'add', '-A');
      git(worktree, 'commit', '--quiet', '--allow-empty', '-m', commit.message);
    }
    git(dir, 'merge', '--quiet', '--no-ff', '--no-edit', '-m', `Merge ${task.branch}`, task.branch);
    git(dir, 'worktree', 'remove', '--force', worktree);
  }
  return { ms: performance.now() - started, calls };
}

// ---- main ------------------------------------------------------------------------------------

const temp = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-bench-'));
try {
  const target = path.join(temp, 'demo');
  const { wallMs, summary } = await demo(target);
  const checkpointer = checkpointers[0];
  if (!checkpointer || checkpointers.length !== 1) throw new Error(`expected one checkpointer, saw ${checkpointers.length}`);
  const stats = { ...checkpointer.stats };

  // The snapshot's size and the tests' time, which no repository reads, through a read-only connection of our own.
  const store = Store.open(databasePath(target));
  const db = new Database(databasePath(target), { readonly: true, fileMustExist: true });
  let fromDb: { writes: number; bytes: number; json: string; testMs: number; branches: Map<string, string> };
  try {
    const snapshot = db.prepare('SELECT writes, length(snapshot_json) AS bytes, snapshot_json AS json FROM snapshots WHERE run_id = ?').get(summary.runId) as {
      writes: number; bytes: number; json: string;
    };
    const tests = db.prepare('SELECT COALESCE(SUM(duration_ms), 0) AS ms FROM test_runs WHERE run_id = ?').get(summary.runId) as { ms: number };
    const branches = new Map(store.tasks.list(summary.runId).map((task) => [task.id, task.branch ?? `duo-agent/task/${task.id}`]));
    fromDb = { writes: snapshot.writes, bytes: snapshot.bytes, json: snapshot.json, testMs: tests.ms, branches };
  } finally {
    db.close();
    store.close();
  }

  // The store's share of a checkpoint: the final snapshot written again and again on a temp store.
  const scratch = Store.open(path.join(temp, 'scratch.db'));
  let saveCheckpointMicros: number;
  try {
    scratch.runs.create({ id: 'bench', target: temp, requirements: 'bench', settings: {}, snapshotVersion: 1, machineFingerprint: 'bench' });
    const rounds = 300;
    for (let index = 0; index < 20; index += 1) scratch.checkpoints.save('bench', fromDb.json, 'active', [], null);
    const started = performance.now();
    for (let index = 0; index < rounds; index += 1) scratch.checkpoints.save('bench', fromDb.json, 'active', [], null);
    saveCheckpointMicros = ((performance.now() - started) * 1000) / rounds;
  } finally {
    scratch.close();
  }

  // The plain script is short and noisy: the median of a few runs.
  const session = JSON.parse(fs.readFileSync(sessionFile, 'utf8')) as Session;
  const work = plannedWork(session, fromDb.branches);
  const plain = [0, 1, 2].map((index) => plainGit(path.join(temp, `plain-${index}`), work));
  const plainRuns = plain.map((run) => run.ms).sort((a, b) => a - b);
  const plainGitMs = plainRuns[1] as number;
  const plainGitCalls = plain[0]?.calls ?? 0;
  const runGitCalls = gitCalls.calls();
  const tasks = Math.max(1, work.length);
  const overheadMs = wallMs - fromDb.testMs;

  const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits;
  const transitions = counts.snapshots;
  console.log(JSON.stringify({
    bench: 'demo',
    node: process.version,
    cpus: os.cpus().length,
    loadAvg1m: round(os.loadavg()[0] ?? 0, 2),
    outcome: summary.outcome,
    modelCalls: summary.modelCalls,
    wallMs: round(wallMs),
    plainGitMs: round(plainGitMs),
    plainGitRunsMs: plainRuns.map((ms) => round(ms)),
    ratio: round(wallMs / plainGitMs, 2),
    testMs: fromDb.testMs,
    overheadMs: round(overheadMs),
    overheadRatio: round(overheadMs / plainGitMs, 2),
    overheadRatioGoal: 1.3,
    tasks: work.length,
    // Time inside git processes the run started (calls rarely overlap: one task at a time).
    gitMs: round(gitCalls.ms()),
    gitCalls: runGitCalls,
    plainGitCalls,
    gitCallsPerTask: round(runGitCalls / tasks),
    plainGitCallsPerTask: round(plainGitCalls / tasks),
    gitCallsRatio: round(runGitCalls / Math.max(1, plainGitCalls), 2),
    gitCallsRatioGoal: 2,
    gitCallsByCommand: Object.fromEntries([...gitCalls.byCommand].sort((a, b) => b[1] - a[1])),
    // Every actor's state change (an @xstate.snapshot inspection event) is a transition; the
    // checkpointer coalesces them per microtask and skips unchanged snapshots.
    transitions,
    microsteps: counts.microsteps,
    events: counts.events,
    checkpointFlushes: stats.flushes,
    checkpointWrites: stats.writes,
    dbSnapshotWrites: fromDb.writes,
    persistMicros: round(stats.persistMicros),
    persistMicrosPerTransition: round(stats.persistMicros / Math.max(1, transitions)),
    persistMicrosPerWrite: round(stats.persistMicros / Math.max(1, stats.writes)),
    saveCheckpointMicros: round(saveCheckpointMicros),
    snapshotBytes: stats.lastSnapshotBytes,
    dbSnapshotBytes: fromDb.bytes,
    journaledMessages: stats.messages,
  }));
} finally {
  fs.rmSync(temp, { recursive: true, force: true });
}
