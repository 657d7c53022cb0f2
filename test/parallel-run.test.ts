/**
 * Whole runs of the real CLI with tasks in parallel, against a loopback OpenAI-compatible model
 * and real git: two tasks that change the same line of one file, implemented side by side. The
 * first to be approved merges; the other's branch no longer merges cleanly, and the merge queue
 * sends it back, either for a revision that resolves the conflict (the markers in the files it is
 * shown) or, with `limits.max_conflict_rounds: 0`, for a re-implementation on a fresh branch from
 * the new base. Which of the two merges first is up to timing; the assertions hold either way.
 */
import test from 'ava';
import { cliAsync, git, parseSummary, removeTargets, repositoryWith, withDb } from './helpers/cli.ts';
import { startFakeOpenAI } from './fakes/openai-api.ts';
import { taskModel, type Ask, type Change, type TaskModel } from './fakes/task-model.ts';

test.after(() => removeTargets());

const BASE = "export const greet = (name) => 'hello ' + name;\n";
const RESOLVED = "export const greet = (name) => 'Hello ' + name + '!';\n";
const versions: Record<string, string> = {
  T1: "export const greet = (name) => 'Hello ' + name;\n",
  T2: "export const greet = (name) => 'hello ' + name + '!';\n",
};
const tests: Record<string, string> = {
  T1: "import { test } from 'node:test';\nimport assert from 'node:assert/strict';\nimport { greet } from '../greet.js';\n\ntest('capitalised', () => assert.ok(greet('Ada').startsWith('Hello ')));\n",
  T2: "import { test } from 'node:test';\nimport assert from 'node:assert/strict';\nimport { greet } from '../greet.js';\n\ntest('exclaimed', () => assert.ok(greet('Ada').endsWith('!')));\n",
};

/** Each task's own version of the line; once it has seen the other's (a conflict, or a new base), both. */
function change(ask: Ask, sawOther: (ask: Ask) => boolean): Change {
  const content = sawOther(ask) ? RESOLVED : (versions[ask.taskId] ?? BASE);
  return { summary: `${ask.taskId}: greet ${sawOther(ask) ? 'capitalised and exclaimed' : ask.taskId === 'T1' ? 'capitalised' : 'exclaimed'}`, files: [{ path: 'greet.js', content }, { path: `test/${ask.taskId.toLowerCase()}.test.js`, content: tests[ask.taskId] ?? '' }] };
}

function repo(name: string, limits: Record<string, unknown>): string {
  return repositoryWith(name, {
    'package.json': `${JSON.stringify({ name: 'greet', version: '1.0.0', type: 'module', scripts: { test: 'node --test' } }, null, 2)}\n`,
    'greet.js': BASE,
  }, {
    project: { name: 'greet', language: 'javascript', test_command: 'node --test' },
    model: { provider: 'openai', max_retries: 0 },
    agents: { moderator: { parallel_reviews: 2 } },
    limits: { max_parallel_tasks: 2, max_improvement_cycles: 0, ...limits },
  });
}

async function runWith(t: { teardown(fn: () => Promise<void>): void }, target: string, model: TaskModel) {
  const fake = await startFakeOpenAI(model.script);
  t.teardown(() => fake.close());
  return cliAsync(['Two changes to greet: capitalise it (T1) and end it with "!" (T2).', '--target', target, '-y', '--json', '--port', '0'], {
    env: { OPENAI_API_KEY: 'sk-local', OPENAI_BASE_URL: `${fake.url}/v1` }, timeoutMs: 150_000,
  });
}

const plan = [{ id: 'T1', title: 'capitalise greet' }, { id: 'T2', title: 'exclaim greet' }];

interface PrRow { task_id: string; branch: string; status: string; revision: number }

