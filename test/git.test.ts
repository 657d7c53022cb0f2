import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import test, { type ExecutionContext } from 'ava';
import { GitError } from '../services/git/git-error.ts';
import { GitRunner } from '../services/git/git-runner.ts';
import { GitService, type GitServiceOptions } from '../services/git/git-service.ts';
import { readCommitFromFiles } from '../services/git/ref-files.ts';

/*
 * Real git in temp folders. The service runs with HOME pointing at a hostile global config
 * (another identity, gpg signing, failing hooks, colour, merge.ff=only, ...) so these tests
 * fail if any of the user's settings leak into Moderator's commits. The set-up helper `sh`
 * runs git with its own clean HOME and no inherited GIT_* variables (npm and ava may set some).
 */

const identity = { name: 'Moderator Bot', email: 'moderator@example.invalid' };

function tempDir(t: ExecutionContext, label: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `moderator-git-${label}-`));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

interface Sandbox {
  /** The target repository folder (not created yet). */
  root: string;
  options: GitServiceOptions;
  sh: (cwd: string, ...args: string[]) => string;
}

function sandbox(t: ExecutionContext, extra: Partial<GitServiceOptions> = {}): Sandbox {
  const base = tempDir(t, 'sandbox');
  const hostileHome = path.join(base, 'hostile-home');
  const hooks = path.join(hostileHome, 'hooks');
  fs.mkdirSync(hooks, { recursive: true });
  for (const hook of ['pre-commit', 'commit-msg', 'pre-merge-commit', 'post-checkout', 'prepare-commit-msg']) {
    fs.writeFileSync(path.join(hooks, hook), '#!/bin/sh\necho "hostile hook refuses" >&2\nexit 1\n', { mode: 0o755 });
  }
  fs.writeFileSync(path.join(hostileHome, '.gitconfig'), [
    '[user]', '\tname = Hostile User', '\temail = hostile@example.invalid',
    '[author]', '\tname = Hostile Author', '\temail = author@example.invalid',
    '[commit]', '\tgpgsign = true', '\tcleanup = strip',
    '[merge]', '\tff = only', '\tlog = true', '\tautoStash = true',
    '[color]', '\tui = always',
    '[status]', '\tshowUntrackedFiles = no',
    '[core]', `\thooksPath = ${hooks}`, '\tquotePath = true',
    '[init]', '\tdefaultBranch = trunk',
    '[diff]', '\tnoprefix = true', '\texternal = /bin/false',
    '[rerere]', '\tenabled = true',
    '',
  ].join('\n'));
  const cleanHome = path.join(base, 'clean-home');
  fs.mkdirSync(cleanHome);
  const helperEnv = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: cleanHome,
    LC_ALL: 'C',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_AUTHOR_NAME: 'Test Person',
    GIT_AUTHOR_EMAIL: 'person@example.invalid',
    GIT_COMMITTER_NAME: 'Test Person',
    GIT_COMMITTER_EMAIL: 'person@example.invalid',
  };
  const sh = (cwd: string, ...args: string[]): string =>
    execFileSync('git', args, { cwd, env: helperEnv, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const root = path.join(base, 'target');
  const options: GitServiceOptions = {
    root,
    identity,
    baseBranch: 'main',
    env: { PATH: helperEnv.PATH, HOME: hostileHome, LC_ALL: 'C' },
    ...extra,
  };
  return { root, options, sh };
}

/** A prepared target with one committed file, and its service. */
async function preparedRepo(t: ExecutionContext, files: Record<string, string> = { 'README.md': '# demo\n' }): Promise<Sandbox & { git: GitService }> {
  const box = sandbox(t);
  fs.mkdirSync(box.root);
  box.sh(box.root, 'init', '-q', '-b', 'main');
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(box.root, name)), { recursive: true });
    fs.writeFileSync(path.join(box.root, name), content);
  }
  box.sh(box.root, 'add', '-A');
  box.sh(box.root, 'commit', '-q', '-m', 'user commit');
  await GitService.prepareTarget(box.options);
  return { ...box, git: new GitService(box.options) };
}

const count = (box: Sandbox, ref: string): number => Number(box.sh(box.root, 'rev-list', '--count', ref).trim());
const worktreePath = (box: Sandbox, id: string): string => path.join(box.root, '.duo-agent', 'worktrees', id);

// ------------------------------------------------------------------ prepareTarget

test('prepareTarget creates a missing folder with an empty first commit on the base branch', async (t) => {
  const box = sandbox(t);
  t.deepEqual(await GitService.prepareTarget(box.options), { initialised: true });
  t.is(box.sh(box.root, 'branch', '--show-current').trim(), 'main', 'init.defaultBranch=trunk from the user config is ignored');
  t.is(box.sh(box.root, 'log', '--format=%s|%an <%ae>|%cn', 'main').trim(), 'Initial commit (created by Moderator)|Moderator Bot <moderator@example.invalid>|Moderator Bot');
  t.is(box.sh(box.root, 'ls-tree', '-r', '--name-only', 'HEAD').trim(), '', 'the first commit is empty');
  t.is(box.sh(box.root, 'status', '--porcelain').trim(), '');
});

test('prepareTarget initialises an empty folder that only holds .duo-agent, and only once', async (t) => {
  const box = sandbox(t);
  fs.mkdirSync(path.join(box.root, '.duo-agent'), { recursive: true });
  fs.writeFileSync(path.join(box.root, '.duo-agent', 'moderator.db'), 'x');
  t.deepEqual(await GitService.prepareTarget(box.options), { initialised: true });
  t.deepEqual(await GitService.prepareTarget(box.options), { initialised: false });
  t.is(count(box, 'main'), 1);
  t.is(box.sh(box.root, 'status', '--porcelain', '--untracked-files=all').trim(), '', '.duo-agent is excluded');
});

test('prepareTarget refuses a non-empty folder that is not a repository, and leaves it alone', async (t) => {
  const box = sandbox(t);
  fs.mkdirSync(box.root);
  fs.writeFileSync(path.join(box.root, 'notes.txt'), 'mine');
  const error = await t.throwsAsync(GitService.prepareTarget(box.options), { instanceOf: GitError });
  t.regex(error.message, /is not a git repository and not empty: run `git init` there/);
  t.is(error.code, 'git');
  t.false(fs.existsSync(path.join(box.root, '.git')));
});

