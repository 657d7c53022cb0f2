/**
 * Whether the work of a task grows with the repository and the run (issue 10): a synthetic run of
 * 100 tasks through the whole of a run, as `moderator start -y` drives it after its checks
 * (cli/run-session.ts `runSession`: the orchestrator's chart, the checkpointer, the Monitor, the
 * merge queue, the real gateway, git, store, tools and PR provider), one task at a time, with the
 * scripted model of bench/pipelines.ts answering at once. Prints ONE JSON line. Run with
 * `npm run bench:scale`.
 *
 * The target starts as the pipelines project beside an established codebase of `--library-files`
 * files (default 1,000, in packages of 50 small modules), one commit, packed as a clone is. Task i
 * adds a step module and its test, so the repository grows by two files, the history by the
 * task's commits and merge, the refs by its branch and the journal by its steps; every tenth task
 * is asked for changes once. 1,000 files keep the run within minutes on 2 cores: every task checks
 * out the whole tree, about 1 ms a file on a shared disk.
 *
 * Two runs, each in a process of its own: the main run of `--tasks`, and a reference run of the
 * same plan on a fresh copy of the starting repository, started when the main run has merged its
 * task 90 and stopped after its task 15. From there the two take turns, one task each: reference
 * T6, main T91, reference T7, ... main T100, each worker blocked (after its task's last git call,
 * the worktree's removal) while the other works. On a shared machine the load drifts over minutes,
 * 2x within one run as measured; taken in turns, each pair of tasks sees the same load, and no
 * task runs beside the other run's.
 *
 * - taskMs: wall time of a task, from the orchestrator's `task.assigned` to its `pr.merged`, as
 *   the checkpointer journals them (one microtask after the event), less its turn's wait. earlyMs: the median of the
 *   reference run's tasks 6-15; lateMs: of the main run's last ten; growth = lateMs / earlyMs
 *   against its goal (<= 1.1). growthSequential compares the main run's own tasks 6-15, measured
 *   minutes earlier, under whatever load there was then. msPerThousandFiles: what a task's time
 *   grew by per 1,000 files more in the tree (the growth said apart from the starting size).
 * - cpuMs: CPU time of a task (the worker and the git and test processes it waited for, from
 *   /proc/self/stat), the same windows: close to wall time says the task worked rather than
 *   waited. It is no steadier than wall time under load: most of it is git's system time (file
 *   creation), which swung tenfold with other sessions' disk use on the machine measured.
 * - git: every git process, by bench/git-calls.ts, given to the task assigned last: per task the
 *   median count and time of each window, spawnMs the part of it the worker was blocked in fork
 *   and exec, and by command the mean count and time per task (gitByCommand, costliest first).
 * - testMs, checkpointMs, otherMs: of a task's wall time, the test command's runs (test_runs),
 *   the checkpointer's own time (its stats.persistMicros), and the rest (charts, store, prompts,
 *   the repository map, tools) once git's time is taken off too. rssMb: the worker's memory.
 *
 * Flags: `--tasks N` (default 100, at least 25), `--library-files N` (default 1000), `--progress`
 * (the main run's progress lines on stderr). `--worker` (with `--stop-after N`, `--turns-after N`)
 * is one run, used by the bench itself: a JSON line per merged task on stdout, and from task N on a
 * byte on stdin before each task ends.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import type { AnyActorRef } from 'xstate';
import { Reporter } from '../cli/reporter.ts';
import { machineFingerprint, snapshotVersion } from '../cli/fingerprint.ts';
import { runSession } from '../cli/run-session.ts';
import { configSchema, withBaseBranch } from '../config/index.ts';
import { UNSANDBOXED } from '../services/sandbox/sandbox.ts';
import { Checkpointer } from '../services/store/checkpointer.ts';
import { Store, databasePath } from '../services/store/store.ts';
import type { JournalMessage } from '../services/store/types.ts';
import { countGitCalls, type GitCall } from './git-calls.ts';
import { ScriptedModel, createTarget } from './pipelines.ts';
import { median } from './stats.ts';

const GROWTH_GOAL = 1.1;
/** The windows compared: tasks 6-15 (past the first tasks' warm-up: module loading, the first map) and the last ten. */
const EARLY = { from: 6, to: 15 };
const WINDOW = 10;