test('two tasks changing the same line: the second goes back with the conflict, its revision resolves it, both merge once', async (t) => {
  const target = repo('parallel-conflict', {});
  const model = taskModel({ plan, delayMs: 50, change: (ask) => change(ask, (seen) => seen.purpose === 'revise') });
  const result = await runWith(t, target, model);
  t.is(result.code, 0, result.stderr);
  const summary = parseSummary(result.stdout);
  t.is(summary.outcome, 'done');
  t.is(summary.prsMerged, 2);

  // Both implemented from the same base, at once.
  t.deepEqual(model.asks.filter((ask) => ask.purpose === 'implement').map((ask) => ask.taskId).sort(), ['T1', 'T2']);
  const revisions = model.asks.filter((ask) => ask.purpose === 'revise');
  t.is(revisions.length, 1, 'one revision: the task that lost the race');
  const loser = revisions[0]?.taskId ?? '';
  const winner = loser === 'T1' ? 'T2' : 'T1';
  t.regex(revisions[0]?.prompt ?? '', /<<<<<<<[\s\S]*=======[\s\S]*>>>>>>>/, 'the revision is shown the conflict markers');
  t.regex(revisions[0]?.prompt ?? '', /conflicts with main in greet\.js/);
  t.regex(result.stderr, new RegExp(`merge queue: ${loser}: PR #\\d+ conflicts with main in greet\\.js; not merged`));

  t.is(git(target, 'show', 'main:greet.js'), RESOLVED.trimEnd());
  t.truthy(git(target, 'show', 'main:test/t1.test.js'));
  t.truthy(git(target, 'show', 'main:test/t2.test.js'));
  const merges = git(target, 'log', '--first-parent', '--merges', '--format=%s', 'main').split('\n');
  t.is(merges.length, 2, merges.join('\n'));
  t.is(merges.filter((subject) => subject.includes(`(${winner})`)).length, 1);
  t.is(merges.filter((subject) => subject.includes(`(${loser})`)).length, 1);

  const { prs, reviews } = withDb(target, (db) => ({
    prs: db.prepare('SELECT task_id, branch, status, revision FROM pull_requests ORDER BY task_id').all() as PrRow[],
    reviews: db.prepare('SELECT task_id, attempt, verdict, summary FROM reviews ORDER BY id').all() as { task_id: string; attempt: number; verdict: string; summary: string }[],
  }));
  t.deepEqual(prs.map((pr) => [pr.task_id, pr.status]), [['T1', 'merged'], ['T2', 'merged']], 'one PR per task, each merged');
  t.is(prs.find((pr) => pr.task_id === loser)?.revision, 2);
  const conflict = reviews.find((review) => review.task_id === loser && review.verdict === 'request_changes');
  t.regex(conflict?.summary ?? '', /conflicts with main in greet\.js/);
  t.deepEqual(reviews.filter((review) => review.verdict === 'approve').map((review) => `${review.task_id}#${review.attempt}`).sort(), [`${loser}#2`, `${winner}#1`].sort());
  t.deepEqual(git(target, 'for-each-ref', '--format=%(refname:short)', 'refs/heads/').split('\n').sort(), ['duo-agent/feature/T1', 'duo-agent/feature/T2', 'main']);
});

test('with max_conflict_rounds 0 the conflicting task is re-implemented on a fresh branch from the new base; its first PR is closed', async (t) => {
  const target = repo('parallel-reimplement', { max_conflict_rounds: 0 });
  // The second implement of a task is the re-implementation: it sees the other task's change in the base.
  const model = taskModel({ plan, delayMs: 50, change: (ask) => change(ask, (seen) => seen.nth > 0) });
  const result = await runWith(t, target, model);
  t.is(result.code, 0, result.stderr);
  const summary = parseSummary(result.stdout);
  t.is(summary.outcome, 'done');
  t.is(summary.tasksCompleted, 2);

  t.deepEqual(model.asks.filter((ask) => ask.purpose === 'revise'), [], 'no revision: straight to a fresh branch');
  const again = model.asks.filter((ask) => ask.purpose === 'implement' && ask.nth === 1);
  t.is(again.length, 1);
  const loser = again[0]?.taskId ?? '';
  t.regex(again[0]?.prompt ?? '', /greet/);
  t.notRegex(again[0]?.prompt ?? '', /<<<<<<</, 'a fresh branch from the new base: no conflict to resolve');
  t.regex(result.stderr, new RegExp(`${loser}: PR #\\d+ closed: the task starts again on a fresh branch`));
  t.regex(result.stderr, new RegExp(`branch duo-agent/feature/${loser}-r2, re-implemented from the current main`));

  t.is(git(target, 'show', 'main:greet.js'), RESOLVED.trimEnd());
  const prs = withDb(target, (db) => db.prepare('SELECT task_id, branch, status, revision FROM pull_requests ORDER BY number').all() as PrRow[]);
  const ofLoser = prs.filter((pr) => pr.task_id === loser);
  t.deepEqual(ofLoser.map((pr) => [pr.branch, pr.status]), [[`duo-agent/feature/${loser}`, 'closed'], [`duo-agent/feature/${loser}-r2`, 'merged']]);
  t.is(prs.filter((pr) => pr.status === 'merged').length, 2);
  const branches = git(target, 'for-each-ref', '--format=%(refname:short)', 'refs/heads/').split('\n');
  t.true(branches.includes(`duo-agent/feature/${loser}`), 'the first branch is kept for people to read');
  const merges = git(target, 'log', '--first-parent', '--merges', '--format=%s', 'main').split('\n');
  t.is(merges.length, 2, merges.join('\n'));
});