test('prepareTarget leaves an existing repository alone apart from the exclude entry, added once', async (t) => {
  const box = sandbox(t);
  fs.mkdirSync(box.root);
  box.sh(box.root, 'init', '-q', '-b', 'main');
  fs.writeFileSync(path.join(box.root, 'a.txt'), 'a');
  fs.writeFileSync(path.join(box.root, '.git', 'info', 'exclude'), '# user excludes\n*.tmp');
  box.sh(box.root, 'add', '-A');
  box.sh(box.root, 'commit', '-q', '-m', 'first');
  const head = box.sh(box.root, 'rev-parse', 'HEAD').trim();
  for (let i = 0; i < 3; i += 1) t.deepEqual(await GitService.prepareTarget(box.options), { initialised: false });
  t.is(box.sh(box.root, 'rev-parse', 'HEAD').trim(), head);
  const exclude = fs.readFileSync(path.join(box.root, '.git', 'info', 'exclude'), 'utf8');
  t.is(exclude.split('\n').filter((line) => line === '.duo-agent/').length, 1);
  t.true(exclude.startsWith('# user excludes\n*.tmp\n'), 'the user lines are kept and the last one is not glued to ours');
  t.false(fs.existsSync(path.join(box.root, '.gitignore')));
});

test('prepareTarget gives a repository without commits an empty first commit without the staged files', async (t) => {
  const box = sandbox(t);
  fs.mkdirSync(box.root);
  box.sh(box.root, 'init', '-q', '-b', 'trunk');
  fs.writeFileSync(path.join(box.root, 'staged.txt'), 'user work');
  box.sh(box.root, 'add', 'staged.txt');
  t.deepEqual(await GitService.prepareTarget(box.options), { initialised: true });
  t.is(box.sh(box.root, 'branch', '--show-current').trim(), 'main');
  t.is(box.sh(box.root, 'ls-tree', '-r', '--name-only', 'main').trim(), '');
  t.is(box.sh(box.root, 'status', '--porcelain').trim(), 'A  staged.txt', 'the staged file is still staged, not committed');
});

// ------------------------------------------------------------------ assertClean

test('assertClean passes on a clean base branch and ignores .duo-agent', async (t) => {
  const box = await preparedRepo(t);
  fs.mkdirSync(path.join(box.root, '.duo-agent', 'logs'), { recursive: true });
  fs.writeFileSync(path.join(box.root, '.duo-agent', 'logs', 'x.jsonl'), '{}');
  await t.notThrowsAsync(box.git.assertClean());
});

test('assertClean refuses a dirty work tree and names the files', async (t) => {
  const box = await preparedRepo(t);
  fs.writeFileSync(path.join(box.root, 'README.md'), 'changed');
  fs.writeFileSync(path.join(box.root, 'new file.js'), 'x');
  const error = await t.throwsAsync(box.git.assertClean(), { instanceOf: GitError });
  t.is(error.message, `the work tree of ${box.root} has uncommitted changes (README.md, new file.js): commit or stash them first`);
});

test('assertClean lists at most five paths', async (t) => {
  const box = await preparedRepo(t);
  for (let i = 0; i < 7; i += 1) fs.writeFileSync(path.join(box.root, `f${i}.txt`), 'x');
  const error = await t.throwsAsync(box.git.assertClean(), { instanceOf: GitError });
  t.regex(error.message, /\(f0\.txt, f1\.txt, f2\.txt, f3\.txt, f4\.txt and 2 more\)/);
});

test('assertClean refuses another branch and a missing base branch', async (t) => {
  const box = await preparedRepo(t);
  box.sh(box.root, 'checkout', '-q', '-b', 'topic');
  const wrong = await t.throwsAsync(box.git.assertClean(), { instanceOf: GitError });
  t.regex(wrong.message, /is on branch topic, not the base branch main/);
  const missing = new GitService({ ...box.options, baseBranch: 'develop' });
  const error = await t.throwsAsync(missing.assertClean(), { instanceOf: GitError });
  t.is(error.message, `the base branch develop (git.base_branch) does not exist in ${box.root} (branches: main, topic): set git.base_branch to one of them, or leave it unset to use the checked-out branch`);
});

// ------------------------------------------------------------------ the task flow

test('worktree, writeFiles, commitAll and mergeNoFf take a task onto the base branch', async (t) => {
  const box = await preparedRepo(t);
  const branch = GitService.branchName('moderator', 'feature', 'T1');
  const wt = worktreePath(box, 'T1');
  await box.git.ensureWorktree(branch, wt);
  t.is(box.sh(wt, 'branch', '--show-current').trim(), 'moderator/feature/T1');

  await box.git.writeFiles(wt, [{ path: 'src/hello.ts', content: 'export const hello = 1;\n' }], ['README.md']);
  const message = GitService.commitMessage({
    id: 'T1', type: 'feature', title: 'Add hello', description: '# Heading kept\nbody', acceptanceCriteria: ['hello is exported'],
  });
  const commit = await box.git.commitAll(wt, message, 'run1:T1:implement');
  t.is(box.sh(wt, 'rev-parse', 'HEAD').trim(), commit);
  t.is(box.sh(wt, 'log', '-1', '--format=%an <%ae>|%cn <%ce>').trim(), 'Moderator Bot <moderator@example.invalid>|Moderator Bot <moderator@example.invalid>');
  const body = box.sh(wt, 'log', '-1', '--format=%B');
  t.true(body.includes('# Heading kept'), 'commit.cleanup=strip from the user config does not eat "#" lines');
  t.true(body.trimEnd().endsWith('- hello is exported\n\nModerator-Step: run1:T1:implement'));
  t.is(box.sh(wt, 'log', '-1', '--format=%(trailers:key=Moderator-Step,valueonly)').trim(), 'run1:T1:implement');
  t.deepEqual(await box.git.changedFiles(branch), ['README.md', 'src/hello.ts']);
  const diff = await box.git.diff(branch);
  t.true(diff.includes('+++ b/src/hello.ts'), 'diff.noprefix and diff.external from the user config are ignored');
  t.false(diff.includes('\u001b['), 'no colour codes');

  const merge = await box.git.mergeNoFf(branch, 'Merge T1: Add hello', 'run1:T1:merge');
  t.is(box.sh(box.root, 'rev-parse', 'main').trim(), merge);
  t.is(box.sh(box.root, 'rev-list', '--parents', '-n', '1', merge).trim().split(' ').length, 3, 'a merge commit with two parents');
  t.is(box.sh(box.root, 'log', '-1', '--format=%B', merge).trim(), 'Merge T1: Add hello\n\nModerator-Step: run1:T1:merge', 'no merge.log shortlog');
  t.is(fs.readFileSync(path.join(box.root, 'src', 'hello.ts'), 'utf8'), 'export const hello = 1;\n');
  t.false(fs.existsSync(path.join(box.root, 'README.md')));
  t.deepEqual((await box.git.log('main', 1)).map((c) => c.subject), ['Merge T1: Add hello']);
  t.is(await box.git.headSha(), merge);
  t.is(await box.git.treeHash('main'), box.sh(box.root, 'rev-parse', 'main^{tree}').trim());
  t.deepEqual(await box.git.listBranches('moderator/'), ['moderator/feature/T1']);

  await box.git.removeWorktree(wt);
  t.false(fs.existsSync(wt));
  t.true(await box.git.branchExists(branch), 'the branch is kept');
  await t.notThrowsAsync(box.git.assertClean());
});

