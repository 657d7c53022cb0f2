/**
 * Crash torture with tasks in parallel: a run of four tasks (three independent, one depending on
 * the first, one review asking for changes) with `max_parallel_tasks: 3`, against a loopback
 * OpenAI-compatible model whose every answer takes 150 ms, is killed with SIGKILL while three
 * implement calls are in flight, while PRs open side by side, between a merge and its
 * bookkeeping, mid revision, and in a power cut of the whole process group; resumed each time.
 * The end must equal an uninterrupted run's: the same merged tree, one PR and one merge per task,
 * every step committed once, and no model call sent twice unless a kill cut it off mid-flight,
 * counted both in the run's journal and at the model server itself.
 *
 * Which task merges first varies from run to run (that is what parallel means), so PR numbers
 * and the merge queue's updates are compared as sets, not in order.
 */
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { cliAsync, dbPoll, git, listRunsAsync, parseSummary, removeTargets, repositoryWith, withDb, type KilledResult, type KillPoint, type RunSummaryJson } from './helpers/cli.ts';
import { startFakeOpenAI, type FakeServer, type FakeStep } from './fakes/openai-api.ts';
import { taskModel, type TaskModel } from './fakes/task-model.ts';

test.after(() => removeTargets());

const REQUIREMENTS = 'Four small modules, each with a test; the fourth builds on the first.';

function model(): TaskModel {
  return taskModel({
    delayMs: 150,
    plan: [
      { id: 'T1', title: 'module a' },
      { id: 'T2', title: 'module b' },
      { id: 'T3', title: 'module c' },
      { id: 'T4', title: 'module d on a', depends_on: ['T1'] },
    ],
    change: ({ taskId, purpose }) => {
      const name = { T1: 'a', T2: 'b', T3: 'c', T4: 'd' }[taskId] ?? 'x';
      // T4 uses T1's module: it can only pass once T1 is merged.
      const body = taskId === 'T4' ? `import { a } from './a.js';\nexport const d = () => a() + 3;\n` : `export const ${name} = () => ${name.charCodeAt(0) - 96};\n`;
      const expected = taskId === 'T4' ? 4 : name.charCodeAt(0) - 96;
      const note = purpose === 'revise' ? `/** ${name}() is the module's number, as the review asked. */\n` : '';
      return {
        summary: `${name} with a test${purpose === 'revise' ? ', documented' : ''}`,
        files: [
          { path: `src/${name}.js`, content: `${note}${body}` },
          { path: `test/${name}.test.js`, content: `import { test } from 'node:test';\nimport assert from 'node:assert/strict';\nimport { ${name} } from '../src/${name}.js';\n\ntest('${name}', () => assert.equal(${name}(), ${expected}));\n` },
        ],
      };
    },
    // Decided by what the prompt shows (the round), not by how often it was asked: a review sent
    // again after a kill gets the same verdict.
    review: ({ taskId, prompt }) => (taskId === 'T2' && /review round 1\b/.test(prompt)
      ? { verdict: 'request_changes', summary: 'b() needs a doc comment', comments: ['Document what b() returns.'] }
      : { verdict: 'approve', summary: `${taskId} meets its criteria` }),
  });
}

function newRepo(name: string): string {
  return repositoryWith(name, {
    'package.json': `${JSON.stringify({ name: 'mods', version: '1.0.0', type: 'module', scripts: { test: 'node --test' } }, null, 2)}\n`,
  }, {
    project: { name: 'mods', language: 'javascript', test_command: 'node --test' },
    model: { provider: 'openai', max_retries: 0 },
    agents: { moderator: { parallel_reviews: 2 } },
    limits: { max_parallel_tasks: 3, max_improvement_cycles: 0 },
  });
}

interface Server {
  fake: FakeServer<FakeStep>;
  model: TaskModel;
}

async function server(t: { teardown(fn: () => Promise<void>): void }): Promise<Server> {
  const taught = model();
  const fake = await startFakeOpenAI(taught.script);
  t.teardown(() => fake.close());
  return { fake, model: taught };
}

const cli = (args: string[], at: Server, kill?: KillPoint) =>
  cliAsync([...args, '--json', '--port', '0'], { env: { OPENAI_API_KEY: 'sk-local', OPENAI_BASE_URL: `${at.fake.url}/v1` }, timeoutMs: 150_000, ...(kill ? { kill } : {}) });

/** Requests that asked the model for work (not the start-up check that the endpoint answers). */
const workRequests = (at: Server) => at.fake.requests.filter((request) => !/Reply with the single word: ok/.test(JSON.stringify(request.body))).length;

interface Print {
  tree: string;
  prMerges: string[];
  mergeParents: number[];
  stepCounts: Record<string, number>;
  implementSteps: string[];
  branches: string[];
  worktrees: number;
  status: string;
  prs: { taskId: string; status: string }[];
  tasks: { id: string; status: string; attempts: number }[];
  reviews: string[];
  okCallKeys: string[];
  callRows: number;
}

