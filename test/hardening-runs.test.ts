/**
 * Hardening of whole runs (issue 9): a signal during a test run, two runs started at the same
 * instant on one target, a lost WAL, a full disk. Each drives the real CLI on the bundled demo and
 * compares what it leaves with an uninterrupted run, as the crash torture does.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import {
  FREE_PORT, bin, cleanEnv, cliAsync, dbPath, dbPoll, demoSessionFile, fingerprint, listRunsAsync, newTarget, parseSummary, readDemoSession, removeTargets, root, withDb,
  type KillPoint, type RunFingerprint, type RunSummaryJson,
} from './helpers/cli.ts';

test.after(() => removeTargets());

/** Demo runs spawn `node --test`; the machine has 2 cores: at most two runs at a time across this file. */
let running = 0;
const waiting: (() => void)[] = [];
async function slot<T>(work: () => Promise<T>): Promise<T> {
  if (running >= 2) await new Promise<void>((resolve) => waiting.push(resolve));
  running += 1;
  try {
    return await work();
  } finally {
    running -= 1;
    waiting.shift()?.();
  }
}

interface Finished {
  runId: string;
  summary: RunSummaryJson;
  print: RunFingerprint;
}

let referenceRun: Promise<Finished> | undefined;
/** An uninterrupted demo, once for the whole file: what every interrupted one must end up as. */
function reference(): Promise<Finished> {
  referenceRun ??= slot(async () => {
    const target = newTarget('hardening-ref');
    const run = await cliAsync(['demo', '--target', target, '--json', ...FREE_PORT], { timeoutMs: 150_000 });
    if (run.code !== 0) throw new Error(`the reference run exited ${run.code ?? run.signal}:\n${run.stderr}`);
    const summary = parseSummary(run.stdout);
    return { runId: summary.runId, summary, print: await fingerprint(target, summary.runId) };
  });
  return referenceRun;
}

/** Resumes a run until it ends by itself, and reads what it left. */
async function resumeToEnd(target: string, runId: string): Promise<{ stderr: string; finished: Finished }> {
  const resumed = await slot(() => cliAsync(['--resume', runId, '--target', target, '--json', ...FREE_PORT], { timeoutMs: 150_000 }));
  if (resumed.code !== 0) throw new Error(`the resume exited ${resumed.code ?? resumed.signal}:\n${resumed.stderr}`);
  const summary = parseSummary(resumed.stdout);
  return { stderr: resumed.stderr, finished: { runId, summary, print: await fingerprint(target, runId) } };
}

/** What a run that was interrupted and resumed must share with the uninterrupted one: the same git history and the same work, each step done once. */
function assertSameWork(t: ExecutionContext, print: RunFingerprint, ref: RunFingerprint, label: string): void {
  t.is(print.mainTree, ref.mainTree, `${label}: main^{tree}`);
  t.deepEqual(print.mergeSubjects, ref.mergeSubjects, `${label}: one merge per task`);
  t.is(print.commitsOnMain, ref.commitsOnMain, `${label}: commits on main`);
  t.is(print.commitsOnAllBranches, ref.commitsOnAllBranches, `${label}: commits on all branches`);
  t.deepEqual(print.stepTrailers, ref.stepTrailers, `${label}: each step committed exactly once`);
  t.deepEqual(print.branches, ref.branches, `${label}: branches`);
  t.is(print.statusPorcelain, '', `${label}: git status`);
  t.deepEqual(print.prs, ref.prs, `${label}: one PR per task, merged, no extra revision`);
  t.deepEqual(print.tasks, ref.tasks, `${label}: tasks and their attempts`);
  t.deepEqual(print.reviews, ref.reviews, `${label}: review rounds`);
  t.is(print.maxOkPerKey, 1, `${label}: a call key with two ok replies`);
}

/**
 * Holds while a test run of the target is in progress: a `node --test` process working in one of
 * the target's task worktrees (found by its working folder, or in its bwrap command line when the
 * test runs sandboxed). /proc is read at most every 20 ms.
 */
function testRunning(target: string): Pick<KillPoint, 'poll'> {
  const worktrees = path.join(stateDirOf(target), 'worktrees');
  let last = 0;
  return {
    poll: () => {
      if (Date.now() - last < 20 || !fs.existsSync(worktrees)) return false;
      last = Date.now();
      for (const pid of fs.readdirSync('/proc')) {
        if (!/^\d+$/.test(pid)) continue;
        try {
          const command = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
          if (!command.includes('--test')) continue;
          if (command.some((arg) => arg.startsWith(worktrees)) || fs.readlinkSync(`/proc/${pid}/cwd`).startsWith(worktrees)) return true;
        } catch {
          // Gone meanwhile, or not ours to read.
        }
      }
      return false;
    },
  };
}

