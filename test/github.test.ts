/**
 * git.provider github: the real Octokit (with its throttling and retry plugins) against a
 * loopback fake of GitHub's REST API backed by a bare repository on disk, real git for the
 * pushes (also over HTTP through `git http-backend`), a real SQLite store. Then the real CLI:
 * the demo replayed against the fake, killed with SIGKILL between a push and its PR, after a PR
 * was opened but before it was recorded, and between a merge and its bookkeeping, and resumed.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { createActor } from 'xstate';
import { defaultPushUrl } from '../cli/github.ts';
import { prepareGitHub } from '../cli/pull-requests.ts';
import { configSchema, withBaseBranch } from '../config/index.ts';
import { UsageError } from '../errors.ts';
import type { RunServices } from '../actors/run-services.ts';
import { mergeQueueActors } from '../actors/merge-queue.actors.ts';
import { GitService } from '../services/git/git-service.ts';
import { GitRemote } from '../services/pr/git-remote.ts';
import { checkGitHubAccess } from '../services/pr/github-access.ts';
import { GitHubClient } from '../services/pr/github-client.ts';
import { GitHubPrProvider } from '../services/pr/github-pr-provider.ts';
import { PrError } from '../services/pr/pr-error.ts';
import type { PostedReview } from '../services/pr/pr-provider.ts';
import { Store } from '../services/store/store.ts';
import { tasksView } from '../server/views.ts';
import { RunView } from '../services/store/run-view.ts';
import { githubFaults, startFakeGitHub, type FakeGitHub, type FakeGitHubOptions } from './fakes/github-api.ts';
import { ownConnection } from './helpers/database.ts';
import { FREE_PORT, cliAsync, dbPoll, newTarget, parseSummary, removeTargets, withDb } from './helpers/cli.ts';

const TOKEN = 'ghp_fakeTokenForTheLoopbackFake0123456789';
const identity = { name: 'Moderator', email: 'moderator@localhost' };
const repository = { owner: 'acme', repo: 'todo' };

test.after(() => removeTargets());

/**
 * git for the test's own set-up, with a clean HOME and no inherited GIT_* variables; never
 * blocking, since the fakes answer from this process.
 */
function sh(cwd: string, home: string, ...args: string[]): Promise<string> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, GIT_CONFIG_NOSYSTEM: '1', LC_ALL: 'C' };
  return new Promise((resolve, reject) => {
    execFile('git', ['-c', 'user.name=Person', '-c', 'user.email=person@example.invalid', ...args], { cwd, env, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error) reject(new Error(`git ${args.join(' ')}: ${stderr}`));
      else resolve(stdout.trim());
    });
  });
}

interface World {
  dir: string;
  bare: string;
  target: string;
  /** Moderator's git processes run with this HOME: a global config that would leak credentials and hooks. */
  env: Record<string, string>;
  cleanHome: string;
  /** A credential helper in the hostile config writes here if git ever consults it. */
  helperFile: string;
  fake: FakeGitHub;
  /** The store's database file, for a connection of the test's own. */
  dbFile: string;
  store: Store;
  git: GitService;
  remote: GitRemote;
  client: GitHubClient;
  provider: GitHubPrProvider;
  warnings: string[];
}

interface WorldOptions {
  fake?: Partial<FakeGitHubOptions>;
  overHttp?: boolean;
  token?: string;
  mergeWaitMs?: number;
  rateLimitWaitSeconds?: number;
}

/**
 * A repository on "GitHub" (the bare one, main holding a first commit), the target cloned from
 * it, a store with a run and tasks T1..T3, and the provider wired as the CLI wires it.
 */
