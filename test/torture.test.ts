/**
 * Crash torture: the demo is killed with SIGKILL at chosen moments (mid model call, between a
 * commit and its PR, mid test run, between a merge and the next step, in the first moments of a
 * run, ...), resumed with `--resume`, killed again, and so on until a resume finishes. The end
 * state must equal an uninterrupted run's: same tree, same commits (none duplicated), same PRs,
 * and no model call whose reply was journaled is ever sent again.
 */
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import {
  FREE_PORT, cliAsync, dbPoll, fingerprint, listRunsAsync, newTarget, parseSummary, removeTargets, withDb, type KilledResult, type KillPoint, type RunFingerprint, type RunSummaryJson,
} from './helpers/cli.ts';

const DELAY_MS = '150';

// The temp folders go when everything passed; a failure keeps them (their paths are logged).
test.after(() => removeTargets());

interface Finished {
  target: string;
  summary: RunSummaryJson;
  print: RunFingerprint;
}

/** A kill point that fires when a line appears in a git reflog of the target (e.g. right after `git commit`). */
function reflogPoll(target: string, ref: string, needle: RegExp): () => boolean {
  const file = path.join(target, '.git', 'logs', ...ref.split('/'));
  return () => fs.existsSync(file) && needle.test(fs.readFileSync(file, 'utf8'));
}

/** A kill point on the run's own journal: the moment `sql` first finds a row in the target's database. */
function journal(target: string, sql: string, ...params: unknown[]): Pick<KillPoint, 'poll' | 'dispose'> {
  return dbPoll(target, sql, ...params);
}

/** Either of two moments, whichever comes first (a narrow window and a sure one after it). */
function either(first: () => boolean, second: () => boolean): () => boolean {
  return () => first() || second();
}

/** Kills mid model call: as soon as the call is journaled as sent (the replay then waits 150 ms). */
function inFlight(target: string, callKey: string): Pick<KillPoint, 'poll' | 'dispose'> {
  return dbPoll(target, `SELECT 1 FROM model_calls WHERE call_key = ? AND status = 'sent'`, callKey);
}

/** A kill point, and what must then hold. */
interface Planned extends KillPoint {
  /** The kill must leave this model call in flight (journaled as sent, no reply). */
  leavesInFlight?: string;
  /** The stderr of the next process must match (e.g. a reply taken from the journal). */
  thenExpect?: RegExp;
}

interface Step {
  what: string;
  planned?: Planned;
  result: KilledResult;
  /** Model calls this kill left in flight (journaled as sent, never answered). */
  inFlight: string[];
}

interface TortureLog {
  name: string;
  target: string;
  steps: string[];
  processes: Step[];
  resumes: number;
  final?: Finished;
  error?: string;
}

/**
 * Starts the demo and resumes it until one process exits 0, killing process i at `kills[i]`
 * (a function, as some kill points watch files of the target).
 */
