/**
 * The whole product, end to end: `moderator demo` replays the recorded TODO CLI session into a
 * fresh repository, and everything it claims to have done is checked in git, in the generated
 * program, in the database and in the logs.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import {
  FREE_PORT, cleanEnv, cliAsync, cliSync, fingerprint, git, listRuns, newTarget, parseSummary, removeTargets, readDemoSession, sessionCallCount, sessionTokens, withDb,
  type RunSummaryJson,
} from './helpers/cli.ts';

interface DemoRun {
  target: string;
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
  summary: RunSummaryJson;
}

let demo: DemoRun | undefined;

test.before(async () => {
  const target = newTarget('e2e');
  const run = await cliAsync(['demo', '--target', target, '--replay-delay-ms', '0', '--json', ...FREE_PORT], { timeoutMs: 150_000 });
  let summary: RunSummaryJson;
  try {
    summary = parseSummary(run.stdout);
  } catch (error) {
    throw new Error(`the demo printed no summary (exit ${run.code}, signal ${run.signal}): ${(error as Error).message}\n${run.stderr}`);
  }
  demo = { target, code: run.code, stdout: run.stdout, stderr: run.stderr, ms: run.ms, summary };
});

// The temp folders go when everything passed; a failure keeps them to look at.
test.after(() => removeTargets());

function theDemo(): DemoRun {
  if (!demo) throw new Error('the demo did not run');
  return demo;
}

test.serial('the demo exits 0 with a JSON summary of the whole run', (t) => {
  const { code, summary, stderr, target, ms } = theDemo();
  t.log(`demo took ${ms} ms (run time ${summary.durationMs} ms)`);
  t.is(code, 0, stderr);
  t.is(summary.outcome, 'done');
  // Done says why the work ended: the improvement cycles ran dry on their measured priority.
  t.is(summary.reason, 'every task merged; improvement cycle 2 found nothing worth a task (best priority 1, below agents.ever_thinker.min_priority 3)');
  t.is(summary.phase, 'stopped');
  t.is(summary.provider, 'replay');
  t.is(summary.target, target);
  t.is(summary.tasksTotal, 4);
  t.is(summary.tasksCompleted, 4);
  t.is(summary.prsMerged, 4);
  t.is(sessionCallCount(), 14, 'the recording holds 14 calls');
  t.is(summary.modelCalls, 14);
  t.is(summary.tokensUsed, sessionTokens(readDemoSession()));
  const { byAgent, byTask } = summary;
  t.deepEqual(Object.fromEntries(Object.entries(byAgent).map(([agent, line]) => [agent, line.calls])), { 'ever-thinker': 2, moderator: 7, techlead: 5 });
  t.is(Object.values(byAgent).reduce((sum, line) => sum + line.tokens, 0), summary.tokensUsed, 'per-agent tokens add up to the run');
  t.is(byTask.T2?.calls, 4, 'T2: implement, first review, revision, second review');
  t.true(summary.durationMs > 0, `durationMs ${summary.durationMs}`);
  t.is(summary.sessions, 1);
  t.regex(summary.runId, /^\d{8}-\d{6}-[0-9a-f]{6}$/);
});

test.serial('progress goes to stderr, and stdout holds nothing but the JSON line', (t) => {
  const { stdout, stderr } = theDemo();
  t.is(stdout.trim().split('\n').length, 1);
  for (const expected of [
    /model moderator clarify/, /plan: 3 tasks/, /model techlead implement T1/, /T1: committed/, /T1: tests passed/, /PR #1 opened/,
    /review T2 round 1: changes requested/, /model techlead revise T2/, /PR #2 updated \(revision 2\)/, /merged PR #4 \(T4\)/,
    /improvement cycle 1: 2 idea\(s\), 1 worth a task/, /improvement cycle 2: 2 idea\(s\), 0 worth a task/,
  ]) {
    t.regex(stderr, expected);
  }
  t.notRegex(stderr, /reply taken from the journal/, 'a single uninterrupted session never needs the journal');
});

test.serial('main holds the generated program, merged through 4 two-parent merge commits, and the work tree is clean', (t) => {
  const { target } = theDemo();
  const files = git(target, 'ls-tree', '-r', '--name-only', 'main').split('\n');
  for (const file of ['package.json', 'src/store.js', 'src/cli.js', 'bin/todo.js', 'README.md']) t.true(files.includes(file), `${file} on main: ${files.join(', ')}`);
  const tests = files.filter((file) => /^test\/[^/]+\.test\.js$/.test(file));
  t.true(tests.length >= 2, `test files on main: ${tests.join(', ')}`);
  t.false(files.some((file) => file.startsWith('.duo-agent')), 'Moderator state is never committed');

  const merges = git(target, 'log', 'main', '--merges', '--format=%H %P%x09%s').split('\n').filter((line) => line !== '');
  t.is(merges.length, 4, merges.join('\n'));
  for (const merge of merges) t.is((merge.split('\t')[0] ?? '').trim().split(' ').length, 3, `2 parents: ${merge}`);
  t.deepEqual(
    merges.map((merge) => merge.split('\t')[1]).reverse(),
    [
      'Merge PR #1: feature(T1): Todo store module',
      'Merge PR #2: feature(T2): CLI commands',
      'Merge PR #3: docs(T3): README with usage',
      'Merge PR #4: fix(T4): Handle a corrupted todo file',
    ],
  );
  const trailers = git(target, 'log', 'main', '--format=%(trailers:key=Moderator-Step,valueonly)').split('\n').filter((line) => line.trim() !== '').sort();
  t.deepEqual(trailers, ['commit:T1:1', 'commit:T2:1', 'commit:T2:2', 'commit:T3:1', 'commit:T4:1', 'merge:T1', 'merge:T2', 'merge:T3', 'merge:T4']);
  t.is(git(target, 'branch', '--show-current'), 'main');
  t.deepEqual(
    git(target, 'for-each-ref', '--format=%(refname:short)', 'refs/heads/').split('\n').sort(),
    ['duo-agent/docs/T3', 'duo-agent/feature/T1', 'duo-agent/feature/T2', 'duo-agent/fix/T4', 'main'],
  );
  t.is(git(target, 'status', '--porcelain'), '', 'nothing uncommitted or untracked');
  const exclude = fs.readFileSync(path.join(target, '.git', 'info', 'exclude'), 'utf8');
  t.true(exclude.split('\n').includes('.duo-agent/'), exclude);
  t.is(fs.existsSync(path.join(target, '.gitignore')), false, "the user's .gitignore is not touched");
  t.is(git(target, 'worktree', 'list', '--porcelain').split('\n').filter((line) => line.startsWith('worktree ')).length, 1, 'every task worktree was removed');
  t.is(git(target, 'rev-parse', 'main^{tree}'), git(target, 'write-tree'), 'the index matches main');
});

test.serial("the generated program's own tests pass in the target", (t) => {
  const { target } = theDemo();
  const result = spawnSync(process.execPath, ['--test', 'test/'], { cwd: target, env: cleanEnv(), encoding: 'utf8', timeout: 120_000 });
  t.is(result.status, 0, `${result.stdout}\n${result.stderr}`);
  t.regex(result.stdout, /# fail 0/);
  t.is(git(target, 'status', '--porcelain'), '', "the program's tests leave the repository clean");
});

test.serial('the database holds 4 merged PRs, one change request, test runs and the inter-agent journal', async (t) => {
  const { target, summary } = theDemo();
  const print = await fingerprint(target, summary.runId);
  t.deepEqual(print.prs, [
    { taskId: 'T1', status: 'merged', revision: 1 },
    { taskId: 'T2', status: 'merged', revision: 2 },
    { taskId: 'T3', status: 'merged', revision: 1 },
    { taskId: 'T4', status: 'merged', revision: 1 },
  ]);
  t.deepEqual(print.tasks, [
    { id: 'T1', status: 'merged', attempts: 1 },
    { id: 'T2', status: 'merged', attempts: 2 },
    { id: 'T3', status: 'merged', attempts: 1 },
    { id: 'T4', status: 'merged', attempts: 1 },
  ]);
  t.deepEqual(print.reviews.filter((review) => review.verdict === 'request_changes'), [{ taskId: 'T2', attempt: 1, verdict: 'request_changes' }]);
  t.is(print.reviews.length, 5);
  t.true(print.reviews.every((review) => review.verdict === 'approve' || (review.taskId === 'T2' && review.attempt === 1)));
  t.deepEqual(print.testRuns, [
    { taskId: 'T1', attempt: 1, passed: 1 },
    { taskId: 'T2', attempt: 1, passed: 1 },
    { taskId: 'T2', attempt: 2, passed: 1 },
    { taskId: 'T3', attempt: 1, passed: 1 },
    { taskId: 'T4', attempt: 1, passed: 1 },
  ]);
  t.is(print.okCalls, 14);
  t.is(print.callRows, 14, 'no call was sent twice or failed');
  t.is(print.maxOkPerKey, 1);
  t.true(print.effects.every((effect) => effect.status === 'done'), JSON.stringify(print.effects));

  const journal = withDb(target, (db) =>
    db.prepare('SELECT from_actor AS "from", to_actor AS "to", type, payload_json AS payload FROM messages WHERE run_id = ? ORDER BY seq').all(summary.runId) as {
      from: string; to: string; type: string; payload: string;
    }[]);
  const has = (type: string, from: string, to: string) =>
    t.true(journal.some((message) => message.type === type && message.from === from && message.to === to), `${from} -> ${to}: ${type} in the journal`);
  has('task.assigned', 'orchestrator', 'techlead-1');
  has('pr.submitted', 'techlead-1', 'orchestrator');
  has('review.requested', 'orchestrator', 'moderator');
  has('review.changes_requested', 'moderator', 'orchestrator');
  has('task.feedback', 'orchestrator', 'techlead-1');
  has('pr.approved', 'moderator', 'orchestrator');
  has('merge.requested', 'orchestrator', 'mergeQueue');
  has('pr.merged', 'mergeQueue', 'orchestrator');
  has('improvements.proposed', 'everThinker', 'orchestrator');
  has('improvements.exhausted', 'everThinker', 'orchestrator');
  t.is(journal.filter((message) => message.type === 'pr.merged').length, 4);
  t.is(journal.filter((message) => message.type === 'task.assigned').length, 4);
  t.is(journal.filter((message) => message.type === 'pr.submitted').length, 5);
  const changes = journal.filter((message) => message.type === 'review.changes_requested');
  t.is(changes.length, 1);
  t.like(JSON.parse(changes[0]?.payload ?? '{}') as object, { taskId: 'T2', attempt: 1 });
  t.is(journal.at(-1)?.type, 'improvements.exhausted');

  const run = withDb(target, (db) => db.prepare('SELECT status, outcome, phase, pid FROM runs WHERE id = ?').get(summary.runId));
  t.deepEqual(run, { status: 'finished', outcome: 'done', phase: 'stopped', pid: null });
  const snapshot = withDb(target, (db) => db.prepare('SELECT status, writes FROM snapshots WHERE run_id = ?').get(summary.runId) as { status: string; writes: number });
  t.is(snapshot.status, 'done');
  t.true(snapshot.writes > 10, `${snapshot.writes} checkpoint writes`);
});

test.serial('every agent writes its own JSON-lines log bound to the run', (t) => {
  const { target, summary } = theDemo();
  const dir = path.join(target, '.duo-agent', 'logs');
  for (const agent of ['moderator', 'techlead', 'ever-thinker', 'orchestrator']) {
    const file = path.join(dir, `${agent}.jsonl`);
    t.true(fs.existsSync(file), `${file} exists`);
    const lines = fs.readFileSync(file, 'utf8').split('\n').filter((line) => line !== '');
    t.true(lines.length > 0, `${agent}.jsonl is not empty`);
    for (const line of lines) {
      const record = JSON.parse(line) as { runId?: string; agent?: string; msg?: string; time?: number };
      t.is(record.runId, summary.runId, `${agent}: ${line.slice(0, 200)}`);
      t.is(record.agent, agent);
      t.is(typeof record.time, 'number');
    }
  }
  const moderatorLog = fs.readFileSync(path.join(dir, 'moderator.jsonl'), 'utf8');
  t.regex(moderatorLog, /"callKey":"moderator:review:T2:1"/);
  t.regex(fs.readFileSync(path.join(dir, 'orchestrator.jsonl'), 'utf8'), /"type":"task.assigned"/);
});

test.serial('`runs --json` lists the finished run', (t) => {
  const { target, summary } = theDemo();
  const runs = listRuns(target);
  t.is(runs.length, 1);
  t.like(runs[0], { runId: summary.runId, outcome: 'done', status: 'finished', tasksCompleted: 4, prsMerged: 4, modelCalls: 14 });
});

test.serial('resuming a finished run is a no-op that prints the summary and exits 0', (t) => {
  const { target, summary } = theDemo();
  const head = git(target, 'rev-parse', 'main');
  const callsBefore = withDb(target, (db) => (db.prepare('SELECT COUNT(*) AS n FROM model_calls').get() as { n: number }).n);
  const again = cliSync(['--resume', summary.runId, '--target', target, '--json', ...FREE_PORT]);
  t.is(again.code, 0, again.stderr);
  t.deepEqual(parseSummary(again.stdout), summary);
  t.regex(again.stderr, /has already finished; nothing to resume/);
  t.is(git(target, 'rev-parse', 'main'), head);
  t.is(withDb(target, (db) => (db.prepare('SELECT COUNT(*) AS n FROM model_calls').get() as { n: number }).n), callsBefore);
  t.is(git(target, 'status', '--porcelain'), '');
});

test.serial('resuming an unknown run exits 2 with one line on stderr', (t) => {
  const { target, summary } = theDemo();
  const result = cliSync(['--resume', 'nonexistent', '--target', target]);
  t.is(result.code, 2);
  t.is(result.stdout, '');
  const lines = result.stderr.split('\n').filter((line) => line.trim() !== '');
  t.is(lines.length, 1, result.stderr);
  t.regex(lines[0] ?? '', new RegExp(`^moderator: unknown run nonexistent in .*${summary.runId}`));
});

test.serial('the demo refuses a target that is not empty, with exit 2, and touches nothing', (t) => {
  const { target } = theDemo();
  const head = git(target, 'rev-parse', 'main');
  const result = cliSync(['demo', '--target', target, '--json']);
  t.is(result.code, 2);
  t.is(result.stdout, '');
  const lines = result.stderr.split('\n').filter((line) => line.trim() !== '');
  t.is(lines.length, 1, result.stderr);
  t.regex(lines[0] ?? '', /already holds a run: continue it with --resume/);
  t.is(git(target, 'rev-parse', 'main'), head);
  t.is(listRuns(target).length, 1);

  const other = newTarget('e2e-nonempty');
  fs.mkdirSync(other, { recursive: true });
  fs.writeFileSync(path.join(other, 'notes.txt'), 'mine');
  const refused = cliSync(['demo', '--target', other]);
  t.is(refused.code, 2);
  t.deepEqual(fs.readdirSync(other), ['notes.txt']);
  t.is(fs.readFileSync(path.join(other, 'notes.txt'), 'utf8'), 'mine');
});
