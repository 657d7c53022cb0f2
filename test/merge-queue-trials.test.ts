/**
 * The merge queue's effects on a real repository, with the trial runs ahead of a PR's turn: a PR
 * queued behind another is merged onto it (a trial merge) and tested while the first one merges;
 * when its turn comes its update has that tree, and the trial's passing run is its re-test. A
 * trial that failed is not trusted: the PR is tested in its own worktree.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import test, { type ExecutionContext } from 'ava';
import { createActor, toPromise, type AnyActorLogic } from 'xstate';
import { mergeQueueActors } from '../actors/merge-queue.actors.ts';
import { composeRun } from '../cli/compose-run.ts';
import { Reporter } from '../cli/reporter.ts';
import { configSchema, withBaseBranch } from '../config/index.ts';
import type { ModelProvider } from '../services/llm/provider.ts';
import { UNSANDBOXED } from '../services/sandbox/sandbox.ts';
import { Store, databasePath } from '../services/store/store.ts';

const noModel: ModelProvider = {
  name: 'none',
  description: 'no model: the merge queue calls none',
  complete: () => Promise.reject(new Error('the merge queue asked a model')),
};

async function run<T>(logic: AnyActorLogic, input: unknown): Promise<T> {
  const actor = createActor(logic, { input });
  actor.start();
  return (await toPromise(actor)) as T;
}

/** A target whose test command logs where it ran (and fails in a trial worktree when `failInTrials`). */
function setUp(t: ExecutionContext, failInTrials: boolean) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-trials-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const target = path.join(dir, 'repo');
  const ranIn = path.join(dir, 'ran-in.log');
  fs.mkdirSync(target);
  const git = (...args: string[]) => execFileSync('git', ['-c', 'user.name=u', '-c', 'user.email=u@x', ...args], { cwd: target, encoding: 'utf8' }).trim();
  git('init', '-q', '-b', 'main');
  fs.writeFileSync(path.join(target, 'check.js'), [
    "const fs = require('node:fs');",
    `fs.appendFileSync(${JSON.stringify(ranIn)}, process.cwd() + '\\n');`,
    failInTrials ? "if (process.cwd().includes('/trials/')) { console.error('fails in a trial'); process.exit(1); }" : '',
    "console.log('ok');",
  ].join('\n'));
  fs.writeFileSync(path.join(target, 'package.json'), '{"name": "q", "version": "1.0.0"}\n');
  git('add', '-A');
  git('commit', '-q', '-m', 'init');
  const config = withBaseBranch(configSchema.parse({
    model: { provider: 'openai' },
    project: { name: 'q', language: 'javascript', test_command: 'node check.js' },
    agents: { techlead: { sandbox: 'off' } },
    limits: { max_parallel_tasks: 2 },
  }), 'main');
  const store = Store.open(databasePath(target));
  t.teardown(() => store.close());
  store.runs.create({ id: 'r', target, requirements: 'two modules', settings: { config, agents: {} }, snapshotVersion: 1, machineFingerprint: 'f' });
  store.tasks.add('r', ['T1', 'T2'].map((id) => ({ id, type: 'feature', title: `module ${id}`, description: id, acceptanceCriteria: [`${id} works`], dependsOn: [], origin: 'plan' as const })));
  const lines: string[] = [];
  const { services } = composeRun({
    store, runId: 'r', target, requirements: 'two modules', config, agents: {},
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.homedir() }, provider: noModel, sandbox: UNSANDBOXED, reporter: new Reporter((line) => lines.push(line)),
  });
  const ran = () => (fs.existsSync(ranIn) ? fs.readFileSync(ranIn, 'utf8').trim().split('\n') : []);
  return { services, store, target, lines, ran, git };
}

/** T1 and T2, each a branch with its own file and an open PR, both made from the same main. */
async function twoPrs(services: ReturnType<typeof setUp>['services']) {
  const prs: number[] = [];
  for (const id of ['T1', 'T2']) {
    const branch = `duo-agent/feature/${id}`;
    const worktree = path.join(services.target, '.duo-agent', 'worktrees', id);
    await services.git.ensureWorktree(branch, worktree);
    await services.git.writeFiles(worktree, [{ path: `${id}.js`, content: `export const ${id} = 1;\n` }]);
    const headSha = await services.git.commitAll(worktree, `feature(${id})`, `r:${id}:commit`);
    prs.push((await services.prs.open({ taskId: id, branch, title: `feature(${id})`, body: '', headSha, generation: 1 })).number);
  }
  return prs as [number, number];
}

test('a PR queued behind another is tested ahead of its turn on the tree its update then has; that run is its re-test', async (t) => {
  const { services, store, lines, ran } = setUp(t, false);
  const [first, second] = await twoPrs(services);
  const queue = mergeQueueActors(services);
  const behind = [{ taskId: 'T2', prNumber: second }];

  // T1 holds main already: nothing to update; T2's merge onto T1 is tested meanwhile.
  t.deepEqual(await run(queue.updateBranch, { taskId: 'T1', prNumber: first, attempt: 1, behind }), { updated: false, conflicts: [] });
  await run(queue.merge, { taskId: 'T1', prNumber: first, attempt: 1 });
  t.like(await run(queue.updateBranch, { taskId: 'T2', prNumber: second, attempt: 1 }), { updated: true });
  const retest = await run<{ passed: boolean }>(queue.retest, { taskId: 'T2', prNumber: second, attempt: 1 });

  t.true(retest.passed);
  t.true(lines.some((line) => /T2: tests on the updated branch \(run ahead of its turn, on the same tree\) passed/.test(line)), lines.join('\n'));
  const where = ran();
  t.is(where.length, 1, `the tests ran once, in: ${where.join(', ')}`);
  t.regex(where[0] ?? '', /\.duo-agent\/trials\/T2-1$/);
  t.true(store.testRuns.get('r', 'T2', 1)?.passed, 'recorded as the round\'s test run');
  t.false(fs.existsSync(where[0] ?? ''), 'the trial worktree is gone');
});

test('a trial that failed is not trusted: the PR is tested in its own worktree before it could go back', async (t) => {
  const { services, lines, ran } = setUp(t, true);
  const [first, second] = await twoPrs(services);
  const queue = mergeQueueActors(services);
  await run(queue.updateBranch, { taskId: 'T1', prNumber: first, attempt: 1, behind: [{ taskId: 'T2', prNumber: second }] });
  await run(queue.merge, { taskId: 'T1', prNumber: first, attempt: 1 });
  await run(queue.updateBranch, { taskId: 'T2', prNumber: second, attempt: 1 });
  const retest = await run<{ passed: boolean }>(queue.retest, { taskId: 'T2', prNumber: second, attempt: 1 });

  t.true(retest.passed, 'passes where it really runs');
  t.false(lines.some((line) => /run ahead of its turn/.test(line)));
  const where = ran();
  t.is(where.length, 2, where.join(', '));
  t.regex(where[0] ?? '', /\.duo-agent\/trials\/T2-1$/);
  t.regex(where[1] ?? '', /\.duo-agent\/worktrees\/T2$/);
});