test('every mutating call repeated after success changes nothing', async (t) => {
  const box = await preparedRepo(t);
  const branch = 'moderator/fix/T2';
  const wt = worktreePath(box, 'T2');
  await box.git.ensureWorktree(branch, wt);
  await box.git.ensureWorktree(branch, wt);
  t.is(box.sh(box.root, 'worktree', 'list').trim().split('\n').length, 2);

  await box.git.writeFiles(wt, [{ path: 'a.txt', content: 'a\n' }]);
  const first = await box.git.commitAll(wt, 'fix(T2): a', 'run1:T2:commit');
  // The resumed step finds its commit even with fresh edits lying around, and keeps them.
  fs.writeFileSync(path.join(wt, 'stray.txt'), 'later work');
  t.is(await box.git.commitAll(wt, 'fix(T2): a', 'run1:T2:commit'), first);
  const base = count(box, 'main');
  t.is(count(box, branch), base + 1);
  t.true(fs.existsSync(path.join(wt, 'stray.txt')));
  fs.rmSync(path.join(wt, 'stray.txt'));

  // A step key that is a prefix of another one is still a different step.
  const second = await box.git.commitAll(wt, 'fix(T2): nothing changed', 'run1:T2:commit2');
  t.not(second, first);
  t.is(count(box, branch), base + 2, 'an unchanged tree still gets its own (empty) commit');
  t.is(await box.git.commitAll(wt, 'fix(T2): a', 'run1:T2:commit'), first);

  const merge = await box.git.mergeNoFf(branch, 'Merge T2', 'run1:T2:merge');
  const afterMerge = count(box, 'main');
  t.is(await box.git.mergeNoFf(branch, 'Merge T2', 'run1:T2:merge'), merge);
  t.is(count(box, 'main'), afterMerge);
  // After the merge the branch's commits are part of main; a re-run still finds its commit.
  t.is(await box.git.commitAll(wt, 'fix(T2): a', 'run1:T2:commit'), first);
  t.is(count(box, branch), base + 2);

  await box.git.removeWorktree(wt);
  await box.git.removeWorktree(wt);
  t.is(box.sh(box.root, 'worktree', 'list').trim().split('\n').length, 1);
  t.deepEqual(await box.git.listBranches('moderator/'), [branch]);
});

test('mergeNoFf of a branch someone already merged returns the base tip and merges nothing', async (t) => {
  const box = await preparedRepo(t);
  const wt = worktreePath(box, 'T3');
  await box.git.ensureWorktree('moderator/feature/T3', wt);
  await box.git.writeFiles(wt, [{ path: 'b.txt', content: 'b' }]);
  await box.git.commitAll(wt, 'b', 'run1:T3:commit');
  box.sh(box.root, 'merge', '-q', '--no-ff', '-m', 'merged by hand', 'moderator/feature/T3');
  const head = box.sh(box.root, 'rev-parse', 'HEAD').trim();
  t.is(await box.git.mergeNoFf('moderator/feature/T3', 'Merge T3', 'run1:T3:merge'), head);
  t.is(box.sh(box.root, 'rev-parse', 'HEAD').trim(), head);
});

test('mergeBaseInto: the base merged in without committing, nothing when either already holds the other', async (t) => {
  const box = await preparedRepo(t, { 'shared.txt': 'base\n' });
  const wt = worktreePath(box, 'T5');
  await box.git.ensureWorktree('moderator/feature/T5', wt);
  t.deepEqual(await box.git.mergeBaseInto(wt), { merging: false, conflicts: [] }, 'a branch made from the base holds it');
  await box.git.writeFiles(wt, [{ path: 'task.txt', content: 't\n' }]);
  await box.git.commitAll(wt, 'task', 'run1:T5:commit');
  fs.writeFileSync(path.join(box.root, 'main.txt'), 'm\n');
  box.sh(box.root, 'add', 'main.txt');
  box.sh(box.root, 'commit', '-q', '-m', 'main moved');
  t.deepEqual(await box.git.mergeBaseInto(wt), { merging: true, conflicts: [] });
  t.true(fs.existsSync(path.join(wt, 'main.txt')), 'the base is merged into the worktree, not committed');
  await box.git.abortBaseMerge(wt);
  t.false(fs.existsSync(path.join(wt, 'main.txt')));

  // Merged before a crash lost the record of it: merging the base in would make a merge commit the
  // base does not have, which the branch's own merge would then merge a second time.
  const branchHead = box.sh(wt, 'rev-parse', 'HEAD').trim();
  box.sh(box.root, 'merge', '-q', '--no-ff', '-m', 'merged before the crash', 'moderator/feature/T5');
  t.deepEqual(await box.git.mergeBaseInto(wt), { merging: false, conflicts: [] });
  t.is(box.sh(wt, 'rev-parse', 'HEAD').trim(), branchHead);
  t.is(box.sh(wt, 'status', '--porcelain').trim(), '');
});

test('a trial merge is the tree the real merge makes, built without moving a ref; a conflict is null; a killed trial worktree goes with crash recovery', async (t) => {
  const box = await preparedRepo(t, { 'shared.txt': 'base\n' });
  const refs = () => box.sh(box.root, 'for-each-ref', '--format=%(refname) %(objectname)');
  for (const [id, file] of [['A1', 'a.txt'], ['B1', 'b.txt'], ['C1', 'shared.txt']] as const) {
    const wt = worktreePath(box, id);
    await box.git.ensureWorktree(`moderator/feature/${id}`, wt);
    await box.git.writeFiles(wt, [{ path: file, content: `${id}\n` }]);
    await box.git.commitAll(wt, id, `run1:${id}:commit`);
  }
  const before = refs();
  const a = await box.git.trialMerge(box.sh(box.root, 'rev-parse', 'main').trim(), 'moderator/feature/A1');
  const ab = a && (await box.git.trialMerge(a.commit, 'moderator/feature/B1'));
  t.truthy(ab);
  t.is(refs(), before, 'no branch or ref moved');
  t.is(box.sh(box.root, 'status', '--porcelain').trim(), '');

  // The same merges for real, as the merge queue makes them: A merged into main, main into B, B into main.
  await box.git.mergeNoFf('moderator/feature/A1', 'Merge A1', 'run1:A1:merge');
  const wtB = worktreePath(box, 'B1');
  t.deepEqual(await box.git.mergeBaseInto(wtB), { merging: true, conflicts: [] });
  await box.git.commitAll(wtB, 'Merge main into B1', 'run1:B1:update');
  t.is(await box.git.treeOf(wtB, 'HEAD'), ab ? ab.tree : 'no trial merge', 'the updated branch has the tree the trial tested');

  t.truthy(await box.git.trialMerge(box.sh(box.root, 'rev-parse', 'main').trim(), 'moderator/feature/C1'), 'clean while main has not touched shared.txt');
  fs.writeFileSync(path.join(box.root, 'shared.txt'), 'main\n');
  box.sh(box.root, 'commit', '-q', '-am', 'main edits shared.txt');
  t.is(await box.git.trialMerge(box.sh(box.root, 'rev-parse', 'main').trim(), 'moderator/feature/C1'), null, 'conflicts: no trial');

  const trial = await box.git.checkoutTrial('B1-1', ab?.commit ?? '');
  t.true(fs.existsSync(path.join(trial, 'b.txt')));
  // Killed while a trial ran: the next session's crash recovery removes it.
  const fixed = await box.git.recoverAfterCrash({ lockWaitMs: 0 });
  t.true(fixed.some((line) => /removed the trial worktree \.duo-agent\/trials\/B1-1/.test(line)), fixed.join(' | '));
  t.false(fs.existsSync(trial));
  t.false(box.sh(box.root, 'worktree', 'list').includes('trials'));
});