async function torture(name: string, kills: ((target: string) => Planned)[], seedLog: string[] = []): Promise<TortureLog> {
  const target = newTarget(`torture-${name}`);
  const log: TortureLog = { name, target, steps: [...seedLog], processes: [], resumes: 0 };
  let runId: string | null = null;
  let last: KilledResult | undefined;
  const seenInFlight = new Set<number>();
  const maxProcesses = kills.length + 3;
  for (let index = 0; index < maxProcesses; index += 1) {
    const kill = kills[index]?.(target);
    const args = runId === null
      ? ['demo', '--target', target, '--replay-delay-ms', DELAY_MS, '--json', ...FREE_PORT]
      : ['--resume', runId, '--target', target, '--replay-delay-ms', DELAY_MS, '--json', ...FREE_PORT];
    if (runId !== null) log.resumes += 1;
    last = await cliAsync(args, { ...(kill ? { kill } : {}), timeoutMs: 150_000 });
    const what = runId === null ? 'demo' : `resume ${log.resumes}`;
    const recovered = last.stderr.split('\n').filter((line) => /recovered: |reply taken from the journal/.test(line)).map((line) => line.replace(/^\[\d\d:\d\d\]\s*/, '').trim());
    const said = () => {
      if (recovered.length > 0) log.steps.push(`  ${what} said: ${recovered.join(' | ')}`);
    };
    const step: Step = { what, result: last, inFlight: [], ...(kill ? { planned: kill } : {}) };
    log.processes.push(step);
    if (!last.killed) {
      log.steps.push(`${what}: ${kill ? `kill point "${kill.label}" never came; ` : ''}exited ${last.code ?? last.signal} after ${last.ms} ms`);
      said();
      if (last.code !== 0) {
        log.error = `${what} exited ${last.code ?? last.signal}:\n${last.stderr}`;
        return log;
      }
      break;
    }
    const snapshot = fs.existsSync(path.join(target, '.duo-agent', 'moderator.db'))
      ? withDb(target, (db) => db.prepare('SELECT writes FROM snapshots').get() as { writes: number } | undefined)
      : undefined;
    const sent = fs.existsSync(path.join(target, '.duo-agent', 'moderator.db'))
      ? withDb(target, (db) => db.prepare(`SELECT id, call_key FROM model_calls WHERE status = 'sent'`).all() as { id: number; call_key: string }[])
      : [];
    const inFlight = sent.filter((row) => !seenInFlight.has(row.id)).map((row) => row.call_key);
    for (const row of sent) seenInFlight.add(row.id);
    step.inFlight = inFlight;
    log.steps.push(
      `${what}: SIGKILL at "${kill?.label}" (trigger: ${last.trigger?.replace(/^\[\d\d:\d\d\]\s*/, '').slice(0, 70)}; last line: ${(last.lastLine ?? '').replace(/^\[\d\d:\d\d\]\s*/, '').slice(0, 70)}) after ${last.ms} ms; ` +
        `checkpoint writes so far ${snapshot?.writes ?? 'none'}${inFlight.length ? `; calls left in flight: ${inFlight.join(', ')}` : ''}`,
    );
    said();
    if (runId === null) {
      const runs = fs.existsSync(path.join(target, '.duo-agent', 'moderator.db')) ? await listRunsAsync(target) : [];
      if (runs.length !== 1) {
        log.error = `after the first kill, runs --json lists ${runs.length} runs: the kill came before the run was stored\n${last.stderr}`;
        return log;
      }
      runId = (runs[0] as RunSummaryJson).runId;
    }
  }
  if (!last || last.killed || last.code !== 0 || runId === null) {
    log.error = `no process finished the run within ${maxProcesses} processes:\n${last?.stderr ?? ''}`;
    return log;
  }
  const summary = parseSummary(last.stdout);
  log.final = { target, summary, print: await fingerprint(target, runId) };
  return log;
}

/** Runs the jobs at most `limit` at a time (the machine has 2 cores; each run also spawns `node --test`). */
async function pool<T>(jobs: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const results: T[] = new Array(jobs.length);
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const index = next;
      next += 1;
      results[index] = await (jobs[index] as () => Promise<T>)();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker));
  return results;
}

async function reference(): Promise<Finished> {
  const target = newTarget('torture-ref');
  const run = await cliAsync(['demo', '--target', target, '--replay-delay-ms', DELAY_MS, '--json', ...FREE_PORT], { timeoutMs: 150_000 });
  if (run.code !== 0) throw new Error(`the reference run exited ${run.code ?? run.signal}:\n${run.stderr}`);
  const summary = parseSummary(run.stdout);
  return { target, summary, print: await fingerprint(target, summary.runId) };
}