function stateDirOf(target: string): string {
  return path.join(target, '.duo-agent');
}

for (const [signal, group, how] of [['SIGTERM', false, 'kill <pid>'], ['SIGINT', true, 'Ctrl-C: the foreground process group']] as const) {
  test(`${signal} (${how}) during a test run, then --resume: the same result as an uninterrupted run, no aborted test run recorded, no extra review round`, async (t) => {
    t.timeout(300_000);
    const ref = await reference();
    const target = newTarget(`hardening-${signal.toLowerCase()}`);
    const first = await slot(() => cliAsync(['demo', '--target', target, '--json', ...FREE_PORT], {
      kill: { label: `${signal} mid test run`, ...testRunning(target), signal, group },
      timeoutMs: 150_000,
    }));
    t.true(first.killed, `the test run was never seen: ${first.stderr}`);
    t.is(first.code, 130, first.stderr);
    t.regex(first.stderr, /interrupted: continue with {2}npm start -- --resume \S+ /);
    // The signal came while the tests ran: their result was never printed.
    t.notRegex(first.stderr, /T1: tests (passed|failed)/, 'the signal came after the test run had ended');
    const runs = await listRunsAsync(target);
    t.is(runs.length, 1);
    const runId = (runs[0] as RunSummaryJson).runId;
    // Nothing of the cut-short run is journaled as its outcome.
    t.deepEqual(withDb(target, (db) => db.prepare('SELECT task_id, passed, output FROM test_runs').all()), [], 'an interrupted test run was recorded');

    const { finished } = await resumeToEnd(target, runId);
    t.is(finished.summary.outcome, 'done');
    t.is(finished.summary.prsMerged, 4);
    assertSameWork(t, finished.print, ref.print, signal);
    t.deepEqual(finished.print.testRuns, ref.print.testRuns, `${signal}: test runs`);
    t.deepEqual(withDb(target, (db) => db.prepare(`SELECT task_id FROM test_runs WHERE output LIKE '%[aborted%'`).all()), []);
    t.deepEqual(finished.print.okCallKeys, ref.print.okCallKeys, `${signal}: the same model calls`);
  });
}

test('two runs started at the same instant on one target: one runs, the other exits 2 with one line, 20 times; a stale lock does not block the next start', async (t) => {
  t.timeout(400_000);
  const { requirements } = readDemoSession();
  const start = (target: string) => [requirements, '--target', target, '-y', '--provider', 'replay', '--replay', demoSessionFile, ...FREE_PORT];
  const problems: string[] = [];
  const refusals = new Set<string>();
  let last: { target: string } | undefined;
  for (let attempt = 1; attempt <= 20; attempt += 1) {
    const target = newTarget(`hardening-race-${attempt}`);
    // Whichever wins is killed once the other has exited and the winner's run is stored (to keep it fast).
    const exited = [false, false];
    const contender = (index: number) => {
      const runStored = dbPoll(target, 'SELECT 1 FROM runs');
      return cliAsync(start(target), {
        kill: { label: 'the other one exited', poll: () => exited[1 - index] === true && runStored.poll(), dispose: runStored.dispose },
        timeoutMs: 60_000,
      }).then((result) => {
        exited[index] = true;
        return result;
      });
    };
    const results = await slot(() => Promise.all([contender(0), contender(1)]));
    const losers = results.filter((result) => !result.killed);
    const winners = results.filter((result) => result.killed);
    const runCount = fs.existsSync(dbPath(target)) ? withDb(target, (db) => (db.prepare('SELECT COUNT(*) AS n FROM runs').get() as { n: number }).n) : 0;
    if (runCount !== 1 || losers.length !== 1 || winners.length !== 1) {
      problems.push(`attempt ${attempt}: ${runCount} runs, exits ${results.map((result) => (result.killed ? 'killed' : result.code)).join(' and ')}: ${results.map((result) => result.stderr.trim().split('\n').at(-1)).join(' | ')}`);
      continue;
    }
    const loser = losers[0] as (typeof results)[number];
    const lines = loser.stderr.split('\n').filter((line) => line.trim() !== '');
    if (loser.code !== 2 || lines.length !== 1) problems.push(`attempt ${attempt}: the other process exited ${loser.code} with: ${loser.stderr}`);
    else refusals.add((lines[0] as string).replace(/\d+/g, 'N').replace(/\(process N on \S+, since \S+\)/, '(process N on HOST, since TIME)').replace(/\/tmp\/\S+/g, 'PATH'));
    last = { target };
  }
  t.log(`refusals seen: ${[...refusals].join(' / ')}`);
  t.deepEqual(problems, []);
  for (const refusal of refusals) t.regex(refusal, /^moderator: .*(is using this target|is starting on this target|is still running on this target).*wait for it or stop it first$/);

  // The last winner was killed with SIGKILL: its lock names a process that is gone.
  if (!last) return;
  const lock = JSON.parse(fs.readFileSync(path.join(stateDirOf(last.target), 'run.lock'), 'utf8')) as { pid: number };
  t.throws(() => process.kill(lock.pid, 0), { code: 'ESRCH' }, 'the lock holder is gone');
  const runs = await listRunsAsync(last.target);
  const { finished } = await resumeToEnd(last.target, (runs[0] as RunSummaryJson).runId);
  t.is(finished.summary.outcome, 'done');
  t.is(finished.summary.prsMerged, 4);
  t.false(fs.existsSync(path.join(stateDirOf(last.target), 'run.lock')), 'the lock is released at the end');
});