interface Args {
  tasks: number;
  libraryFiles: number;
  progress: boolean;
  worker: boolean;
  stopAfter: number | undefined;
  /** From this task on, each task waits for its turn (a byte on stdin) before it ends. */
  turnsAfter: number | undefined;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { tasks: 100, libraryFiles: 1000, progress: false, worker: false, stopAfter: undefined, turnsAfter: undefined };
  for (let index = 0; index < argv.length; index += 1) {
    const arg = argv[index];
    if (arg === '--tasks') args.tasks = Number(argv[++index]);
    else if (arg === '--library-files') args.libraryFiles = Number(argv[++index]);
    else if (arg === '--progress') args.progress = true;
    else if (arg === '--worker') args.worker = true;
    else if (arg === '--stop-after') args.stopAfter = Number(argv[++index]);
    else if (arg === '--turns-after') args.turnsAfter = Number(argv[++index]);
    else throw new Error(`unknown argument ${arg}`);
  }
  if (!Number.isInteger(args.tasks) || args.tasks < EARLY.to + WINDOW) throw new Error(`--tasks: expected an integer of at least ${EARLY.to + WINDOW} (the windows must not overlap)`);
  if (!Number.isInteger(args.libraryFiles) || args.libraryFiles < 0) throw new Error('--library-files: expected a whole number');
  return args;
}

// ---- one run (--worker) -------------------------------------------------------------------------

/** What a worker prints for each merged task. */
interface TaskFigures {
  kind: 'task';
  index: number;
  /** Epoch ms, comparable between the two workers. */
  assignedAt: number;
  mergedAt: number;
  ms: number;
  cpuMs: number | null;
  gitCalls: number;
  gitMs: number;
  spawnMs: number;
  byCommand: Record<string, { calls: number; ms: number }>;
  testMs: number;
  checkpointMs: number;
  rssMb: number;
}

interface StartRecord {
  kind: 'start';
  filesAtStart: number;
}

/** A worker waiting for its turn, its task `index` all but done. */
interface WaitRecord {
  kind: 'waiting';
  index: number;
}

interface EndRecord {
  kind: 'end';
  outcome: string;
  snapshotBytes: number | null;
}

type WorkerRecord = StartRecord | TaskFigures | WaitRecord | EndRecord;

/**
 * CPU time of this process and of its children that have ended (git, the test command), in ms, from
 * /proc/self/stat (utime, stime, cutime, cstime; 100 ticks a second); null off Linux.
 */