test('a merge conflict is aborted and reported with the conflicting files', async (t) => {
  const box = await preparedRepo(t, { 'shared.txt': 'base\n', 'other.txt': 'o\n' });
  const wt = worktreePath(box, 'T4');
  await box.git.ensureWorktree('moderator/feature/T4', wt);
  await box.git.writeFiles(wt, [{ path: 'shared.txt', content: 'task\n' }, { path: 'other.txt', content: 'task\n' }]);
  await box.git.commitAll(wt, 'task edit', 'run1:T4:commit');
  fs.writeFileSync(path.join(box.root, 'shared.txt'), 'main\n');
  fs.writeFileSync(path.join(box.root, 'other.txt'), 'main\n');
  box.sh(box.root, 'commit', '-q', '-am', 'main edit');
  const head = box.sh(box.root, 'rev-parse', 'HEAD').trim();

  const error = await t.throwsAsync(box.git.mergeNoFf('moderator/feature/T4', 'Merge T4', 'run1:T4:merge'), { instanceOf: GitError });
  t.deepEqual(error.conflicts, ['other.txt', 'shared.txt']);
  t.regex(error.message, /stopped on conflicts in other\.txt, shared\.txt; the merge was aborted/);
  t.is(box.sh(box.root, 'rev-parse', 'HEAD').trim(), head);
  t.false(fs.existsSync(path.join(box.root, '.git', 'MERGE_HEAD')));
  t.is(box.sh(box.root, 'status', '--porcelain').trim(), '');
});

// ------------------------------------------------------------------ refs read from git's files

test('ref files answer HEAD and branch tips exactly as rev-parse does, and say "ask git" for anything else', async (t) => {
  const box = await preparedRepo(t);
  const wt = worktreePath(box, 'T9');
  await box.git.ensureWorktree('moderator/feature/T9', wt);
  await box.git.writeFiles(wt, [{ path: 'task.txt', content: 't\n' }]);
  const committed = await box.git.commitAll(wt, 'task', 'run1:T9:commit');
  const revParse = (cwd: string, spec: string) => box.sh(cwd, 'rev-parse', '--verify', spec).trim();

  t.is(committed, revParse(wt, 'HEAD'), 'the commit step reads its new HEAD from the files');
  t.is(await readCommitFromFiles(box.root, 'HEAD^{commit}'), revParse(box.root, 'HEAD'));
  t.is(await readCommitFromFiles(wt, 'HEAD'), revParse(wt, 'HEAD'), "a linked worktree's HEAD is in its admin folder");
  t.is(await readCommitFromFiles(wt, 'refs/heads/main^{commit}'), revParse(box.root, 'main'), 'branches are shared by every worktree');
  t.is(await box.git.branchHead('moderator/feature/T9'), committed);

  // Not said plainly by the files: undefined, and the service asks git instead.
  for (const spec of ['main', 'HEAD~1', 'refs/tags/v1', 'refs/heads/../HEAD', 'refs/heads/']) t.is(await readCommitFromFiles(box.root, spec), undefined, spec);
  fs.mkdirSync(path.join(box.root, 'sub'));
  t.is(await readCommitFromFiles(path.join(box.root, 'sub'), 'HEAD'), undefined, 'a subfolder: git would search upwards');
  box.sh(box.root, 'pack-refs', '--all');
  t.false(fs.existsSync(path.join(box.root, '.git', 'refs', 'heads', 'main')), 'packed: no loose file left');
  t.is(await readCommitFromFiles(box.root, 'refs/heads/main'), undefined);
  t.is(await box.git.branchHead('main'), revParse(box.root, 'main'), 'a packed ref is read by git');
  t.is(await box.git.headSha(), revParse(box.root, 'HEAD'));

  // Detached: HEAD holds the sha itself.
  box.sh(wt, 'checkout', '-q', '--detach', 'HEAD~1');
  t.is(await readCommitFromFiles(wt, 'HEAD'), revParse(wt, 'HEAD'));

  // A branch whose name is also a tag: the branch, as every caller means.
  box.sh(box.root, 'tag', 'moderator/feature/T9', 'main');
  t.is(await box.git.branchHead('moderator/feature/T9'), committed);
});

test('a branch made by this process from the base is known to hold it until the base moves, however it moves', async (t) => {
  const box = await preparedRepo(t, { 'shared.txt': 'base\n' });
  const counted: string[] = [];
  const run = GitRunner.prototype.test;
  GitRunner.prototype.test = function test(this: GitRunner, cwd: string, args: string[]) {
    counted.push(args[0] ?? '');
    return run.call(this, cwd, args);
  };
  t.teardown(() => {
    GitRunner.prototype.test = run;
  });
  const wt = worktreePath(box, 'T6');
  await box.git.ensureWorktree('moderator/feature/T6', wt);
  await box.git.writeFiles(wt, [{ path: 'task.txt', content: 't\n' }]);
  await box.git.commitAll(wt, 'task', 'run1:T6:commit');
  counted.length = 0;
  t.deepEqual(await box.git.mergeBaseInto(wt), { merging: false, conflicts: [] });
  t.deepEqual(counted, [], 'known without asking git');

  // Moved by someone else, with a ref update git makes (no Moderator call in between).
  box.sh(box.root, 'commit', '-q', '--allow-empty', '-m', 'moved elsewhere');
  t.deepEqual(await box.git.mergeBaseInto(wt), { merging: true, conflicts: [] });
  t.true(counted.includes('merge-base'), 'asked git once the base moved');
  await box.git.abortBaseMerge(wt);

  // A fresh service (a resumed process) knows nothing and asks git.
  counted.length = 0;
  const fresh = new GitService(box.options);
  await fresh.ensureWorktree('moderator/feature/T6', wt);
  await fresh.mergeBaseInto(wt);
  t.true(counted.includes('merge-base'));
});