async function world(t: ExecutionContext, options: WorldOptions = {}): Promise<World> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-github-'));
  const cleanHome = path.join(dir, 'clean-home');
  const hostileHome = path.join(dir, 'hostile-home');
  const hooks = path.join(hostileHome, 'hooks');
  const helperFile = path.join(dir, 'helper-was-used');
  fs.mkdirSync(cleanHome);
  fs.mkdirSync(hooks, { recursive: true });
  fs.writeFileSync(path.join(hooks, 'pre-push'), '#!/bin/sh\necho "hostile pre-push refuses" >&2\nexit 1\n', { mode: 0o755 });
  fs.writeFileSync(path.join(hooks, 'post-merge'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
  fs.writeFileSync(path.join(hostileHome, '.gitconfig'), [
    '[credential]', `\thelper = store --file=${helperFile}`,
    '[core]', `\thooksPath = ${hooks}`,
    '[color]', '\tui = always',
    '[push]', '\tdefault = nothing',
    '',
  ].join('\n'));
  const bare = path.join(dir, 'remote.git');
  const seed = path.join(dir, 'seed');
  await sh(dir, cleanHome, 'init', '--quiet', '--bare', '--initial-branch=main', bare);
  await sh(dir, cleanHome, 'init', '--quiet', '--initial-branch=main', seed);
  fs.writeFileSync(path.join(seed, 'todo.js'), 'export const todos = [];\n');
  await sh(seed, cleanHome, 'add', '.');
  await sh(seed, cleanHome, 'commit', '--quiet', '-m', 'first');
  await sh(seed, cleanHome, 'push', '--quiet', bare, 'main');
  const target = path.join(dir, 'target');
  await sh(dir, cleanHome, 'clone', '--quiet', bare, target);
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: hostileHome };
  await GitService.prepareTarget({ root: target, identity, baseBranch: 'main', env });

  const fake = await startFakeGitHub({ ...repository, bare, token: TOKEN, scopes: ['repo'], ...options.fake });
  const dbFile = path.join(dir, 'moderator.db');
  const store = Store.open(dbFile);
  store.runs.create({ id: 'r1', target, requirements: 'req', settings: {}, snapshotVersion: 1, machineFingerprint: 'abc' });
  store.tasks.add('r1', ['T1', 'T2', 'T3'].map((id) => ({
    id, title: `task ${id}`, type: 'feature', description: `Do ${id}.`, acceptanceCriteria: [`${id} works`], dependsOn: [], origin: 'plan' as const,
  })));
  const git = new GitService({ root: target, identity, baseBranch: 'main', env });
  const token = options.token ?? TOKEN;
  const remote = new GitRemote({ root: target, baseBranch: 'main', url: options.overHttp ? fake.gitUrl : bare, token, identity, env });
  const warnings: string[] = [];
  const client = new GitHubClient({
    baseUrl: fake.url, token, writeSpacingMs: 0, notificationSpacingMs: 0, rateLimitWaitSeconds: options.rateLimitWaitSeconds ?? 60,
    // Every wait the plugins compute (retry-after, x-ratelimit-reset, backoff) in ms per second: 5.
    retryAfterBaseValue: 5,
    log: { warn: (line) => warnings.push(line), debug: () => {} },
  });
  const provider = new GitHubPrProvider({
    store, runId: 'r1', client, remote, repository, baseBranch: 'main', mergeWaitMs: options.mergeWaitMs ?? 60_000, pollDelaysMs: [5, 10, 20],
  });
  t.teardown(async () => {
    store.close();
    await fake.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { dir, bare, target, env, cleanHome, helperFile, fake, dbFile, store, git, remote, client, provider, warnings };
}

const worktreeOf = (w: World, taskId: string) => path.join(w.target, '.duo-agent', 'worktrees', taskId);
const branchOf = (taskId: string) => `duo-agent/feature/${taskId}`;

/** The TechLead's part: the task's branch in its worktree, with one commit writing `files`. */
async function implement(w: World, taskId: string, files: Record<string, string>, attempt = 1): Promise<string> {
  const worktree = worktreeOf(w, taskId);
  await w.git.ensureWorktree(branchOf(taskId), worktree);
  await w.git.writeFiles(worktree, Object.entries(files).map(([file, content]) => ({ path: file, content })));
  return w.git.commitAll(worktree, `feature(${taskId}): task ${taskId}`, `commit:${taskId}:${attempt}`);
}

async function openPr(w: World, taskId: string, headSha: string, provider = w.provider) {
  return provider.open({ taskId, branch: branchOf(taskId), title: `feature(${taskId}): task ${taskId}`, body: `Body of ${taskId}`, headSha });
}

const count = (fake: FakeGitHub, method: string, pattern: RegExp) =>
  fake.requests.filter((request) => request.method === method && pattern.test(request.path.split('?')[0] ?? '')).length;
const bareSha = (w: World, ref = 'main') => sh(w.bare, w.cleanHome, 'rev-parse', ref);
const localSha = (w: World, ref = 'main') => sh(w.target, w.cleanHome, 'rev-parse', ref);

async function rejection(t: ExecutionContext, promise: Promise<unknown>): Promise<PrError> {
  const error = await t.throwsAsync(promise);
  if (!(error instanceof PrError)) throw new Error(`expected a PrError, got ${String(error)}`);
  t.false(error.message.includes(TOKEN), 'no error message carries the token');
  t.false(error.message.includes('\n'), 'one line');
  return error;
}

const review = (taskId: string, attempt: number, verdict: PostedReview['verdict']): PostedReview => ({
  taskId, attempt, kind: 'review', verdict, summary: `Round ${attempt} of ${taskId}.`, comments: verdict === 'approve' ? [] : ['Handle the empty list.'],
  criteria: [`${taskId} works`], tests: { command: 'npm test', passed: true },
});

// ---- opening PRs -------------------------------------------------------------------------

test('open pushes the branch, opens one PR on GitHub and records its number and page; a re-run opens nothing', async (t) => {
  const w = await world(t);
  const head = await implement(w, 'T1', { 'a.js': 'export const a = 1;\n' });
  const pr = await openPr(w, 'T1', head);
  t.is(await bareSha(w, `refs/heads/${branchOf('T1')}`), head, 'the branch is on the remote');
  t.is(w.fake.pulls.length, 1);
  const pull = w.fake.pulls[0];
  t.is(pull?.head, branchOf('T1'));
  t.is(pull?.base, 'main');
  t.is(pull?.body, 'Body of T1');
  t.is(pr.remoteNumber, pull?.number ?? null);
  t.is(pr.url, `${w.fake.url}/acme/todo/pull/${pull?.number}`);
  t.not(pr.number, pr.remoteNumber, "Moderator's own number is kept apart from GitHub's");
  t.false(fs.existsSync(w.helperFile), "the user's credential helper was never asked");

  const again = await openPr(w, 'T1', head);
  t.is(again.number, pr.number);
  // A fresh process with the same store (a resumed run) finds it too, without asking GitHub.
  const before = w.fake.requests.length;
  const resumed = new GitHubPrProvider({ store: w.store, runId: 'r1', client: w.client, remote: w.remote, repository, baseBranch: 'main', mergeWaitMs: 1000 });
  t.is((await openPr(w, 'T1', head, resumed)).number, pr.number);
  t.is(w.fake.requests.length, before);
  t.is(count(w.fake, 'POST', /\/pulls$/), 1, 'one PR, ever');
  const quota = w.provider.rateLimit();
  t.truthy(quota);
  t.is(quota?.limit, 5000);
  t.true((quota?.remaining ?? 5000) < 5000, 'the quota of the last answer is kept');
});

test('killed after GitHub opened the PR but before it was recorded, the re-run finds it by its head branch', async (t) => {
  const w = await world(t);
  const head = await implement(w, 'T1', { 'a.js': '1\n' });
  await w.remote.push(branchOf('T1'));
  // The earlier process's POST went through; its answer and the row were lost with it.
  await w.client.octokit.rest.pulls.create({ ...repository, title: 'x', head: branchOf('T1'), base: 'main', body: 'b' });
  w.store.effects.start('r1', 'github:open:T1');
  const pr = await openPr(w, 'T1', head);
  t.is(w.fake.pulls.length, 1, 'no second PR');
  t.is(pr.remoteNumber, w.fake.pulls[0]?.number ?? null);
  t.is(count(w.fake, 'POST', /\/pulls$/), 1);
});

test('a 422 "already exists" (opened meanwhile, unseen by the lookup) adopts that PR', async (t) => {
  const w = await world(t);
  const head = await implement(w, 'T1', { 'a.js': '1\n' });
  await w.remote.push(branchOf('T1'));
  await w.client.octokit.rest.pulls.create({ ...repository, title: 'x', head: branchOf('T1'), base: 'main', body: 'b' });
  // The lookup answers before GitHub's index caught up.
  w.fake.fault({ method: 'GET', path: /\/pulls$/ }, { status: 200, body: [] });
  const pr = await openPr(w, 'T1', head);
  t.is(w.fake.pulls.length, 1);
  t.is(pr.remoteNumber, w.fake.pulls[0]?.number ?? null);
  t.is(count(w.fake, 'POST', /\/pulls$/), 2, 'the refused POST, then the lookup found it');
});

test('a 422 for another reason (no commits between base and branch) is a PrError, not a crash', async (t) => {
  const w = await world(t);
  const worktree = worktreeOf(w, 'T1');
  await w.git.ensureWorktree(branchOf('T1'), worktree);
  const error = await rejection(t, openPr(w, 'T1', await localSha(w)));
  t.is(error.code, 'pr_invalid');
  t.is(error.status, 422);
  t.regex(error.message, /No commits between main and duo-agent\/feature\/T1/);
});

test('a PR someone closed on GitHub is not opened again behind their back', async (t) => {
  const w = await world(t);
  const head = await implement(w, 'T1', { 'a.js': '1\n' });
  await w.remote.push(branchOf('T1'));
  const { data } = await w.client.octokit.rest.pulls.create({ ...repository, title: 'x', head: branchOf('T1'), base: 'main', body: 'b' });
  await w.client.octokit.rest.pulls.update({ ...repository, pull_number: data.number, state: 'closed' });
  const error = await rejection(t, openPr(w, 'T1', head));
  t.is(error.code, 'pr_closed');
  t.is(w.fake.pulls.length, 1);
});

test('a revision is pushed to the same PR with its new body; never a second PR', async (t) => {
  const w = await world(t);
  const first = await implement(w, 'T1', { 'a.js': '1\n' });
  const pr = await openPr(w, 'T1', first);
  const second = await implement(w, 'T1', { 'a.js': '2\n' }, 2);
  await w.provider.update(pr.number, second, 2, 'Body, revision 2');
  await w.provider.update(pr.number, second, 2, 'Body, revision 2');
  t.is(w.fake.pulls.length, 1);
  t.is(w.fake.pulls[0]?.body, 'Body, revision 2');
  t.is(await bareSha(w, `refs/heads/${branchOf('T1')}`), second);
  t.is(count(w.fake, 'PATCH', /\/pulls\/\d+$/), 1, 'the journaled update is not repeated');
  t.like(w.store.pullRequests.forTask('r1', 'T1'), { headSha: second, revision: 2, body: 'Body, revision 2' });
});

// ---- merging -------------------------------------------------------------------------------

test('merge merges on GitHub once, brings the local base to the merged result, and is not repeated', async (t) => {
  const w = await world(t);
  const head = await implement(w, 'T1', { 'a.js': '1\n' });
  const pr = await openPr(w, 'T1', head);
  const sha = await w.provider.merge(pr.number, 'Merge PR #1: feature(T1): task T1');
  t.is(w.fake.merges.length, 1);
  t.is(sha, w.fake.merges[0]?.sha ?? "");
  t.is(await bareSha(w), sha);
  t.is(await localSha(w), sha, 'the next task branches from the merged result');
  t.is(await sh(w.target, w.cleanHome, 'status', '--porcelain'), '', 'the main work tree is clean on it');
  t.true(fs.existsSync(path.join(w.target, 'a.js')));
  t.regex(await sh(w.bare, w.cleanHome, 'log', '-1', '--format=%B', 'main'), /^Merge pull request #7 from acme\/duo-agent\/feature\/T1\n\nfeature\(T1\): task T1\n\nModerator-Step: merge:T1$/);
  t.is(await w.provider.merge(pr.number, 'again'), sha);
  t.is(count(w.fake, 'PUT', /\/merge$/), 1);
  t.like(w.store.pullRequests.forTask('r1', 'T1'), { status: 'merged', mergeSha: sha });
});

test('killed between the merge on GitHub and its bookkeeping, the re-run reads it is merged and merges nothing', async (t) => {
  const w = await world(t);
  const head = await implement(w, 'T1', { 'a.js': '1\n' });
  const pr = await openPr(w, 'T1', head);
  // The earlier process's PUT went through; it died before recording it or updating main.
  await w.client.octokit.rest.pulls.merge({ ...repository, pull_number: pr.remoteNumber ?? 0, sha: head });
  w.store.effects.start('r1', 'github:merge:T1');
  const sha = await w.provider.merge(pr.number, 'Merge PR #1');
  t.is(w.fake.merges.length, 1, 'no double merge');
  t.is(count(w.fake, 'PUT', /\/merge$/), 1);
  t.is(sha, w.fake.merges[0]?.sha ?? "");
  t.is(await localSha(w), sha);
});

test('405 not mergeable (branch protection) is a PrError asking for a person, and is not retried', async (t) => {
  const w = await world(t);
  const head = await implement(w, 'T1', { 'a.js': '1\n' });
  const pr = await openPr(w, 'T1', head);
  w.fake.fault({ method: 'PUT', path: /\/merge$/ }, { status: 405, body: { message: 'At least 1 approving review is required by reviewers with write access.' } });
  const error = await rejection(t, w.provider.merge(pr.number, 'm'));
  t.is(error.code, 'pr_not_mergeable');
  t.regex(error.message, /405 At least 1 approving review is required.*finish the PR on GitHub by hand/);
  t.is(count(w.fake, 'PUT', /\/merge$/), 1, 'plugin-retry leaves 405 alone');
  t.is(w.fake.merges.length, 0);
});

test('409 head modified, and a head that moved since the review, are refused before anything unreviewed is merged', async (t) => {
  const w = await world(t);
  const head = await implement(w, 'T1', { 'a.js': '1\n' });
  const pr = await openPr(w, 'T1', head);
  w.fake.fault({ method: 'PUT', path: /\/merge$/ }, githubFaults.headModified());
  const error = await rejection(t, w.provider.merge(pr.number, 'm'));
  t.is(error.code, 'pr_head_changed');
  t.is(count(w.fake, 'PUT', /\/merge$/), 1, 'plugin-retry leaves 409 alone');

  // Someone pushes to the branch on GitHub: the PR's head is no longer what was reviewed.
  const other = path.join(w.dir, 'other');
  await sh(w.dir, w.cleanHome, 'clone', '--quiet', '--branch', branchOf('T1'), w.bare, other);
  fs.writeFileSync(path.join(other, 'b.js'), 'unreviewed\n');
  await sh(other, w.cleanHome, 'add', '.');
  await sh(other, w.cleanHome, 'commit', '--quiet', '-m', 'unreviewed');
  await sh(other, w.cleanHome, 'push', '--quiet', 'origin', branchOf('T1'));
  const moved = await rejection(t, w.provider.merge(pr.number, 'm'));
  t.is(moved.code, 'pr_head_changed');
  t.regex(moved.message, /not at the reviewed/);
  t.is(w.fake.merges.length, 0);
});

test('a conflict with the base goes back as a revision: the worktree gets the base merged in with markers, the revision merges', async (t) => {
  const w = await world(t);
  const head = await implement(w, 'T1', { 'todo.js': 'export const todos = ["mine"];\n' });
  const pr = await openPr(w, 'T1', head);
  // Someone changes the same line on GitHub's main.
  const other = path.join(w.dir, 'other');
  await sh(w.dir, w.cleanHome, 'clone', '--quiet', w.bare, other);
  fs.writeFileSync(path.join(other, 'todo.js'), 'export const todos = ["theirs"];\n');
  await sh(other, w.cleanHome, 'commit', '--quiet', '-am', 'theirs');
  await sh(other, w.cleanHome, 'push', '--quiet', 'origin', 'main');

  const error = await rejection(t, w.provider.merge(pr.number, 'm'));
  t.is(error.code, 'pr_conflict');
  t.deepEqual(error.conflicts, ['todo.js']);
  t.regex(error.message, /acme\/todo#\d+ conflicts with main in todo\.js/);
  t.is(await localSha(w), await bareSha(w), 'the local base was brought up to GitHub’s');
  t.is(count(w.fake, 'PUT', /\/merge$/), 0, 'GitHub said mergeable=false: no merge was tried');

  const worktree = worktreeOf(w, 'T1');
  t.deepEqual(await w.provider.mergeBaseInto('T1', worktree), { merging: true, conflicts: ['todo.js'] });
  t.deepEqual(await w.provider.mergeBaseInto('T1', worktree), { merging: true, conflicts: ['todo.js'] }, 'a re-run leaves the merge in progress as it is');
  t.regex(fs.readFileSync(path.join(worktree, 'todo.js'), 'utf8'), /<<<<<<<[\s\S]*mine[\s\S]*theirs[\s\S]*>>>>>>>/);
  // The revision resolves it; its commit concludes the merge.
  await w.git.writeFiles(worktree, [{ path: 'todo.js', content: 'export const todos = ["mine", "theirs"];\n' }]);
  const revised = await w.git.commitAll(worktree, 'feature(T1): revision 2', 'commit:T1:2');
  t.is(await sh(worktree, w.cleanHome, 'rev-list', '--count', '--merges', 'main..HEAD'), '1');
  await w.provider.update(pr.number, revised, 2, 'Body 2');
  const sha = await w.provider.merge(pr.number, 'm');
  t.is(w.fake.merges.length, 1);
  t.is(await localSha(w), sha);
  t.is(fs.readFileSync(path.join(w.target, 'todo.js'), 'utf8'), 'export const todos = ["mine", "theirs"];\n');
});

test("the merge step turns a conflict into the round's change request, recorded and posted on the PR, for the TechLead to read", async (t) => {
  const w = await world(t);
  const head = await implement(w, 'T1', { 'todo.js': 'export const todos = ["mine"];\n' });
  const pr = await openPr(w, 'T1', head);
  w.store.reviews.record({ runId: 'r1', taskId: 'T1', prNumber: pr.number, attempt: 1, verdict: 'approve', summary: 'fine', comments: [], testsPassed: true });
  const other = path.join(w.dir, 'other');
  await sh(w.dir, w.cleanHome, 'clone', '--quiet', w.bare, other);
  await fs.promises.writeFile(path.join(other, 'todo.js'), 'export const todos = ["theirs"];\n');
  await sh(other, w.cleanHome, 'commit', '--quiet', '-am', 'theirs');
  await sh(other, w.cleanHome, 'push', '--quiet', 'origin', 'main');
  const progress: string[] = [];
  // The merge step needs only these services; the model gateway and the rest are not touched.
  const services = {
    runId: 'r1', target: w.target, store: w.store, git: w.git, prs: w.provider, progress: (line: string) => progress.push(line),
    config: configSchema.parse({ limits: { max_review_attempts: 3 } }), agents: {},
  } as unknown as RunServices;
  const failure = await new Promise<unknown>((resolve) => {
    const actor = createActor(mergeQueueActors(services).merge, { input: { taskId: 'T1', prNumber: pr.number, attempt: 1 } });
    actor.subscribe({ error: resolve, complete: () => resolve(undefined) });
    actor.start();
  });
  t.like(failure, { code: 'pr_conflict', conflicts: ['todo.js'] });
  const changed = w.store.reviews.get('r1', 'T1', 1);
  t.is(changed?.verdict, 'request_changes');
  t.regex(changed?.comments[0] ?? '', /Merge main into the branch and resolve the conflicts in todo\.js/);
  t.is(w.fake.reviews.length, 1);
  t.regex(w.fake.reviews[0]?.body ?? '', /merge conflict, round 1: changes requested[\s\S]*todo\.js[\s\S]*<!-- moderator-review conflict T1 round 1 -->/);
  t.regex(progress.join('\n'), /merge queue: T1: acme\/todo#7 conflicts with main in todo\.js; not merged/);
});

test('required checks pending (blocked) are waited for, then merged; still blocked after the wait is a clear PrError', async (t) => {
  const w = await world(t);
  const head = await implement(w, 'T1', { 'a.js': '1\n' });
  const pr = await openPr(w, 'T1', head);
  w.fake.checksPendingFor(2);
  await w.provider.merge(pr.number, 'm');
  t.is(w.fake.merges.length, 1);
  t.true(count(w.fake, 'GET', /\/pulls\/\d+$/) >= 3, 'looked again until the checks passed');

  const head2 = await implement(w, 'T2', { 'b.js': '2\n' });
  const pr2 = await openPr(w, 'T2', head2);
  w.fake.checksPendingFor(Number.POSITIVE_INFINITY);
  const impatient = new GitHubPrProvider({ store: w.store, runId: 'r1', client: w.client, remote: w.remote, repository, baseBranch: 'main', mergeWaitMs: 50, pollDelaysMs: [5] });
  const error = await rejection(t, impatient.merge(pr2.number, 'm'));
  t.is(error.code, 'pr_checks_pending');
  t.regex(error.message, /is blocked after 0 s \(required checks or reviews are missing\): finish it on GitHub/);
  t.is(w.fake.merges.length, 1);
});

test('a PR whose mergeability GitHub is still computing (mergeable null) is looked at again, then merged', async (t) => {
  const w = await world(t, { fake: { lazyMergeable: true } });
  const head = await implement(w, 'T1', { 'a.js': '1\n' });
  const pr = await openPr(w, 'T1', head);
  await w.provider.merge(pr.number, 'm');
  t.is(w.fake.merges.length, 1);
  t.is(count(w.fake, 'GET', /\/pulls\/\d+$/), 2, 'null first, then computed');
});

// ---- rate limits and retries -------------------------------------------------------------------

test('a 403 with x-ratelimit-remaining 0 is waited out until the reset (scaled down here) and retried', async (t) => {
  const w = await world(t);
  const head = await implement(w, 'T1', { 'a.js': '1\n' });
  w.fake.fault({ method: 'GET', path: /\/pulls$/ }, githubFaults.rateLimited(1));
  const pr = await openPr(w, 'T1', head);
  t.truthy(pr.remoteNumber);
  t.is(count(w.fake, 'GET', /\/pulls$/), 2, 'the limited request, then its retry');
  t.true(w.warnings.some((line) => /GitHub rate limit on GET .*waiting \d+ s, then retrying/.test(line)), w.warnings.join('\n'));
  t.true((w.provider.rateLimit()?.remaining ?? 0) > 0, 'the quota after the reset');
});

test('a spent rate limit that resets later than git.rate_limit_wait_seconds fails the step with the reset time', async (t) => {
  const w = await world(t, { rateLimitWaitSeconds: 1 });
  const head = await implement(w, 'T1', { 'a.js': '1\n' });
  w.fake.fault({ method: 'GET', path: /\/pulls$/ }, githubFaults.rateLimited(3600));
  const error = await rejection(t, openPr(w, 'T1', head));
  t.is(error.code, 'pr_rate_limited');
  t.regex(error.message, /rate limit is spent until \d{4}-\d\d-\d\dT.*: resume the run after that/);
  t.is(w.provider.rateLimit()?.remaining, 0, 'the metrics see the spent quota');
  t.is(count(w.fake, 'GET', /\/pulls$/), 1);
});

test('a secondary rate limit (403 with retry-after) and a 502 are retried; the PR is opened once', async (t) => {
  const w = await world(t);
  const head = await implement(w, 'T1', { 'a.js': '1\n' });
  w.fake.fault({ method: 'POST', path: /\/pulls$/ }, githubFaults.secondaryRateLimited(2));
  w.fake.fault({ method: 'GET', path: /\/pulls$/ }, githubFaults.serverError());
  await openPr(w, 'T1', head);
  t.is(w.fake.pulls.length, 1);
  t.is(count(w.fake, 'POST', /\/pulls$/), 2);
  t.is(count(w.fake, 'GET', /\/pulls$/), 2);
  t.true(w.warnings.some((line) => /secondary rate limit/.test(line)));
});

test('a bad token is a one-line pr_auth error without the token in it', async (t) => {
  const w = await world(t, { token: 'ghp_wrongwrongwrongwrongwrongwrong0000' });
  const error = await t.throwsAsync(w.client.octokit.rest.repos.get(repository).catch((failure: unknown) => {
    throw w.client.failure('reading acme/todo', failure);
  }));
  t.true(error instanceof PrError);
  t.is((error as PrError).code, 'pr_auth');
  t.regex(error.message, /GitHub refused the token \(401 Bad credentials\): set a valid DUO_AGENT_GIT_TOKEN/);
  t.false(error.message.includes('ghp_wrong'));
});

// ---- reviews ---------------------------------------------------------------------------

test("the Moderator's review is posted once; on its own PR GitHub's 422 turns it into a comment carrying the verdict", async (t) => {
  const w = await world(t);
  const head = await implement(w, 'T1', { 'a.js': '1\n' });
  const pr = await openPr(w, 'T1', head);
  await w.provider.postReview(pr.number, review('T1', 1, 'request_changes'));
  t.is(count(w.fake, 'POST', /\/reviews$/), 2, 'REQUEST_CHANGES refused (own PR), then COMMENT');
  t.is(w.fake.reviews.length, 1);
  const posted = w.fake.reviews[0];
  t.is(posted?.event, 'COMMENT');
  t.regex(posted?.body ?? '', /Moderator review, round 1: changes requested/);
  t.regex(posted?.body ?? '', /\*\*Verdict: REQUEST_CHANGES\*\*/);
  t.regex(posted?.body ?? '', /- T1 works/);
  t.regex(posted?.body ?? '', /- Handle the empty list\./);
  t.regex(posted?.body ?? '', /`npm test` passed/);

  // Killed after posting, before the journal said so: the marker on the PR stops a second post.
  ownConnection(t, w.dbFile, { writable: true }).prepare(`UPDATE effects SET status = 'started' WHERE step_key LIKE 'github:review:%'`).run();
  await w.provider.postReview(pr.number, review('T1', 1, 'request_changes'));
  t.is(w.fake.reviews.length, 1);
  await w.provider.postReview(pr.number, review('T1', 2, 'approve'));
  t.is(w.fake.reviews.length, 2);
});

test('a review on a PR the token did not open is a real APPROVE', async (t) => {
  const w = await world(t);
  const head = await implement(w, 'T1', { 'a.js': '1\n' });
  const pr = await openPr(w, 'T1', head);
  const pull = w.fake.pulls[0];
  if (pull) pull.author = 'a-person';
  await w.provider.postReview(pr.number, review('T1', 1, 'approve'));
  t.is(w.fake.reviews[0]?.event, 'APPROVE');
  t.notRegex(w.fake.reviews[0]?.body ?? '', /Verdict:/);
});

// ---- pushing over HTTP -----------------------------------------------------------------------

test('over HTTP the token goes as an Authorization header, never in the URL, and no credential helper or hook runs', async (t) => {
  const w = await world(t, { overHttp: true, fake: { gitHttp: true } });
  const head = await implement(w, 'T1', { 'a.js': '1\n' });
  await w.remote.push(branchOf('T1'));
  t.is(await bareSha(w, `refs/heads/${branchOf('T1')}`), head);
  t.true(w.fake.gitRequests.length >= 2);
  t.true(w.fake.gitRequests.every((request) => request.authorized), 'every git request carried the token');
  t.false(fs.existsSync(w.helperFile), 'the credential helper was neither asked nor given the token');
  t.is(w.remote.url, w.fake.gitUrl);
  await w.remote.syncBase();

  const wrong = new GitRemote({ root: w.target, baseBranch: 'main', url: w.fake.gitUrl, token: 'ghp_wrongwrongwrongwrongwrongwrong0000', identity, env: w.env });
  const error = await rejection(t, wrong.push(branchOf('T1')));
  t.is(error.code, 'pr_auth');
  t.regex(error.message, /the token \(DUO_AGENT_GIT_TOKEN\) is wrong or cannot push there/);
  t.false(error.message.includes('ghp_wrong'));
  t.false(fs.existsSync(w.helperFile));
});

test('a push the remote refuses (the branch there has other commits) is pr_push_rejected', async (t) => {
  const w = await world(t);
  await implement(w, 'T1', { 'a.js': '1\n' });
  const other = path.join(w.dir, 'other');
  await sh(w.dir, w.cleanHome, 'clone', '--quiet', w.bare, other);
  await sh(other, w.cleanHome, 'checkout', '--quiet', '-b', branchOf('T1'));
  fs.writeFileSync(path.join(other, 'x.js'), 'someone else\n');
  await sh(other, w.cleanHome, 'add', '.');
  await sh(other, w.cleanHome, 'commit', '--quiet', '-m', 'someone else');
  await sh(other, w.cleanHome, 'push', '--quiet', 'origin', branchOf('T1'));
  const error = await rejection(t, w.remote.push(branchOf('T1')));
  t.is(error.code, 'pr_push_rejected');
  t.regex(error.message, /delete it there or change git\.branch_prefix/);
});

// ---- run start and doctor ---------------------------------------------------------------------

test('at run start the local base is fast-forwarded to GitHub’s; a local base GitHub does not have is refused', async (t) => {
  const w = await world(t);
  const config = withBaseBranch(configSchema.parse({ git: { provider: 'github', repository: 'acme/todo', api_url: w.fake.url, push_url: w.bare } }), 'main');
  const lines: string[] = [];
  const other = path.join(w.dir, 'other');
  await sh(w.dir, w.cleanHome, 'clone', '--quiet', w.bare, other);
  fs.writeFileSync(path.join(other, 'new.js'), '1\n');
  await sh(other, w.cleanHome, 'add', '.');
  await sh(other, w.cleanHome, 'commit', '--quiet', '-m', 'ahead on GitHub');
  await sh(other, w.cleanHome, 'push', '--quiet', 'origin', 'main');
  await prepareGitHub({ config, secrets: { gitToken: TOKEN }, target: w.target, env: w.env, report: (line) => lines.push(line) });
  t.is(await localSha(w), await bareSha(w));
  t.true(fs.existsSync(path.join(w.target, 'new.js')));
  t.regex(lines.join('\n'), /main fast-forwarded to GitHub's [0-9a-f]{12}/);

  fs.writeFileSync(path.join(w.target, 'local.js'), '1\n');
  await sh(w.target, w.cleanHome, 'add', 'local.js');
  await sh(w.target, w.cleanHome, 'commit', '--quiet', '-m', 'only here');
  const error = await t.throwsAsync(prepareGitHub({ config, secrets: { gitToken: TOKEN }, target: w.target, env: w.env, report: () => {} }));
  t.true(error instanceof UsageError);
  t.regex(error.message, /the local main has commits .* does not: push them there first/);
  const noToken = await t.throwsAsync(prepareGitHub({ config, secrets: {}, target: w.target, env: w.env, report: () => {} }));
  t.regex(noToken.message, /no token is set: set DUO_AGENT_GIT_TOKEN/);
});

test('the access checks: scopes of classic tokens, push permission of fine-grained ones, the base branch', async (t) => {
  const classic = await world(t);
  const ok = await checkGitHubAccess(classic.client, repository, 'main');
  t.deepEqual(ok.map((check) => [check.name, check.ok]), [['github token', true], ['github repo', true], ['github base', true]]);
  t.regex(ok[0]?.detail ?? '', /scopes: repo/);
  const missingBase = await checkGitHubAccess(classic.client, repository, 'trunk');
  t.regex(missingBase[2]?.detail ?? '', /the base branch trunk does not exist in acme\/todo \(its default branch is main\)/);

  const weak = await world(t, { fake: { scopes: ['read:org'] } });
  const weakChecks = await checkGitHubAccess(weak.client, repository, 'main');
  t.false(weakChecks[0]?.ok);
  t.regex(weakChecks[0]?.detail ?? '', /a classic token needs "repo"/);

  const fineGrained = await world(t, { fake: { scopes: undefined, permissions: { admin: false, push: false, pull: true } } });
  const fineChecks = await checkGitHubAccess(fineGrained.client, repository, 'main');
  t.true(fineChecks[0]?.ok);
  t.regex(fineChecks[0]?.detail ?? '', /fine-grained/);
  t.false(fineChecks[1]?.ok);
  t.regex(fineChecks[1]?.detail ?? '', /cannot push to it \(permissions\.push is false\)/);

  const elsewhere = await checkGitHubAccess(classic.client, { owner: 'acme', repo: 'missing' }, 'main');
  t.false(elsewhere[0]?.ok);
  t.regex(elsewhere[0]?.detail ?? '', /404/);
});

test('the push URL defaults to github.com, or to the Enterprise host of api_url', (t) => {
  t.is(defaultPushUrl('https://api.github.com', 'acme/todo'), 'https://github.com/acme/todo.git');
  t.is(defaultPushUrl('https://ghe.example.com/api/v3', 'acme/todo'), 'https://ghe.example.com/acme/todo.git');
  t.is(defaultPushUrl('https://ghe.example.com:8443/api/v3/', 'acme/todo'), 'https://ghe.example.com:8443/acme/todo.git');
});

test('moderator doctor fails a github config without a token, and checks token, repository and base with one', async (t) => {
  const w = await world(t);
  const target = path.join(w.dir, 'doctor-target');
  fs.mkdirSync(target);
  fs.writeFileSync(path.join(target, 'duo-agent.config.yaml'), `model:\n  provider: replay\ngit:\n  provider: github\n  repository: acme/todo\n  api_url: ${w.fake.url}\n  push_url: ${w.bare}\nmonitor:\n  port: 0\n`);
  // Not cliSync: the fake answers from this process, which must not be blocked meanwhile.
  const without = await cliAsync(['doctor', '--target', target], { env: { GITHUB_TOKEN: '' }, timeoutMs: 60_000 });
  t.is(without.code, 1, without.stdout);
  t.regex(without.stdout, /FAIL github +git\.provider is github but no token is set/);
  const withToken = await cliAsync(['doctor', '--target', target], { env: { DUO_AGENT_GIT_TOKEN: TOKEN }, timeoutMs: 60_000 });
  t.regex(withToken.stdout, /ok {3}github token +accepted, scopes: repo/);
  t.regex(withToken.stdout, /ok {3}github repo +acme\/todo \(private, default branch main\), push allowed/);
  t.regex(withToken.stdout, /ok {3}github base +main at [0-9a-f]{12}/);
  t.false(withToken.stdout.includes(TOKEN));
});

// ---- the charts and the views -------------------------------------------------------------------

test('/api/tasks gives each task the page of its PR', (t) => {
  const store = Store.open(':memory:');
  store.runs.create({ id: 'r1', target: '/t', requirements: 'req', settings: {}, snapshotVersion: 1, machineFingerprint: 'abc' });
  store.tasks.add('r1', [{ id: 'T1', title: 't', type: 'feature', description: 'd', acceptanceCriteria: [], dependsOn: [], origin: 'plan' }]);
  store.tasks.update('r1', 'T1', { status: 'in_review', prNumber: 1, prUrl: 'https://github.com/acme/todo/pull/7' });
  // tasksView reads the run view only; the live parts of the context are not needed for it.
  const runView = new RunView(store, 'r1');
  const view = tasksView({ view: runView, runId: 'r1' } as Parameters<typeof tasksView>[0]);
  t.is(view.tasks[0]?.pr_url, 'https://github.com/acme/todo/pull/7');
  runView.close();
  store.close();
});

// ---- the real CLI: the demo on "GitHub", killed and resumed -------------------------------------

test('the demo on GitHub, killed between a push and its PR, after a PR opened unrecorded, and between a merge and its bookkeeping, resumes to one PR and one merge per task', async (t) => {
  t.timeout(240_000);
  const target = newTarget('github');
  const dir = path.dirname(target);
  const home = path.join(dir, 'home');
  fs.mkdirSync(home);
  const bare = path.join(dir, 'remote.git');
  await sh(dir, home, 'init', '--quiet', '--bare', '--initial-branch=main', bare);
  // GitHub's repository: one empty commit, as the demo's recording starts from an empty repository.
  const emptyTree = await sh(bare, home, 'hash-object', '-t', 'tree', '-w', '/dev/null');
  await sh(bare, home, 'update-ref', 'refs/heads/main', await sh(bare, home, 'commit-tree', emptyTree, '-m', 'Initial commit'));
  await sh(dir, home, 'clone', '--quiet', bare, target);
  const fake = await startFakeGitHub({ ...repository, bare, token: TOKEN, scopes: ['repo'] });
  t.teardown(() => fake.close());
  const configFile = path.join(dir, 'github.yaml');
  fs.writeFileSync(configFile, [
    'git:',
    '  provider: github',
    '  repository: acme/todo',
    `  api_url: ${fake.url}`,
    `  push_url: ${bare}`,
    // No spacing of writes here: GitHub's 1 s and 3 s would make this run minutes long.
    '  write_spacing_ms: 0',
    '  notification_spacing_ms: 0',
    '',
  ].join('\n'));
  const env = { DUO_AGENT_GIT_TOKEN: TOKEN };
  const steps: string[] = [];
  const runOnce = async (args: string[], label: string, arrived?: () => boolean) => {
    const result = await cliAsync(args, { env, timeoutMs: 150_000, ...(arrived ? { kill: { label, poll: arrived } } : {}) });
    steps.push(`${label}: ${result.killed ? 'killed' : `exited ${result.code ?? result.signal}`} after ${result.ms} ms`);
    t.log(steps.at(-1));
    if (process.env.GITHUB_TEST_VERBOSE) t.log(result.stderr);
    return result;
  };

  // 1. Killed with T1's branch pushed and its PR not yet opened (the POST never reached GitHub's logic).
  const beforeOpen = fake.hold({ method: 'POST', path: /\/repos\/acme\/todo\/pulls$/ }, { apply: false });
  const first = await runOnce(['demo', '--target', target, '--config', configFile, '--replay-delay-ms', '0', '--json', ...FREE_PORT], 'between push and PR', beforeOpen.arrived);
  t.true(first.killed, first.stderr);
  t.is(fake.pulls.length, 0);
  await t.notThrowsAsync(sh(bare, home, 'rev-parse', '--verify', 'refs/heads/duo-agent/feature/T1'), 'the branch was pushed');
  const runId = withDb(target, (db) => (db.prepare('SELECT id FROM runs').get() as { id: string }).id);
  const resume = ['--resume', runId, '--target', target, '--json', ...FREE_PORT];

  // 2. Killed after GitHub opened T1's PR, before the answer came back.
  const opened = fake.hold({ method: 'POST', path: /\/repos\/acme\/todo\/pulls$/ }, { apply: true });
  const second = await runOnce(resume, 'PR opened, not recorded', opened.arrived);
  t.true(second.killed, second.stderr);
  t.is(fake.pulls.length, 1);

  // 3. Killed after GitHub merged T1's PR, before the answer came back (nothing recorded, main not updated).
  const merged = fake.hold({ method: 'PUT', path: /\/pulls\/\d+\/merge$/ }, { apply: true });
  const third = await runOnce(resume, 'between merge and bookkeeping', merged.arrived);
  t.true(third.killed, third.stderr);
  t.is(fake.merges.length, 1);
  const unrecorded = dbPoll(target, `SELECT 1 FROM pull_requests WHERE task_id = 'T1' AND status = 'merged'`);
  t.false(unrecorded.poll(), 'the merge was not recorded before the kill');
  unrecorded.dispose();

  const last = await runOnce(resume, 'to the end');
  t.is(last.code, 0, last.stderr);
  const summary = parseSummary(last.stdout);
  t.is(summary.outcome, 'done');
  t.is(summary.prsMerged, summary.tasksTotal);

  // GitHub saw one PR per task, each merged exactly once, in the order the tasks ran.
  const tasks = withDb(target, (db) => db.prepare('SELECT id, branch, pr_url FROM tasks WHERE run_id = ? ORDER BY id').all(runId) as { id: string; branch: string; pr_url: string | null }[]);
  t.is(fake.pulls.length, tasks.length);
  t.deepEqual(fake.pulls.map((pull) => pull.head).sort(), tasks.map((task) => task.branch).sort());
  t.true(fake.pulls.every((pull) => pull.merged));
  t.is(fake.merges.length, tasks.length);
  t.is(new Set(fake.merges.map((merge) => merge.pull)).size, tasks.length, 'no PR merged twice');
  // The local base holds GitHub's merged result; every merge commit carries its step.
  t.is(await sh(target, home, 'rev-parse', 'main'), await sh(bare, home, 'rev-parse', 'main'));
  t.is(await sh(target, home, 'status', '--porcelain'), '');
  const trailers = (await sh(bare, home, 'log', '--merges', '--format=%(trailers:key=Moderator-Step,valueonly)', 'main')).split('\n').filter((line) => line !== '');
  t.deepEqual(trailers.sort(), tasks.map((task) => `merge:${task.id}`).sort());

  // Moderator's records point at GitHub's PRs; every review round was posted once.
  const rows = withDb(target, (db) => db.prepare('SELECT task_id, branch, remote_number, url, status FROM pull_requests WHERE run_id = ?').all(runId) as { task_id: string; branch: string; remote_number: number; url: string; status: string }[]);
  t.is(rows.length, tasks.length);
  for (const row of rows) {
    const pull = fake.pulls.find((candidate) => candidate.head === row.branch);
    t.is(row.remote_number, pull?.number ?? -1);
    t.is(row.url, `${fake.url}/acme/todo/pull/${pull?.number ?? -1}`);
    t.is(row.status, 'merged');
    t.is(tasks.find((task) => task.id === row.task_id)?.pr_url, row.url);
  }
  const rounds = withDb(target, (db) => (db.prepare('SELECT COUNT(*) AS n FROM reviews WHERE run_id = ?').get(runId) as { n: number }).n);
  const markers = fake.reviews.map((posted) => /<!-- moderator-review (.+) -->/.exec(posted.body)?.[1]);
  t.is(markers.length, rounds);
  t.is(new Set(markers).size, markers.length, 'no review posted twice');
  t.true(fake.pulls.every((pull) => /### Acceptance criteria\n- /.test(pull.body) && /### Tests/.test(pull.body)), 'PR bodies carry the criteria and the test summary');
  const output = [first, second, third, last].map((result) => result.stderr).join('\n');
  t.regex(output, new RegExp(`T1: PR #1 opened, tests passing: ${fake.url}/acme/todo/pull/\\d+`));
  t.regex(output, /main fast-forwarded to GitHub's [0-9a-f]{12}/, 'the resume after the unrecorded merge brought main up to GitHub first');
  t.false(output.includes(TOKEN));
  const logs = path.join(target, '.duo-agent', 'logs');
  for (const file of fs.readdirSync(logs)) t.false(fs.readFileSync(path.join(logs, file), 'utf8').includes(TOKEN), `${file} holds no token`);
  t.regex(fs.readFileSync(path.join(logs, 'git.jsonl'), 'utf8'), /found acme\/todo#7 already open for duo-agent\/feature\/T1 \(opened by an interrupted step\)/, 'the git log tells what happened on GitHub');
  for (const file of ['moderator.db', 'moderator.db-wal'].map((name) => path.join(target, '.duo-agent', name)).filter((file) => fs.existsSync(file))) {
    t.false(fs.readFileSync(file).includes(TOKEN), `nor does ${path.basename(file)}`);
  }
});