function cpuMs(): number | null {
  try {
    const stat = fs.readFileSync('/proc/self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return [11, 12, 13, 14].reduce((sum, index) => sum + Number(fields[index]), 0) * 10;
  } catch {
    return null;
  }
}

const epochMs = () => performance.timeOrigin + performance.now();

/** A task between its assignment and its merge. */
interface Open {
  index: number;
  assignedAt: number;
  cpu: number | null;
  persistMicros: number;
  git: GitCall[];
  /** Time it waited for its turn. */
  waitedMs: number;
}

/**
 * Blocks the whole process until the bench sends a byte on stdin: nothing of this run moves
 * meanwhile (its event loop waits too, and no git process is left running). Returns the ms waited.
 */
function waitForTurn(): number {
  const started = performance.now();
  const byte = Buffer.alloc(1);
  for (;;) {
    try {
      if (fs.readSync(0, byte, 0, 1, null) === 1) return performance.now() - started;
      throw new Error('the bench closed the turn pipe');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error;
      // A non-blocking pipe: sleep a millisecond, synchronously, and read again.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
    }
  }
}

/** Takes each task's first assignment and its merge from the messages the checkpointer journals, and prints the task's record. */
class TimingReporter extends Reporter {
  current: Open | undefined;
  private readonly assigned = new Set<string>();

  constructor(
    write: (line: string) => void,
    private readonly measure: { persistMicros(): number; testMs(taskId: string): number; merged(taskId: string, index: number): void },
  ) {
    super(write);
  }

  override messages(messages: JournalMessage[], stopReason?: string | null, channels?: { alerts?: boolean }): void {
    for (const message of messages) {
      const taskId = (message.payload as { taskId?: unknown }).taskId;
      if (typeof taskId !== 'string') continue;
      const index = Number(taskId.slice(1));
      if (message.type === 'task.assigned' && !this.assigned.has(taskId)) {
        this.assigned.add(taskId);
        this.current = { index, assignedAt: epochMs(), cpu: cpuMs(), persistMicros: this.measure.persistMicros(), git: [], waitedMs: 0 };
      } else if (message.type === 'pr.merged' && this.current?.index === index) {
        const open = this.current;
        const mergedAt = epochMs();
        const cpu = cpuMs();
        const byCommand: TaskFigures['byCommand'] = {};
        for (const call of open.git) {
          const entry = (byCommand[call.command] ??= { calls: 0, ms: 0 });
          entry.calls += 1;
          entry.ms += call.ms;
        }
        write({
          kind: 'task', index, assignedAt: open.assignedAt, mergedAt, ms: mergedAt - open.assignedAt - open.waitedMs,
          cpuMs: cpu === null || open.cpu === null ? null : cpu - open.cpu,
          gitCalls: open.git.length, gitMs: sum(open.git.map((call) => call.ms)), spawnMs: sum(open.git.map((call) => call.spawnMs)), byCommand,
          testMs: this.measure.testMs(taskId), checkpointMs: (this.measure.persistMicros() - open.persistMicros) / 1000, rssMb: process.memoryUsage().rss / 2 ** 20,
        });
        this.measure.merged(taskId, index);
      }
    }
    super.messages(messages, stopReason, channels);
  }
}

const sum = (values: number[]) => values.reduce((total, value) => total + value, 0);
const write = (record: WorkerRecord) => process.stdout.write(`${JSON.stringify(record)}\n`);

async function worker(args: Args): Promise<void> {
  const gitCalls = countGitCalls();
  // The session's checkpointer, kept to read its stats (the session does not expose it).
  const checkpointers: Checkpointer[] = [];
  const originalAttach = Checkpointer.prototype.attach;
  Checkpointer.prototype.attach = function attach(this: Checkpointer, root: AnyActorRef): void {
    checkpointers.push(this);
    originalAttach.call(this, root);
  };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-scale-bench-'));
  const target = path.join(dir, 'pipelines');
  try {
    write({ kind: 'start', filesAtStart: createTarget(target, { libraryFiles: args.libraryFiles, packed: true }) });
    const requirements = `Pipeline steps in four areas, ${args.tasks} of them.`;
    const config = withBaseBranch(configSchema.parse({
      model: { provider: 'openai' },
      project: { name: 'pipelines', language: 'javascript', test_command: 'node scripts/check.js' },
      // One task at a time, so a task's wall time is its own work; no cap on tokens or time.
      limits: { max_tokens_total: 1e12, max_parallel_tasks: 1, max_runtime_hours: 100 },
      agents: { techlead: { sandbox: 'off' } },
      monitor: { port: 0, host: '127.0.0.1' },
    }), 'main');
    const store = Store.open(databasePath(target));
    let reader: Database.Database | undefined;
    try {
      store.runs.create({ id: 'bench', target, requirements, settings: { config, agents: {} }, snapshotVersion, machineFingerprint: machineFingerprint() });
      // The bench reads the test time beside the store, on a connection of its own (the Store's is private).
      reader = new Database(databasePath(target), { readonly: true, fileMustExist: true });
      const testMs = reader.prepare('SELECT COALESCE(SUM(duration_ms), 0) AS ms FROM test_runs WHERE run_id = ? AND task_id = ?');
      const reporter = new TimingReporter(args.progress ? (line) => process.stderr.write(`${line}\n`) : () => {}, {
        persistMicros: () => checkpointers[0]?.stats.persistMicros ?? 0,
        testMs: (taskId) => (testMs.get('bench', taskId) as { ms: number }).ms,
        // The reference run stops itself here, as Ctrl-C would stop it.
        merged: (_taskId, index) => {
          if (index === args.stopAfter) process.kill(process.pid, 'SIGTERM');
        },
      });
      gitCalls.onCall = (call) => {
        const task = reporter.current;
        if (!task) return;
        task.git.push(call);
        // The worktree's removal after the merge is a task's last git call: its turn ends there.
        if (call.command === 'worktree remove' && args.turnsAfter !== undefined && task.index >= args.turnsAfter && task.index < (args.stopAfter ?? args.tasks)) {
          write({ kind: 'waiting', index: task.index });
          task.waitedMs += waitForTurn();
        }
      };
      const result = await runSession({
        store, runId: 'bench', target, requirements, config, agents: {}, autoApprove: true, reporter,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.homedir() }, provider: new ScriptedModel(args.tasks, { countTokens: false }), sandbox: UNSANDBOXED,
      });
      const outcome = result.kind === 'finished' ? result.output.outcome : `interrupted by ${result.signal}`;
      if (result.kind === 'finished' && result.output.outcome !== 'done') process.stderr.write(`the run ended ${result.output.outcome}: ${result.output.reason ?? ''}\n`);
      write({ kind: 'end', outcome, snapshotBytes: checkpointers[0]?.stats.lastSnapshotBytes ?? null });
    } finally {
      reader?.close();
      store.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ---- the two runs, and the figures --------------------------------------------------------------

interface Worker {
  done: Promise<WorkerRecord[]>;
  /** Lets it take its turn. */
  go(): void;
}

/** Starts a worker; `onRecord` sees each record as it comes. */
function startWorker(flags: string[], progress: boolean, onRecord: (record: WorkerRecord) => void): Worker {
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--worker', ...flags], { stdio: ['pipe', 'pipe', progress ? 'inherit' : 'pipe'] });
  if (child.stdout === null || child.stdin === null) throw new Error('the bench worker has no stdin or stdout');
  const records: WorkerRecord[] = [];
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    const record = JSON.parse(line) as WorkerRecord;
    records.push(record);
    onRecord(record);
  });
  const stdin = child.stdin;
  // A worker that ended early must not take the bench down with EPIPE.
  stdin.on('error', () => {});
  const done = new Promise<WorkerRecord[]>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      stdin.end();
      if (code === 0) resolve(records);
      else reject(new Error(`the bench worker ${flags.join(' ')} exited ${code}: ${stderr.trim().split('\n').slice(-5).join('\n')}`));
    });
  });
  return { done, go: () => stdin.write('g') };
}