// ------------------------------------------------------------------ repository config that executes

/**
 * Plants in the repository's `.git/config` every setting that makes git run a program, each
 * pointing at a script that leaves a marker file named after it (what a command in a worktree
 * could do without the sandbox: worktrees share this config).
 */
function plantExecutingConfig(t: ExecutionContext, box: Sandbox): { markers: string; planted: (name: string) => boolean } {
  const markers = tempDir(t, 'markers');
  const mark = path.join(markers, 'mark');
  // Prints its input file for textconv, a password for credential helpers and askpass.
  fs.writeFileSync(mark, `#!/bin/sh\nname="$1"; shift\ntouch "${markers}/ran-$name"\ncase "$name" in\n  textconv) cat "$1" ;;\n  credential) echo username=u; echo password=p ;;\n  askpass) echo p ;;\nesac\nexit 0\n`, { mode: 0o755 });
  // gpg.program is run as a program, not a shell command line: it gets a wrapper of its own.
  const gpg = path.join(markers, 'gpg');
  fs.writeFileSync(gpg, `#!/bin/sh\n"${mark}" gpg\nexit 1\n`, { mode: 0o755 });
  const hooks = path.join(markers, 'hooks');
  fs.mkdirSync(hooks);
  for (const hook of ['pre-commit', 'commit-msg', 'post-commit', 'post-checkout', 'post-merge', 'reference-transaction', 'pre-auto-gc']) {
    fs.writeFileSync(path.join(hooks, hook), `#!/bin/sh\n"${mark}" hook-${hook}\n`, { mode: 0o755 });
  }
  const settings: [string, string][] = [
    ['core.fsmonitor', `${mark} fsmonitor`],
    ['core.hooksPath', hooks],
    ['core.sshCommand', `${mark} ssh`],
    ['core.askPass', `${mark} askpass`],
    ['core.pager', `${mark} pager`],
    ['pager.log', `${mark} pager-log`],
    ['pager.diff', `${mark} pager-diff`],
    ['core.editor', `${mark} editor`],
    ['sequence.editor', `${mark} sequence-editor`],
    ['diff.external', `${mark} diff-external`],
    ['diff.evil.textconv', `${mark} textconv`],
    ['diff.evil.command', `${mark} diff-driver`],
    ['credential.helper', `!${mark} credential`],
    ['commit.gpgSign', 'true'],
    ['tag.gpgSign', 'true'],
    ['merge.verifySignatures', 'true'],
    ['gpg.program', gpg],
    ['gpg.ssh.program', gpg],
    ['protocol.ext.allow', 'always'],
  ];
  for (const [key, value] of settings) box.sh(box.root, 'config', key, value);
  return { markers, planted: (name) => fs.existsSync(path.join(markers, `ran-${name}`)) };
}

const ranMarkers = (markers: string): string[] => fs.readdirSync(markers).filter((name) => name.startsWith('ran-')).sort();