/** A pseudo-random generator with a printed seed, so a failing random schedule can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1_664_525 + 1_013_904_223) >>> 0;
    return state / 2 ** 32;
  };
}

test('kill -9 at many moments, resume each time: the result equals an uninterrupted run', async (t) => {
  t.timeout(480_000);
  const seed = Number(process.env.TORTURE_SEED ?? Date.now() % 1_000_000);
  const rand = random(seed);
  // Random moments, counted from when the process holds the run (its row says this session: so
  // the run exists, and a kill before `demo` stored it cannot leave nothing to resume).
  const randomKills = Array.from({ length: 3 }, (_, index) => {
    const delayMs = Math.round(rand() * 6_000);
    return (target: string): Planned => ({ label: `random, ${delayMs} ms after the run ${index === 0 ? 'started' : 'resumed'}`, ...journal(target, `SELECT 1 FROM runs WHERE sessions >= ?`, index + 1), delayMs });
  });

  const schedules: [string, ((target: string) => Planned)[]][] = [
    ['A', [
      // The very first moments: the run row exists, the first checkpoint may not.
      (target) => ({ label: 'first moments: run just created', ...journal(target, 'SELECT 1 FROM runs') }),
      (target) => ({
        label: 'mid model call: techlead implement T1 sent, no reply yet',
        ...inFlight(target, 'techlead:implement:T1:1'),
        leavesInFlight: 'techlead:implement:T1:1',
      }),
      // Right after `git commit` on the task branch: the reply is journaled, the commit made,
      // neither reported nor tested nor submitted; the resume re-runs implement T2.
      (target) => ({
        label: 'between commit and PR: right after git commit of T2',
        poll: reflogPoll(target, 'refs/heads/duo-agent/feature/T2', /\tcommit/),
        thenExpect: /model techlead implement T2: reply taken from the journal, not sent again/,
      }),
      // Right after `git merge` moved main: the PR is not yet marked merged, the next task not started.
      (target) => ({ label: 'between merge and next step: main just merged T2', poll: reflogPoll(target, 'refs/heads/main', /merge duo-agent\/feature\/T2/) }),
    ]],
    ['B', [
      (target) => ({ label: 'first checkpoint: clarify call in flight', ...inFlight(target, 'moderator:clarify'), leavesInFlight: 'moderator:clarify' }),
      (target) => ({ label: 'right after a change request', ...journal(target, `SELECT 1 FROM messages WHERE type = 'review.changes_requested' AND correlation_id = 'T2#1'`) }),
      (target) => ({ label: 'mid test run: T2 revision tests', poll: reflogPoll(target, 'refs/heads/duo-agent/feature/T2', /\tcommit[\s\S]*\tcommit/), delayMs: 700 }),
      (target) => ({ label: 'between merge and next step: PR #2 recorded merged', ...journal(target, `SELECT 1 FROM pull_requests WHERE number = 2 AND status = 'merged'`) }),
    ]],
    ['C', [
      (target) => ({ label: 'between tests and PR: T1 tests passed', ...journal(target, `SELECT 1 FROM test_runs WHERE task_id = 'T1' AND passed = 1`) }),
      (target) => ({ label: 'PR #2 opened, review not yet done', ...journal(target, 'SELECT 1 FROM pull_requests WHERE number = 2') }),
      (target) => ({
        label: 'mid improvement cycle: ever-thinker analyze 1 in flight',
        ...inFlight(target, 'ever-thinker:analyze:1'),
        leavesInFlight: 'ever-thinker:analyze:1',
      }),
      (target) => ({ label: 'mid model call: techlead implement T4', ...inFlight(target, 'techlead:implement:T4:1'), leavesInFlight: 'techlead:implement:T4:1' }),
    ]],
    ['D', randomKills],
    // Power cuts: the whole process group dies, git and `node --test` children included, so
    // half-created worktrees and stale lock files are left behind for the resume to repair.
    ['E', [
      (target) => ({
        label: 'power cut during `git worktree add` of T1',
        group: true,
        // Or, had the window been missed, as soon as T1's commit is made.
        poll: either(() => fs.existsSync(path.join(target, '.git', 'worktrees', 'T1')), reflogPoll(target, 'refs/heads/duo-agent/feature/T1', /\tcommit/)),
      }),
      (target) => ({
        label: 'power cut while git holds the T2 worktree index.lock',
        group: true,
        poll: either(() => fs.existsSync(path.join(target, '.git', 'worktrees', 'T2', 'index.lock')), reflogPoll(target, 'refs/heads/duo-agent/feature/T2', /\tcommit/)),
      }),
      (target) => ({ label: 'power cut mid test run of T3', group: true, poll: reflogPoll(target, 'refs/heads/duo-agent/docs/T3', /\tcommit/), delayMs: 800 }),
      (target) => ({
        label: 'power cut during a merge in the main work tree',
        group: true,
        poll: either(() => fs.existsSync(path.join(target, '.git', 'index.lock')) || fs.existsSync(path.join(target, '.git', 'MERGE_HEAD')), reflogPoll(target, 'refs/heads/main', /merge duo-agent\/docs\/T3/)),
      }),
    ]],
  ];

  const jobs: (() => Promise<Finished | TortureLog>)[] = [reference, ...schedules.map(([name, kills]) => () => torture(name, kills, name === 'D' ? [`seed ${seed} (TORTURE_SEED=${seed} replays it)`] : []))];
  const started = Date.now();
  const [ref, ...runs] = (await pool(jobs, 2)) as [Finished, ...TortureLog[]];
  t.log(`reference + ${runs.length} torture runs in ${Math.round((Date.now() - started) / 1000)} s`);

  // The reference itself is what an uninterrupted run must be.
  t.is(ref.summary.outcome, 'done');
  t.is(ref.print.okCalls, 14);
  t.is(ref.print.callRows, 14);
  t.is(ref.print.prs.length, 4);

  for (const run of runs) {
    t.log(`torture ${run.name}: ${run.processes.length} processes, ${run.resumes} resume(s), target ${run.target}`);
    for (const step of run.steps) t.log(`  ${step}`);
    if (run.error !== undefined || !run.final) {
      t.fail(`torture ${run.name}: ${run.error ?? 'no final state'}`);
      continue;
    }
    // Every planned kill point of a named schedule was reached, and did what it is named after.
    if (run.name !== 'D') {
      run.processes.forEach((step, index) => {
        if (!step.planned) return;
        t.true(step.result.killed, `torture ${run.name}: kill point "${step.planned.label}" was never reached`);
        if (step.planned.leavesInFlight) {
          t.true(step.inFlight.includes(step.planned.leavesInFlight), `torture ${run.name}: "${step.planned.label}" left in flight: ${step.inFlight.join(', ') || 'nothing'}`);
        }
        if (step.planned.thenExpect) {
          t.regex(run.processes[index + 1]?.result.stderr ?? '', step.planned.thenExpect, `torture ${run.name}: after "${step.planned.label}"`);
        }
      });
    }
    const { summary, print } = run.final;
    const sentAgain = print.callRows - print.okCalls;
    t.log(`  final: outcome ${summary.outcome}, sessions ${summary.sessions}, model calls sent ${summary.modelCalls} (${sentAgain} interrupted mid-flight and sent again)`);
    const label = `torture ${run.name}`;
    t.is(summary.outcome, 'done', label);
    t.true(summary.sessions > 1, `${label}: sessions ${summary.sessions}`);
    t.true(summary.sessions <= run.processes.length, `${label}: sessions ${summary.sessions} > processes ${run.processes.length}`);
    const leftInFlight = run.processes.flatMap((step) => step.inFlight);
    t.is(summary.modelCalls, 14 + leftInFlight.length, `${label}: only calls interrupted mid-flight (${leftInFlight.join(', ') || 'none'}) were sent again`);
    t.true(summary.modelCalls >= 14, `${label}: modelCalls ${summary.modelCalls}`);
    t.is(summary.tokensUsed, ref.summary.tokensUsed, `${label}: tokens`);
    t.is(summary.tasksCompleted, 4, label);
    t.is(summary.prsMerged, 4, label);

    // git: the same program, the same history, nothing done twice.
    t.is(print.mainTree, ref.print.mainTree, `${label}: main^{tree}`);
    t.deepEqual(print.mergeSubjects, ref.print.mergeSubjects, `${label}: merge subjects`);
    t.deepEqual(print.mergeParents, [2, 2, 2, 2], `${label}: every merge has 2 parents`);
    t.is(print.commitsOnMain, ref.print.commitsOnMain, `${label}: commits on main`);
    t.is(print.firstParentCommits, ref.print.firstParentCommits, `${label}: first-parent commits`);
    t.is(print.commitsOnAllBranches, ref.print.commitsOnAllBranches, `${label}: commits on all branches`);
    t.deepEqual(print.branches, ref.print.branches, `${label}: branches`);
    t.deepEqual(print.stepTrailers, ref.print.stepTrailers, `${label}: each step committed exactly once`);
    t.is(print.worktrees, ref.print.worktrees, `${label}: leftover worktrees`);
    t.is(print.statusPorcelain, '', `${label}: git status`);

    // database: the same PRs, tasks, reviews; no model reply paid for twice.
    t.deepEqual(print.prs, ref.print.prs, `${label}: PRs`);
    t.true(print.prs.every((pr) => pr.status === 'merged'), `${label}: all PRs merged`);
    t.deepEqual(print.tasks, ref.print.tasks, `${label}: tasks`);
    t.true(print.tasks.every((task) => task.status === 'merged'), `${label}: all tasks merged`);
    t.deepEqual(print.reviews, ref.print.reviews, `${label}: reviews`);
    t.deepEqual(print.testRuns, ref.print.testRuns, `${label}: test runs`);
    t.is(print.maxOkPerKey, 1, `${label}: a call key with two ok replies`);
    t.is(print.okCalls, 14, `${label}: ok calls`);
    t.deepEqual(print.okCallKeys, ref.print.okCallKeys, `${label}: ok call keys`);
    t.is(summary.modelCalls, print.callRows, `${label}: modelCalls counts every row sent`);
    const leftovers = withDb(run.target, (db) =>
      db.prepare(`SELECT call_key, status FROM model_calls WHERE status != 'ok'`).all() as { call_key: string; status: string }[]);
    for (const row of leftovers) {
      t.is(row.status, 'sent', `${label}: ${row.call_key} ended ${row.status}`);
      t.true(print.okCallKeys.includes(row.call_key), `${label}: interrupted call ${row.call_key} was completed later`);
    }
    t.deepEqual(print.effects, ref.print.effects, `${label}: effects journal`);
    t.deepEqual(print.journal, ref.print.journal, `${label}: the inter-agent journal holds each message once, in order`);
  }
});

/**
 * The power cut of schedule E's first kill point, made deterministic. Measured (git 2.39): a
 * process group killed inside `git worktree add -b` can leave the branch created, the worktree
 * folder holding only its `.git` file, and the admin folder `.git/worktrees/T1` with `locked`
 * ("initializing"), `gitdir`, a zero `HEAD` and an EMPTY `commondir`: git was killed between
 * creating that file and writing it. In that state `git worktree list` (and `git branch`) fail
 * with "fatal: failed to read .git/worktrees/T1/commondir", and `git worktree prune` keeps the
 * entry because it is locked. The test kills the demo with the whole group as soon as the admin
 * folder appears, puts the folder into exactly that measured state (the kill lands at a slightly
 * different moment each time), and resumes: the run must repair it and finish like any other.
 */