async function main(args: Args): Promise<void> {
  const started = performance.now();
  const common = ['--tasks', String(args.tasks), '--library-files', String(args.libraryFiles)];
  const lastAlone = args.tasks - WINDOW;
  // Turns, from the main run's task 90 on: reference T1-T6, main T91, reference T7, ..., reference T15, main T100.
  let reference: Worker | undefined;
  const mainRun: Worker = startWorker([...common, '--turns-after', String(lastAlone), ...(args.progress ? ['--progress'] : [])], args.progress, (record) => {
    if (record.kind !== 'waiting') return;
    if (reference) {
      reference.go();
      return;
    }
    reference = startWorker([...common, '--stop-after', String(EARLY.to), '--turns-after', String(EARLY.from)], false, (own) => {
      if (own.kind === 'waiting' || (own.kind === 'task' && own.index === EARLY.to)) mainRun.go();
    });
  });
  const mainRecords = await mainRun.done;
  if (!reference) throw new Error('the main run ended before the reference run was started');
  const ref = await reference.done;

  const tasksOf = (records: WorkerRecord[]) => records.filter((record): record is TaskFigures => record.kind === 'task').sort((a, b) => a.index - b.index);
  const mainTasks = tasksOf(mainRecords);
  const refTasks = tasksOf(ref);
  const end = mainRecords.find((record): record is EndRecord => record.kind === 'end');
  const filesAtStart = mainRecords.find((record): record is StartRecord => record.kind === 'start')?.filesAtStart ?? 0;
  if (mainTasks.length !== args.tasks) throw new Error(`the main run merged ${mainTasks.length} of ${args.tasks} tasks (${end?.outcome ?? 'no end'})`);
  const early = refTasks.filter((task) => task.index >= EARLY.from && task.index <= EARLY.to);
  if (early.length !== EARLY.to - EARLY.from + 1) throw new Error(`the reference run merged ${refTasks.length} tasks, not ${EARLY.to}`);
  const earlyAlone = mainTasks.filter((task) => task.index >= EARLY.from && task.index <= EARLY.to);
  const late = mainTasks.slice(-WINDOW);

  const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits;
  const med = (tasks: TaskFigures[], figure: (task: TaskFigures) => number) => round(median(tasks.map((task) => figure(task) * 10)) / 10);
  const cpu = (tasks: TaskFigures[]) => (tasks.every((task) => task.cpuMs !== null) ? med(tasks, (task) => task.cpuMs ?? 0) : null);
  /** Per command, the mean count and ms per task of a window. */
  const byCommand = (tasks: TaskFigures[]) => {
    const commands = new Map<string, { calls: number; ms: number }>();
    for (const task of tasks) {
      for (const [command, entry] of Object.entries(task.byCommand)) {
        const total = commands.get(command) ?? { calls: 0, ms: 0 };
        commands.set(command, { calls: total.calls + entry.calls / tasks.length, ms: total.ms + entry.ms / tasks.length });
      }
    }
    return commands;
  };
  const before = byCommand(early);
  const after = byCommand(late);
  const commands = [...new Set([...after.keys(), ...before.keys()])]
    .map((command) => ({ command, before: before.get(command) ?? { calls: 0, ms: 0 }, after: after.get(command) ?? { calls: 0, ms: 0 } }))
    .sort((a, b) => b.after.ms - a.after.ms)
    .map(({ command, before: b, after: a }) => [command, { callsEarly: round(b.calls), callsLate: round(a.calls), msEarly: round(b.ms), msLate: round(a.ms) }] as const);

  const earlyMs = med(early, (task) => task.ms);
  const lateMs = med(late, (task) => task.ms);
  const cpuEarly = cpu(early);
  const cpuLate = cpu(late);
  const growth = round(lateMs / earlyMs, 3);
  // The files in the tree at the middle of each window (two a task), to say the growth per 1,000 files.
  const filesEarly = filesAtStart + (EARLY.from + EARLY.to);
  const filesLate = filesAtStart + (2 * args.tasks - WINDOW + 1);
  const other = (task: TaskFigures) => task.ms - task.gitMs - task.testMs - task.checkpointMs;
  console.log(JSON.stringify({
    bench: 'scale',
    node: process.version,
    cpus: os.cpus().length,
    loadAvg1m: round(os.loadavg()[0] ?? 0, 2),
    outcome: end?.outcome ?? 'unknown',
    tasks: args.tasks,
    filesAtStart,
    filesAtEnd: filesAtStart + 2 * args.tasks,
    windows: { early: `T${EARLY.from}-T${EARLY.to} of the reference run`, late: `T${args.tasks - WINDOW + 1}-T${args.tasks}`, inTurns: true },
    earlyMs,
    lateMs,
    growth,
    growthGoal: GROWTH_GOAL,
    growthMet: growth <= GROWTH_GOAL,
    // What a task's wall time grows by per 1,000 more files in the tree, between the windows.
    msPerThousandFiles: round((lateMs - earlyMs) / ((filesLate - filesEarly) / 1000), 0),
    earlyMsAlone: med(earlyAlone, (task) => task.ms),
    growthSequential: round(lateMs / med(earlyAlone, (task) => task.ms), 3),
    cpuEarlyMs: cpuEarly,
    cpuLateMs: cpuLate,
    cpuGrowth: cpuEarly === null || cpuLate === null ? null : round(cpuLate / cpuEarly, 3),
    gitCallsEarly: med(early, (task) => task.gitCalls),
    gitCallsLate: med(late, (task) => task.gitCalls),
    gitMsEarly: med(early, (task) => task.gitMs),
    gitMsLate: med(late, (task) => task.gitMs),
    spawnMsEarly: med(early, (task) => task.spawnMs),
    spawnMsLate: med(late, (task) => task.spawnMs),
    testMsEarly: med(early, (task) => task.testMs),
    testMsLate: med(late, (task) => task.testMs),
    checkpointMsEarly: med(early, (task) => task.checkpointMs),
    checkpointMsLate: med(late, (task) => task.checkpointMs),
    otherMsEarly: med(early, other),
    otherMsLate: med(late, other),
    rssMbEarly: med(early, (task) => task.rssMb),
    rssMbLate: med(late, (task) => task.rssMb),
    gitByCommand: Object.fromEntries(commands),
    snapshotBytes: end?.snapshotBytes ?? null,
    wallMs: Math.round(performance.now() - started),
  }));
}

const args = parseArgs(process.argv.slice(2));
if (args.worker) await worker(args);
else await main(args);