test('repository config that executes never runs inside Moderator\'s git calls', async (t) => {
  const box = await preparedRepo(t, { 'notes.txt': 'one\n' });
  const { markers, planted } = plantExecutingConfig(t, box);
  const branch = 'moderator/feature/X1';
  const wt = worktreePath(box, 'X1');

  // A whole task, the way a run drives it, plus the checks of a start and a resume.
  await box.git.assertClean();
  await box.git.recoverAfterCrash();
  await box.git.ensureWorktree(branch, wt);
  await box.git.writeFiles(wt, [{ path: '.gitattributes', content: '*.txt diff=evil\n' }, { path: 'notes.txt', content: 'two\n' }]);
  await box.git.commitAll(wt, 'edit notes', 'run1:X1:commit');
  t.regex(await box.git.diff(branch), /^-one\n\+two$/m, 'a plain diff, no external diff or textconv');
  t.deepEqual(await box.git.changedFiles(branch), ['.gitattributes', 'notes.txt']);
  await box.git.log(branch, 5);
  await box.git.headSha(branch);
  await box.git.mergeNoFf(branch, 'Merge X1', 'run1:X1:merge');
  await box.git.removeWorktree(wt);
  await box.git.assertClean();
  t.deepEqual(await GitService.prepareTarget(box.options), { initialised: false });
  await box.git.recoverAfterCrash();
  t.deepEqual(ranMarkers(markers), [], 'no planted program ran in the task\'s git calls');

  // Transports, through the one runner every call goes through: an ext:: URL, ssh, and an
  // http server that asks for credentials.
  const runner = new GitRunner({ identity, env: box.options.env, runHooks: false });
  await t.throwsAsync(runner.run(box.root, ['ls-remote', `ext::sh -c touch% ${path.join(markers, 'ran-ext')}`]), { instanceOf: GitError, message: /transport 'ext' not allowed/ });
  await t.throwsAsync(runner.run(box.root, ['ls-remote', 'ssh://127.0.0.1:1/repo.git']), { instanceOf: GitError });
  const server = http.createServer((_request, response) => {
    response.writeHead(401, { 'WWW-Authenticate': 'Basic realm="x"' }).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/repo.git`;
  await t.throwsAsync(runner.run(box.root, ['ls-remote', url]), { instanceOf: GitError, message: /terminal prompts disabled|Authentication failed/ });

  t.deepEqual(ranMarkers(markers), [], 'no planted program ran');

  // The plants are live: plain git, without Moderator's settings, runs them.
  fs.writeFileSync(path.join(box.root, 'notes.txt'), 'three\n');
  fs.appendFileSync(path.join(box.root, '.gitattributes'), '# changed\n');
  box.sh(box.root, 'status', '--porcelain');
  t.true(planted('fsmonitor'), 'plain git status runs core.fsmonitor');
  box.sh(box.root, 'diff');
  t.true(planted('diff-external'), 'plain git diff runs diff.external');
  t.true(planted('diff-driver'), 'plain git diff runs the diff driver of the committed .gitattributes');
  box.sh(box.root, 'diff', '--no-ext-diff');
  t.true(planted('textconv'), 'plain git diff runs the textconv of the committed .gitattributes');
  t.throws(() => box.sh(box.root, 'commit', '-q', '-am', 'signed?'));
  t.true(planted('hook-pre-commit'), 'plain git commit runs the planted hooks');
  t.true(planted('gpg'), 'plain git commit runs gpg.program');
  // Not `sh`: a synchronous git would block the event loop this fake server answers on.
  await t.throwsAsync(promisify(execFile)('git', ['ls-remote', url], { cwd: box.root, env: { PATH: box.options.env.PATH, HOME: box.options.env.HOME, GIT_TERMINAL_PROMPT: '0' } }));
  t.true(planted('credential'), 'plain git asks the planted credential helper');
  t.throws(() => box.sh(box.root, 'ls-remote', 'ssh://127.0.0.1:1/repo.git'));
  t.true(planted('ssh'), 'plain git runs core.sshCommand');
  t.throws(() => box.sh(box.root, 'ls-remote', `ext::sh -c touch% ${path.join(markers, 'ran-ext')}`));
  t.true(planted('ext'), 'plain git runs an ext:: transport');
});

// ------------------------------------------------------------------ half states after a kill

test('ensureWorktree recreates a worktree whose folder was deleted, on the existing branch', async (t) => {
  const box = await preparedRepo(t);
  const branch = 'moderator/feature/T5';
  const wt = worktreePath(box, 'T5');
  await box.git.ensureWorktree(branch, wt);
  await box.git.writeFiles(wt, [{ path: 'kept.txt', content: 'committed' }]);
  const sha = await box.git.commitAll(wt, 'kept', 'run1:T5:commit');
  fs.rmSync(wt, { recursive: true, force: true });

  await box.git.ensureWorktree(branch, wt);
  t.is(box.sh(wt, 'rev-parse', 'HEAD').trim(), sha, 'the branch was reused, not recreated from main');
  t.is(fs.readFileSync(path.join(wt, 'kept.txt'), 'utf8'), 'committed');
  t.deepEqual(await box.git.listBranches('moderator/'), [branch]);
});

test('ensureWorktree adds the worktree when a kill left only the branch', async (t) => {
  const box = await preparedRepo(t);
  box.sh(box.root, 'branch', 'moderator/feature/T6', 'main');
  const wt = worktreePath(box, 'T6');
  await box.git.ensureWorktree('moderator/feature/T6', wt);
  t.is(box.sh(wt, 'branch', '--show-current').trim(), 'moderator/feature/T6');
});

test('ensureWorktree replaces a leftover folder that is not a registered worktree', async (t) => {
  const box = await preparedRepo(t);
  const wt = worktreePath(box, 'T7');
  fs.mkdirSync(wt, { recursive: true });
  fs.writeFileSync(path.join(wt, 'half-written.txt'), 'junk');
  await box.git.ensureWorktree('moderator/feature/T7', wt);
  t.false(fs.existsSync(path.join(wt, 'half-written.txt')));
  t.true(fs.existsSync(path.join(wt, 'README.md')));
  t.is(box.sh(wt, 'status', '--porcelain').trim(), '');
});

test('ensureWorktree refuses to delete a non-empty folder outside .duo-agent', async (t) => {
  const box = await preparedRepo(t);
  const elsewhere = path.join(path.dirname(box.root), 'precious');
  fs.mkdirSync(elsewhere);
  fs.writeFileSync(path.join(elsewhere, 'keep.txt'), 'mine');
  await t.throwsAsync(box.git.ensureWorktree('moderator/feature/T8', elsewhere), { instanceOf: GitError, message: /refusing to delete/ });
  t.true(fs.existsSync(path.join(elsewhere, 'keep.txt')));
});

test('ensureWorktree repairs a worktree whose `git worktree add` was killed during checkout', async (t) => {
  const box = await preparedRepo(t, { 'a.txt': 'a', 'b.txt': 'b' });
  const branch = 'moderator/feature/T9';
  const wt = worktreePath(box, 'T9');
  await box.git.ensureWorktree(branch, wt);
  // The state measured after kill -9 during the checkout: still "locked initializing", an
  // index.lock instead of an index, part of the files.
  const admin = path.join(box.root, '.git', 'worktrees', 'T9');
  fs.writeFileSync(path.join(admin, 'locked'), 'initializing');
  fs.renameSync(path.join(admin, 'index'), path.join(admin, 'index.lock'));
  fs.rmSync(path.join(wt, 'b.txt'));

  await box.git.ensureWorktree(branch, wt);
  t.true(fs.existsSync(path.join(wt, 'b.txt')));
  t.is(box.sh(wt, 'status', '--porcelain').trim(), '');
  t.notRegex(box.sh(box.root, 'worktree', 'list', '--porcelain'), /locked/);
});

test('recoverAfterCrash aborts a leftover merge and removes stale locks, then finds nothing', async (t) => {
  const box = await preparedRepo(t, { 'c.txt': 'base\n' });
  const wt = worktreePath(box, 'T10');
  await box.git.ensureWorktree('moderator/feature/T10', wt);
  await box.git.writeFiles(wt, [{ path: 'c.txt', content: 'task\n' }]);
  await box.git.commitAll(wt, 'task', 'run1:T10:commit');
  fs.writeFileSync(path.join(box.root, 'c.txt'), 'main\n');
  box.sh(box.root, 'commit', '-q', '-am', 'main side');
  const head = box.sh(box.root, 'rev-parse', 'HEAD').trim();
  t.throws(() => box.sh(box.root, 'merge', '--no-ff', 'moderator/feature/T10'));
  t.true(fs.existsSync(path.join(box.root, '.git', 'MERGE_HEAD')), 'a real conflicted merge is in progress');

  const past = new Date(Date.now() - 60_000);
  const locks = [path.join(box.root, '.git', 'index.lock'), path.join(box.root, '.git', 'worktrees', 'T10', 'index.lock')];
  for (const lock of locks) {
    fs.writeFileSync(lock, '');
    fs.utimesSync(lock, past, past);
  }
  await t.throwsAsync(box.git.mergeNoFf('moderator/feature/T10', 'Merge', 'run1:T10:merge'), { instanceOf: GitError, message: /a merge is already in progress/ });
  t.true(fs.existsSync(path.join(box.root, '.git', 'MERGE_HEAD')), 'mergeNoFf does not abort a merge it did not start');

  const fixed = await box.git.recoverAfterCrash();
  t.true(fixed.some((line) => line.startsWith('aborted an unfinished merge')), fixed.join('; '));
  t.is(fixed.filter((line) => line.startsWith('removed the stale lock')).length, 2, fixed.join('; '));
  for (const lock of locks) t.false(fs.existsSync(lock));
  t.false(fs.existsSync(path.join(box.root, '.git', 'MERGE_HEAD')));
  t.is(box.sh(box.root, 'rev-parse', 'HEAD').trim(), head);
  t.is(box.sh(box.root, 'status', '--porcelain').trim(), '');
  t.deepEqual(await box.git.recoverAfterCrash(), []);
  await box.git.writeFiles(wt, [{ path: 'd.txt', content: 'd' }]);
  await t.notThrowsAsync(box.git.commitAll(wt, 'works again', 'run1:T10:commit2'));
});

/** A service that runs the repository's own hooks, with a HOME of its own (no hostile hooksPath). */
function withRepoHooks(t: ExecutionContext, box: Sandbox, hooks: Record<string, string>): GitService {
  for (const [name, body] of Object.entries(hooks)) {
    fs.writeFileSync(path.join(box.root, '.git', 'hooks', name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  }
  return new GitService({ ...box.options, runHooks: true, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: tempDir(t, 'home') } });
}

test('a merge killed (kill -9) before its commit is recovered and then done exactly once', async (t) => {
  const box = await preparedRepo(t);
  const wt = worktreePath(box, 'K1');
  await box.git.ensureWorktree('moderator/feature/K1', wt);
  await box.git.writeFiles(wt, [{ path: 'k.txt', content: 'k' }]);
  await box.git.commitAll(wt, 'k', 'run1:K1:commit');
  const before = box.sh(box.root, 'rev-parse', 'HEAD').trim();
  // git writes MERGE_HEAD and the merged index, then runs this hook, then writes the commit.
  // The merge is started by hand because the service, alive, would clean up after git's
  // death itself; here Moderator is meant to die with it.
  const hook = path.join(box.root, '.git', 'hooks', 'prepare-commit-msg');
  fs.writeFileSync(hook, '#!/bin/sh\nkill -9 $PPID\n', { mode: 0o755 });
  t.throws(() => box.sh(box.root, 'merge', '--no-ff', '-m', 'Merge K1\n\nModerator-Step: run1:K1:merge', 'moderator/feature/K1'));
  fs.rmSync(hook);
  t.is(box.sh(box.root, 'rev-parse', 'HEAD').trim(), before, 'killed before the commit');
  t.true(fs.existsSync(path.join(box.root, '.git', 'MERGE_HEAD')));

  const resumed = new GitService(box.options);
  t.true((await resumed.recoverAfterCrash()).some((line) => line.startsWith('aborted an unfinished merge')));
  const merge = await resumed.mergeNoFf('moderator/feature/K1', 'Merge K1', 'run1:K1:merge');
  t.is(box.sh(box.root, 'rev-list', '--count', `${before}..main`).trim(), '2', 'one merge commit plus the task commit');
  t.is(box.sh(box.root, 'rev-parse', `${merge}^1`).trim(), before);
  t.is(box.sh(box.root, 'status', '--porcelain').trim(), '');
});

test('a merge killed before MERGE_HEAD leaves files in the main tree: they are stashed, the merge is redone once', async (t) => {
  const box = await preparedRepo(t);
  const wt = worktreePath(box, 'K3');
  await box.git.ensureWorktree('moderator/docs/K3', wt);
  await box.git.writeFiles(wt, [{ path: 'README.md', content: '# docs\n' }]);
  await box.git.commitAll(wt, 'docs', 'run1:K3:commit');
  // What a power cut mid checkout left: the new file written, no MERGE_HEAD, no commit.
  fs.writeFileSync(path.join(box.root, 'README.md'), '# do');
  const before = box.sh(box.root, 'rev-parse', 'HEAD').trim();

  const resumed = new GitService(box.options);
  const fixed = await resumed.recoverAfterCrash();
  t.true(fixed.some((line) => line.startsWith('stashed 1 leftover change(s)')), fixed.join('; '));
  t.regex(box.sh(box.root, 'stash', 'list'), /left in the work tree by an interrupted merge/, 'kept, not deleted');
  const merge = await resumed.mergeNoFf('moderator/docs/K3', 'Merge K3', 'run1:K3:merge');
  t.is(box.sh(box.root, 'rev-parse', `${merge}^1`).trim(), before);
  t.is(fs.readFileSync(path.join(box.root, 'README.md'), 'utf8'), '# docs\n');
  t.is(box.sh(box.root, 'status', '--porcelain').trim(), '');
});

test('a commit or merge killed (kill -9) after it was written is found again, not repeated', async (t) => {
  const box = await preparedRepo(t);
  const wt = worktreePath(box, 'K2');
  await box.git.ensureWorktree('moderator/feature/K2', wt);
  await box.git.writeFiles(wt, [{ path: 'k.txt', content: 'k' }]);
  const dying = withRepoHooks(t, box, { 'post-commit': 'kill -9 $PPID', 'post-merge': 'kill -9 $PPID' });
  await t.throwsAsync(dying.commitAll(wt, 'k', 'run1:K2:commit'), { instanceOf: GitError });
  const written = box.sh(box.root, 'rev-parse', 'moderator/feature/K2').trim();
  await t.throwsAsync(dying.mergeNoFf('moderator/feature/K2', 'Merge K2', 'run1:K2:merge'), { instanceOf: GitError });
  const merged = box.sh(box.root, 'rev-parse', 'main').trim();
  t.is(box.sh(box.root, 'log', '-1', '--format=%s', merged).trim(), 'Merge K2', 'the merge commit was written before the kill');

  const resumed = new GitService(box.options);
  await resumed.recoverAfterCrash();
  t.is(await resumed.commitAll(wt, 'k', 'run1:K2:commit'), written);
  t.is(await resumed.mergeNoFf('moderator/feature/K2', 'Merge K2', 'run1:K2:merge'), merged);
  t.is(box.sh(box.root, 'rev-parse', 'main').trim(), merged);
  t.is(box.sh(box.root, 'status', '--porcelain').trim(), '');
});

test('recoverAfterCrash waits for a young lock that its (orphaned) git process releases', async (t) => {
  const box = await preparedRepo(t);
  const lock = path.join(box.root, '.git', 'index.lock');
  fs.writeFileSync(lock, '');
  setTimeout(() => fs.rmSync(lock, { force: true }), 300);
  const started = Date.now();
  // Ten minutes of grace: the wait must end when the lock goes (ava would time the test out first).
  t.deepEqual(await box.git.recoverAfterCrash({ lockWaitMs: 600_000 }), []);
  t.true(Date.now() - started >= 250);
  t.false(fs.existsSync(lock));
});

test('recoverAfterCrash removes a young lock once it comes of age', async (t) => {
  const box = await preparedRepo(t);
  const lock = path.join(box.root, '.git', 'index.lock');
  fs.writeFileSync(lock, '');
  t.deepEqual(await box.git.recoverAfterCrash({ lockWaitMs: 400 }), ['removed the stale lock .git/index.lock']);
  t.false(fs.existsSync(lock));
});

test('recoverAfterCrash prunes the registration of a deleted worktree', async (t) => {
  const box = await preparedRepo(t);
  const wt = worktreePath(box, 'T11');
  await box.git.ensureWorktree('moderator/feature/T11', wt);
  fs.rmSync(wt, { recursive: true, force: true });
  const fixed = await box.git.recoverAfterCrash();
  t.is(fixed.length, 1);
  t.regex(fixed[0] ?? '', /pruned the registration of the deleted worktree/);
  t.is(box.sh(box.root, 'worktree', 'list').trim().split('\n').length, 1);
});

// ------------------------------------------------------------------ writeFiles safety

test('writeFiles refuses paths outside the worktree or into .git, writing nothing', async (t) => {
  const box = await preparedRepo(t);
  const wt = worktreePath(box, 'T12');
  await box.git.ensureWorktree('moderator/feature/T12', wt);
  const outside = tempDir(t, 'outside');
  fs.symlinkSync(outside, path.join(wt, 'link'));
  const theirs = path.join(tempDir(t, 'theirs'), 'file.txt');
  fs.writeFileSync(theirs, 'theirs');
  fs.symlinkSync(theirs, path.join(wt, 'file-link'));
  fs.symlinkSync(path.join(outside, 'not-yet.txt'), path.join(wt, 'dangling'));
  const cases: [string, RegExp][] = [
    ['../x', /escapes the worktree/],
    ['a/../../x', /escapes the worktree/],
    ['/etc/x', /is absolute/],
    ['link/x', /symlink link .*outside the worktree/],
    ['file-link', /symlink file-link .*outside the worktree/],
    ['dangling', /symlink whose target does not exist/],
    ['.git/config', /into \.git/],
    ['sub/.GIT/config', /into \.git/],
    ['', /empty/],
  ];
  for (const [bad, why] of cases) {
    const error = await t.throwsAsync(box.git.writeFiles(wt, [{ path: 'fine.txt', content: 'ok' }, { path: bad, content: 'x' }]), { instanceOf: GitError }, bad);
    t.regex(error.message, why, bad);
  }
  await t.throwsAsync(box.git.writeFiles(wt, [], ['../outside.txt']), { instanceOf: GitError });
  t.deepEqual(fs.readdirSync(outside), []);
  t.is(fs.readFileSync(theirs, 'utf8'), 'theirs');
  t.false(fs.existsSync(path.join(wt, 'fine.txt')), 'nothing is written when one path is refused');
  await t.throwsAsync(box.git.writeFiles(box.root, [{ path: 'x.txt', content: 'x' }]), { instanceOf: GitError, message: /main work tree/ });
});

test('writeFiles accepts a symlink inside the worktree and deletes a link without touching its target', async (t) => {
  const box = await preparedRepo(t);
  const wt = worktreePath(box, 'T13');
  await box.git.ensureWorktree('moderator/feature/T13', wt);
  fs.mkdirSync(path.join(wt, 'real'));
  fs.symlinkSync('real', path.join(wt, 'alias'));
  await box.git.writeFiles(wt, [{ path: 'alias/deep/x.txt', content: 'x' }]);
  t.is(fs.readFileSync(path.join(wt, 'real', 'deep', 'x.txt'), 'utf8'), 'x');
  const outside = tempDir(t, 'outside');
  fs.writeFileSync(path.join(outside, 'target.txt'), 'keep');
  fs.symlinkSync(path.join(outside, 'target.txt'), path.join(wt, 'out-link'));
  await box.git.writeFiles(wt, [], ['out-link', 'missing.txt']);
  t.false(fs.existsSync(path.join(wt, 'out-link')));
  t.is(fs.readFileSync(path.join(outside, 'target.txt'), 'utf8'), 'keep');
});

// ------------------------------------------------------------------ small pieces

test('diff is cut at maxBytes with a marker line', async (t) => {
  const box = await preparedRepo(t);
  const wt = worktreePath(box, 'T14');
  await box.git.ensureWorktree('moderator/feature/T14', wt);
  await box.git.writeFiles(wt, [{ path: 'big.txt', content: 'line of text ü\n'.repeat(2000) }]);
  await box.git.commitAll(wt, 'big', 'run1:T14:commit');
  const full = await box.git.diff('moderator/feature/T14', 1_000_000);
  t.false(full.includes('truncated'));
  const cut = await box.git.diff('moderator/feature/T14', 1000);
  t.regex(cut, /\n\[… diff truncated: \d+ of \d+ bytes shown\]\n$/);
  t.true(Buffer.byteLength(cut) < 1100);
  t.false(cut.includes('\ufffd'), 'no character split in half');
});

test('the target hooks run only when asked', async (t) => {
  const box = await preparedRepo(t);
  const withHooks = new GitService({ ...box.options, runHooks: true });
  const wt = worktreePath(box, 'T15');
  await box.git.ensureWorktree('moderator/feature/T15', wt);
  await t.throwsAsync(withHooks.commitAll(wt, 'x', 'run1:T15:commit'), { instanceOf: GitError, message: /hostile hook refuses/ });
  await t.notThrowsAsync(box.git.commitAll(wt, 'x', 'run1:T15:commit'));
});

test('git failures are one-line GitErrors saying what failed where', async (t) => {
  const box = await preparedRepo(t);
  const error = await t.throwsAsync(box.git.mergeNoFf('moderator/none', 'm', 'run1:x'), { instanceOf: GitError });
  t.is(error.message, 'cannot merge moderator/none into main: the branch does not exist');
  const bad = await t.throwsAsync(box.git.headSha('no-such-ref'), { instanceOf: GitError });
  t.regex(bad.message, new RegExp(`^git rev-parse failed in ${box.root}: `));
  t.false(bad.message.includes('\n'));
  await t.throwsAsync(box.git.commitAll(worktreePath(box, 'nope'), 'm', 'k'), { instanceOf: GitError, message: /is not a worktree/ });
  await t.throwsAsync(box.git.ensureWorktree('bad..name', worktreePath(box, 'x')), { instanceOf: GitError, message: /invalid branch name/ });
  await t.throwsAsync(box.git.commitAll(box.root, 'm', 'two\nlines'), { instanceOf: GitError, message: /invalid step key/ });
});

test('branchName keeps to characters git accepts', (t) => {
  t.is(GitService.branchName('moderator', 'feature', 'T1'), 'moderator/feature/T1');
  t.is(GitService.branchName('duo/agent', 'Bug Fix', 'T 1: login?..lock'), 'duo/agent/bug-fix/T-1-login');
  t.is(GitService.branchName('moderator', '..', '-x.lock'), 'moderator/task/x');
});

test('commitMessage is structured and keeps the subject within 72 characters', (t) => {
  const task = {
    id: 'T7', type: 'feature', title: 'A very long title that goes on and on well past the limit of a subject line',
    description: 'What it does.', acceptanceCriteria: ['first', 'second'],
  };
  const message = GitService.commitMessage(task);
  const [subject = ''] = message.split('\n');
  t.true([...subject].length <= 72 && [...subject].length >= 70, subject);
  t.true(subject.startsWith('feature(T7): A very long title'));
  t.true(subject.endsWith('…'));
  t.is(message.slice(subject.length), '\n\nWhat it does.\n\nTask: T7\nAcceptance criteria:\n- first\n- second');
  t.is(GitService.commitMessage({ ...task, title: 'Short' }, 'Summary instead.').split('\n\n')[1], 'Summary instead.');
});