test('kill -9 after a phase change, moderator.db-wal and -shm deleted: the run is still known, resumes and finishes, one PR merged per task, no duplicate commit', async (t) => {
  t.timeout(300_000);
  const ref = await reference();
  const target = newTarget('hardening-wal');
  const first = await slot(() => cliAsync(['demo', '--target', target, '--json', ...FREE_PORT], {
    // Some writes after the phase change's checkpoint (a commit, a test run, a PR), which the lost WAL takes with it.
    kill: { label: 'after the first PR opened', line: /\]\s+T1: PR #1 opened/, delayMs: 400 },
    timeoutMs: 150_000,
  }));
  t.true(first.killed, first.stderr);
  const wal = `${dbPath(target)}-wal`;
  t.true(fs.existsSync(wal) && fs.statSync(wal).size > 0, 'the killed run left writes in its WAL');
  fs.rmSync(wal);
  fs.rmSync(`${dbPath(target)}-shm`, { force: true });

  const runs = await listRunsAsync(target);
  t.is(runs.length, 1, 'the run is in the main database file');
  const run = runs[0] as RunSummaryJson;
  t.not(run.phase, 'starting', 'the main file holds the run past its first phase change');
  const { stderr, finished } = await resumeToEnd(target, run.runId);
  const recovered = stderr.split('\n').filter((line) => /recovered: |reply taken from the journal/.test(line));
  // What the first process journaled after the phase change went with the WAL: the resume sends those calls again instead of finding them.
  t.log(`killed after: ${first.lastLine ?? ''}; the resume said: ${recovered.join(' | ') || 'no reply taken from the journal, nothing to recover'}`);
  t.is(finished.summary.outcome, 'done');
  t.is(finished.summary.prsMerged, 4);
  t.is(finished.summary.tasksCompleted, 4);
  assertSameWork(t, finished.print, ref.print, 'lost WAL');
});

/**
 * bubblewrap mounts a small tmpfs without root: the target lives on it, the demo fills it. The
 * tmpfs exists only inside bwrap's mount namespace, so it is mounted over a real empty folder, the
 * target copied out (to a real folder through the bind of `/`) before bwrap ends, and moved into
 * that same path outside: the paths stored in the database and in git's worktree files still hold.
 */