function print(target: string, runId: string): Print {
  const lines = git(target, 'log', '--first-parent', '--merges', '--format=%P%x09%s', 'main').split('\n').filter((line) => line !== '');
  const stepCounts: Record<string, number> = {};
  for (const line of git(target, 'log', '--branches', '--format=%(trailers:key=Moderator-Step,valueonly)').split('\n')) {
    if (line.trim() !== '') stepCounts[line.trim()] = (stepCounts[line.trim()] ?? 0) + 1;
  }
  return {
    tree: git(target, 'rev-parse', 'main^{tree}'),
    // PR numbers follow the order PRs opened in, which parallel work does not fix.
    prMerges: lines.map((line) => (line.split('\t')[1] ?? '').replace(/#\d+/, '#N')).sort(),
    mergeParents: lines.map((line) => (line.split('\t')[0] ?? '').split(' ').length),
    stepCounts,
    // The merge queue's updates depend on timing (was the base ahead when the PR's turn came?); the TechLeads' steps do not.
    implementSteps: Object.keys(stepCounts).filter((key) => !/(^|:)(update|merge):/.test(key)).sort(),
    branches: git(target, 'for-each-ref', '--format=%(refname:short)', 'refs/heads/').split('\n').filter((line) => line !== '').sort(),
    worktrees: git(target, 'worktree', 'list', '--porcelain').split('\n').filter((line) => line.startsWith('worktree ')).length,
    status: git(target, 'status', '--porcelain'),
    ...withDb(target, (db) => {
      const all = <T>(sql: string): T[] => db.prepare(sql).all(runId) as T[];
      return {
        prs: all<{ task_id: string; status: string }>('SELECT task_id, status FROM pull_requests WHERE run_id = ? ORDER BY task_id, number').map((row) => ({ taskId: row.task_id, status: row.status })),
        tasks: all<{ id: string; status: string; attempts: number }>('SELECT id, status, attempts FROM tasks WHERE run_id = ? ORDER BY id'),
        reviews: all<{ task_id: string; attempt: number; verdict: string }>('SELECT task_id, attempt, verdict FROM reviews WHERE run_id = ? ORDER BY task_id, attempt, id').map((row) => `${row.task_id}#${row.attempt}:${row.verdict}`),
        okCallKeys: all<{ call_key: string }>(`SELECT call_key FROM model_calls WHERE run_id = ? AND status = 'ok' ORDER BY call_key`).map((row) => row.call_key),
        callRows: all<{ n: number }>('SELECT COUNT(*) AS n FROM model_calls WHERE run_id = ?')[0]?.n ?? 0,
      };
    }),
  };
}

const mergedPrs = (target: string): number =>
  withDb(target, (db) => (db.prepare(`SELECT COUNT(*) AS n FROM pull_requests WHERE status = 'merged'`).get() as { n: number }).n);

const sentCalls = (target: string): { id: number; call_key: string }[] =>
  fs.existsSync(path.join(target, '.duo-agent', 'moderator.db')) ? withDb(target, (db) => db.prepare(`SELECT id, call_key FROM model_calls WHERE status = 'sent'`).all() as { id: number; call_key: string }[]) : [];

test('kill -9 with three tasks in flight, and at every stage after, resumes to the same result as an uninterrupted run', async (t) => {
  t.timeout(600_000);
  const refServer = await server(t);
  const refTarget = newRepo('torture-par-ref');
  const refRun = await cli([REQUIREMENTS, '--target', refTarget, '-y'], refServer);
  t.is(refRun.code, 0, refRun.stderr);
  const refSummary = parseSummary(refRun.stdout);
  const ref = print(refTarget, refSummary.runId);
  t.is(refSummary.outcome, 'done');
  t.is(refSummary.prsMerged, 4);
  t.deepEqual(ref.reviews, ['T1#1:approve', 'T2#1:request_changes', 'T2#2:approve', 'T3#1:approve', 'T4#1:approve']);
  t.is(workRequests(refServer), ref.callRows, 'the uninterrupted run sent each call once');
  t.true(refServer.model.maxInFlight() >= 3, `the reference ran tasks side by side (${refServer.model.maxInFlight()} requests at once)`);

  const at = await server(t);
  const target = newRepo('torture-par');
  const kills: { label: string; point: () => KillPoint; leavesInFlight?: number }[] = [
    {
      label: 'three implement calls in flight at once',
      point: () => ({ label: '3 implements in flight', ...dbPoll(target, `SELECT 1 FROM model_calls WHERE purpose = 'implement' AND status = 'sent' GROUP BY status HAVING COUNT(*) >= 3`) }),
      leavesInFlight: 3,
    },
    { label: 'PRs opening side by side', point: () => ({ label: 'two PRs open', ...dbPoll(target, 'SELECT 1 FROM pull_requests GROUP BY run_id HAVING COUNT(*) >= 2'), delayMs: 60 }) },
    {
      label: 'between a merge and its bookkeeping',
      point: () => {
        // The next merge of this process: the reflog already holds those of the processes before.
        const reflog = path.join(target, '.git', 'logs', 'refs', 'heads', 'main');
        const merges = () => (fs.existsSync(reflog) ? (fs.readFileSync(reflog, 'utf8').match(/\tmerge /g) ?? []).length : 0);
        const before = merges();
        return { label: 'main just merged a PR', poll: () => merges() > before };
      },
    },
    {
      label: 'mid revision of T2 (or, when it is past, at the next merge)',
      point: () => {
        // Rows of this process only: an earlier kill may have left a revise call journaled as sent.
        const lastCall = withDb(target, (db) => (db.prepare('SELECT COALESCE(MAX(id), 0) AS id FROM model_calls').get() as { id: number }).id);
        return {
          label: 'T2 revise in flight',
          ...dbPoll(target, `SELECT 1 FROM model_calls WHERE id > ? AND call_key LIKE 'techlead:revise:T2:%' AND status = 'sent' UNION ALL SELECT 1 FROM pull_requests WHERE status = 'merged' GROUP BY run_id HAVING COUNT(*) > ?`, lastCall, mergedPrs(target)),
        };
      },
    },
    {
      label: 'a power cut of the whole process group at the next merge',
      point: () => ({ label: 'power cut', group: true, ...dbPoll(target, `SELECT 1 FROM pull_requests WHERE status = 'merged' GROUP BY run_id HAVING COUNT(*) > ?`, mergedPrs(target)), delayMs: 30 }),
    },
  ];

  let runId: string | null = null;
  let last: KilledResult | undefined;
  let leftInFlight = 0;
  let killed = 0;
  const seen = new Set<number>();
  for (let index = 0; index < kills.length + 3; index += 1) {
    const kill = kills[index];
    last = await cli(runId === null ? [REQUIREMENTS, '--target', target, '-y'] : ['--resume', runId, '--target', target], at, kill?.point());
    const fresh = sentCalls(target).filter((row) => !seen.has(row.id));
    for (const row of fresh) seen.add(row.id);
    t.log(`${runId === null ? 'start' : `resume ${index}`}: ${last.killed ? `SIGKILL at "${kill?.label}"` : `exited ${last.code}`} after ${last.ms} ms${fresh.length ? `; left in flight: ${fresh.map((row) => row.call_key).join(', ')}` : ''}`);
    if (last.killed) {
      killed += 1;
      leftInFlight += fresh.length;
      if (kill?.leavesInFlight) t.true(fresh.length >= kill.leavesInFlight, `"${kill.label}" left ${fresh.length} calls in flight`);
    }
    if (runId === null) {
      const runs = await listRunsAsync(target);
      t.is(runs.length, 1, last.stderr);
      runId = (runs[0] as RunSummaryJson).runId;
    }
    if (!last.killed) break;
  }
  if (!last || last.killed || runId === null) return t.fail('no process finished the run');
  t.is(last.code, 0, last.stderr);
  t.is(killed, kills.length, 'every kill point was reached');
  const summary = parseSummary(last.stdout);
  t.is(summary.outcome, 'done');
  t.is(summary.prsMerged, 4);
  const got = print(target, runId);

  // git: the same program, one merge per task, every step committed once, nothing left behind.
  t.is(got.tree, ref.tree, 'main^{tree}');
  t.deepEqual(got.prMerges, ref.prMerges, 'one merge per task on main');
  t.true(got.mergeParents.every((parents) => parents === 2), 'every merge on main has two parents');
  t.deepEqual(Object.entries(got.stepCounts).filter(([, count]) => count > 1), [], 'no step committed twice');
  t.deepEqual(got.implementSteps, ref.implementSteps, 'the TechLeads committed the same steps');
  t.deepEqual(got.branches, ref.branches, 'branches');
  t.is(got.worktrees, 1, 'only the main work tree is left');
  t.is(got.status, ref.status, 'git status (the untracked settings file only)');

  // database: one PR per task, the same reviews and calls; a call sent again only if a kill cut it off.
  t.deepEqual(got.prs, ref.prs, 'PRs');
  t.deepEqual(got.tasks, ref.tasks, 'tasks');
  t.deepEqual(got.reviews, ref.reviews, 'reviews');
  t.deepEqual(got.okCallKeys, ref.okCallKeys, 'each call answered once');
  t.is(got.callRows, ref.callRows + leftInFlight, `only the ${leftInFlight} calls killed mid-flight were sent again`);
  // A call is journaled as sent just before its request goes out: a kill in between leaves a row the server never saw.
  const reached = workRequests(at);
  t.true(reached <= got.callRows && reached >= ref.callRows, `the model server saw ${reached} requests: the journal holds ${got.callRows}, an uninterrupted run needs ${ref.callRows}`);
  const notOk = withDb(target, (db) => db.prepare(`SELECT call_key, status FROM model_calls WHERE status != 'ok'`).all() as { call_key: string; status: string }[]);
  for (const row of notOk) t.true(row.status === 'sent' && got.okCallKeys.includes(row.call_key), `${row.call_key} ended ${row.status}`);
});