test.serial('a power cut inside `git worktree add` (commondir created, not yet written) is repaired on resume', async (t) => {
  t.timeout(240_000);
  const target = newTarget('torture-worktree');
  const admin = path.join(target, '.git', 'worktrees', 'T1');
  const first = await cliAsync(['demo', '--target', target, '--replay-delay-ms', '0', '--json', ...FREE_PORT], {
    kill: { label: 'power cut during `git worktree add` of T1', group: true, poll: () => fs.existsSync(admin) },
    timeoutMs: 150_000,
  });
  t.true(first.killed, `the kill point came: ${first.stderr}`);
  const runs = await listRunsAsync(target);
  t.is(runs.length, 1);
  const runId = (runs[0] as RunSummaryJson).runId;

  // The measured state (see above); the branch is created first by `worktree add -b`.
  const worktree = path.join(target, '.duo-agent', 'worktrees', 'T1');
  const branchRef = path.join(target, '.git', 'refs', 'heads', 'duo-agent', 'feature', 'T1');
  if (!fs.existsSync(branchRef)) {
    fs.mkdirSync(path.dirname(branchRef), { recursive: true });
    fs.writeFileSync(branchRef, `${fs.readFileSync(path.join(target, '.git', 'refs', 'heads', 'main'), 'utf8').trim()}\n`);
  }
  fs.rmSync(worktree, { recursive: true, force: true });
  fs.mkdirSync(worktree, { recursive: true });
  fs.rmSync(admin, { recursive: true, force: true });
  fs.mkdirSync(admin, { recursive: true });
  fs.writeFileSync(path.join(admin, 'locked'), 'initializing\n');
  fs.writeFileSync(path.join(admin, 'gitdir'), `${fs.realpathSync(worktree)}/.git\n`);
  fs.writeFileSync(path.join(admin, 'commondir'), '');
  fs.writeFileSync(path.join(admin, 'HEAD'), `${'0'.repeat(40)}\n`);
  fs.writeFileSync(path.join(worktree, '.git'), `gitdir: ${fs.realpathSync(admin)}\n`);

  const resumed = await cliAsync(['--resume', runId, '--target', target, '--json', ...FREE_PORT], { timeoutMs: 150_000 });
  t.log(resumed.stderr.split('\n').filter((line) => /recovered|error|limit|interrupted/.test(line)).join('\n'));
  t.is(resumed.code, 0, resumed.stderr);
  const summary = parseSummary(resumed.stdout);
  t.is(summary.outcome, 'done', summary.reason ?? '');
  t.is(summary.prsMerged, 4);
  const print = await fingerprint(target, runId);
  t.is(print.worktrees, 1);
  t.true(Object.values(print.stepTrailers).every((count) => count === 1), JSON.stringify(print.stepTrailers));
  t.is(print.okCalls, 14);
});