function bwrapTmpfsWorks(): { ok: boolean; why: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-bwrap-probe-'));
  try {
    const probe = spawnSync('bwrap', ['--bind', '/', '/', '--dev', '/dev', '--proc', '/proc', '--size', '65536', '--tmpfs', dir, 'sh', '-c', `df -k ${dir} | tail -1`], { encoding: 'utf8', timeout: 10_000 });
    if (probe.error) return { ok: false, why: `bwrap cannot run here (${probe.error.message}): install bubblewrap` };
    if (probe.status !== 0) return { ok: false, why: `bwrap cannot mount a sized tmpfs here: ${probe.stderr.trim()}` };
    return { ok: true, why: '' };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const tmpfs = bwrapTmpfsWorks();
const onSmallDisk = tmpfs.ok ? test : test.skip;
if (!tmpfs.ok) console.log(`skipped: the full-disk tests: ${tmpfs.why}`);

/**
 * Sizes measured on the demo (scripts to find them: run it in `bwrap --size N --tmpfs` for N in
 * steps of 1 kB): 360 kB fills at the first database writes after the run is made, 608-616 kB at
 * the first merge's checkout, 600-604 kB at a ref update (a commit's branch, or a merge's
 * ORIG_HEAD), where git says only "couldn't write". Which write meets the full page moves a little
 * with timing (how far the database's WAL got, which of the tasks in flight commits first), so each
 * place has a few sizes, tried in turn until one stops there; the test fails unless one does.
 * They move when the database or the first tasks' files grow.
 */
const fullDisks: [sizes: number[], what: string, failure: RegExp][] = [
  [[360_000, 356_000, 364_000], 'a database write', /database or disk is full/],
  [[612_000, 608_000, 616_000], 'a git write (checkout of a merge)', /git merge failed .*No space left on device/i],
  [[602_000, 600_000, 604_000], 'a git ref update that does not say why', /couldn't write .*\.lock'; \d+ (bytes|KiB) left on that disk/],
];

/** The demo run inside bwrap on a tmpfs of `bytes`, its target copied out to `out/todo`. */
async function demoOnSmallDisk(bytes: number, mount: string, out: string): Promise<{ code: number; stderr: string; ms: number }> {
  const script = 'node "$1" demo --target "$2/todo" --json --port 0 >"$3/stdout" 2>"$3/stderr"; echo $? >"$3/code"; cp -a "$2/todo" "$3/todo"';
  const inside = await slot(() => new Promise<{ code: number | null; ms: number }>((resolve, reject) => {
    const started = Date.now();
    const child = spawn('bwrap', ['--die-with-parent', '--bind', '/', '/', '--dev', '/dev', '--proc', '/proc', '--size', String(bytes), '--tmpfs', mount, 'sh', '-c', script, 'sh', bin, mount, out], { cwd: root, env: cleanEnv(), stdio: 'ignore' });
    // The bound: a process that hangs on a full disk is killed here, and then has no exit code.
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, ms: Date.now() - started });
    });
  }));
  if (inside.code !== 0) throw new Error(`bwrap did not run the demo and copy the target out (exit ${inside.code})`);
  return { code: Number(fs.readFileSync(path.join(out, 'code'), 'utf8')), stderr: fs.readFileSync(path.join(out, 'stderr'), 'utf8'), ms: inside.ms };
}

for (const [sizes, what, failure] of fullDisks) {
  onSmallDisk(`a full disk at ${what} (${(sizes[0] ?? 0) / 1000} kB tmpfs): the run stops at once with one line and a non-zero exit, and resumes to done once there is space`, async (t) => {
    t.timeout(400_000);
    const ref = await reference();
    const folder = path.dirname(newTarget(`hardening-disk-${sizes[0] ?? 0}`));
    const mount = path.join(folder, 'disk');
    const out = path.join(folder, 'out');
    const target = path.join(mount, 'todo');
    let stopped: { stderr: string; lastLine: string; said: RegExpExecArray } | undefined;
    for (const bytes of sizes) {
      fs.rmSync(mount, { recursive: true, force: true });
      fs.rmSync(out, { recursive: true, force: true });
      fs.mkdirSync(mount);
      fs.mkdirSync(out);
      const { code, stderr, ms } = await demoOnSmallDisk(bytes, mount, out);
      const lastLine = stderr.trim().split('\n').at(-1) ?? '';
      t.log(`${bytes} bytes: exit ${code} after ${ms} ms: ${lastLine}`);
      t.not(code, 0, stderr);
      const said = /^moderator: the disk holding (\S+) is full \((.+)\): free some space, then continue with {2}moderator --resume (\S+) --target (\S+)$/.exec(lastLine);
      t.truthy(said, `the last line names the full disk and --resume: ${lastLine}`);
      t.is(stderr.split('\n').filter((line) => /the disk holding .* is full/.test(line)).length, 1, `one line says so:\n${stderr}`);
      if (said && failure.test(said[2] ?? '')) {
        stopped = { stderr, lastLine, said };
        break;
      }
    }
    if (!stopped) return t.fail(`no size of ${sizes.join(', ')} bytes stopped the run at ${what}`);
    const { said } = stopped;
    t.is(said[1], target);

    // Space again: the target, moved to the same path on a disk with room, resumes to the end.
    fs.renameSync(path.join(out, 'todo'), target);
    const runId = said[3] ?? '';
    const { finished } = await resumeToEnd(target, runId);
    t.is(finished.summary.outcome, 'done');
    t.is(finished.summary.prsMerged, 4);
    assertSameWork(t, finished.print, ref.print, `full disk at ${what}`);
  });
}
