import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { messageOf } from '../../errors.ts';
import {
  branchName, checkStepKey, commitMessage, hasStepTrailer, stepKeysOf, stepTrailerLine, withStepTrailer, type CommitTask,
} from './commit-message.ts';
import { GitError } from './git-error.ts';
import { GitRunner } from './git-runner.ts';
import { RepositoryMemo, adminLooksWhole, type KnownWorktree, headFileIsOn, plainLayout, worktreeAdminOf, type RepositoryLayout } from './repository-memo.ts';
import { resolveInside } from './safe-path.ts';
import { findLockFiles, removeStaleLock } from './stale-locks.ts';

/** Moderator's own folder in the target; kept out of git through `.git/info/exclude`. */
const STATE_DIR = '.duo-agent';
const INITIAL_COMMIT_MESSAGE = 'Initial commit (created by Moderator)';
/** Moderator's settings files a user keeps in the target; untracked, they do not make the work tree dirty. */
const SETTINGS_FILES = new Set(['duo-agent.config.yaml', 'agents.yaml']);
/** How many of a merged task branch's newest commits are searched for a step's commit. */
const MERGED_SEARCH_DEPTH = 500;
/**
 * One component of a branch name that is a valid ref name for certain: a strict subset of
 * check-ref-format's rules (no "..", no leading or trailing ".", no ".lock" end, none of
 * `~^:?*[\\ @{`). Names made of such components need no git process to be checked; any other
 * name is asked of `git check-ref-format`.
 */
const PLAIN_REF_COMPONENT = /^[A-Za-z0-9_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*$/;

export interface GitIdentity {
  name: string;
  email: string;
}

export interface GitServiceOptions {
  /** The target repository's top directory (made absolute). */
  root: string;
  /** Author and committer of every commit Moderator makes; the user's own identity is never used. */
  identity: GitIdentity;
  /** The branch tasks start from and merge into. */
  baseBranch: string;
  log?: (msg: string) => void;
  /**
   * The whole environment of the git processes; nothing else of this process is inherited. git
   * needs PATH and HOME (for the user's global config, of which Moderator overrides what matters).
   * GIT_*, EDITOR, VISUAL, PAGER and SSH_ASKPASS keys are dropped: they would redirect git
   * (GIT_DIR, GIT_INDEX_FILE, ...) or start a program.
   */
  env: Record<string, string>;
  /**
   * Run the target's git hooks (pre-commit, commit-msg, post-checkout, ...) on Moderator's own
   * commits, merges and worktrees. Default false: an unattended run cannot answer a hook that
   * fails for lack of installed tooling in a fresh worktree, and the target's tests are run
   * separately by the test runner.
   */
  runHooks?: boolean;
}

export interface CommitInfo {
  sha: string;
  subject: string;
  body: string;
}

export interface RecoverOptions {
  /**
   * How long a lock file younger than this is given to disappear before it is deleted, in ms
   * (default 15000). Measured: after `kill -9` of the node process, a `git worktree add` it had
   * spawned went on for seconds holding `index.lock`; deleting a live lock corrupts the index.
   */
  lockWaitMs?: number;
}

interface WorktreeEntry {
  path: string;
  branch: string | null;
  locked: string | null;
}

function isErrno(error: unknown, code: string): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === code;
}

async function realOrResolved(file: string): Promise<string> {
  try {
    return await fs.realpath(file);
  } catch {
    return path.resolve(file);
  }
}

function isWithin(parent: string, child: string): boolean {
  const rel = path.relative(parent, child);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

/** Cuts UTF-8 text to at most `maxBytes`, at a line end when one is near, with a marker line. */
function truncateBytes(text: string, maxBytes: number, what: string): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= maxBytes) return text;
  let end = Math.max(0, maxBytes);
  // Never split a multi-byte character: step back over continuation bytes.
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end -= 1;
  const lastNewline = bytes.lastIndexOf(0x0a, end - 1);
  if (lastNewline >= end / 2) end = lastNewline + 1;
  const head = bytes.subarray(0, end).toString('utf8');
  return `${head}${head.endsWith('\n') || head === '' ? '' : '\n'}[… ${what} truncated: ${end} of ${bytes.length} bytes shown]\n`;
}

/**
 * Git on one target repository and its task worktrees. Every mutating method may be called
 * again after the process was killed at any point (DESIGN, checkpoint rule 2): each one looks
 * at the real repository first and completes or skips the work, never duplicating a branch,
 * commit or merge.
 */
export class GitService {
  readonly root: string;
  readonly baseBranch: string;
  private readonly runner: GitRunner;
  private readonly logLine: (msg: string) => void;
  /** Operations on the main work tree (merges, recovery) run one at a time: they share one index. */
  private mainQueue: Promise<unknown> = Promise.resolve();
  /** What this process already verified; see RepositoryMemo. */
  private readonly memo = new RepositoryMemo();

  constructor(options: GitServiceOptions) {
    this.root = path.resolve(options.root);
    this.baseBranch = options.baseBranch;
    this.logLine = options.log ?? (() => {});
    for (const [field, value] of [['identity.name', options.identity.name], ['identity.email', options.identity.email]] as const) {
      if (value.trim() === '' || /[\n\r<>]/.test(value)) throw new GitError(`invalid git ${field} ${JSON.stringify(value)}`);
    }
    if (!/^[A-Za-z0-9._/-]+$/.test(this.baseBranch) || /(^[-/.]|\.\.|\/\/|\/$|\.lock$|\.$)/.test(this.baseBranch)) {
      throw new GitError(`invalid base branch name ${JSON.stringify(this.baseBranch)}`);
    }
    this.runner = new GitRunner({ identity: options.identity, env: options.env, runHooks: options.runHooks ?? false });
  }

  // ---------------------------------------------------------------- static helpers

  static branchName(prefix: string, type: string, taskId: string): string {
    return branchName(prefix, type, taskId);
  }

  static commitMessage(task: CommitTask, summary?: string): string {
    return commitMessage(task, summary);
  }

  /**
   * Makes `root` a repository Moderator can work in: creates the folder, initialises an empty
   * one (never a non-empty folder that is not a repository: that would sweep the user's files
   * into Moderator's first commit), gives a repository without commits an empty first commit,
   * and excludes `.duo-agent/`. `initialised` is true when this call created the repository or
   * its first commit.
   */
  static async prepareTarget(options: GitServiceOptions): Promise<{ initialised: boolean }> {
    const service = new GitService(options);
    try {
      await fs.mkdir(service.root, { recursive: true });
    } catch (error) {
      throw new GitError(`cannot create the target folder ${service.root}: ${messageOf(error)}`, { cause: error });
    }
    return service.prepare();
  }

  /**
   * The branch the repository at `root` has checked out (an unborn one too), or null: no
   * repository there, or a detached HEAD. The default base branch of a run.
   */
  static async currentBranchOf(options: GitServiceOptions): Promise<string | null> {
    const service = new GitService(options);
    if (!existsSync(path.join(service.root, '.git'))) return null;
    try {
      return (await service.git(service.root, ['symbolic-ref', '--quiet', '--short', 'HEAD'])).trim() || null;
    } catch {
      return null;
    }
  }

  private async prepare(): Promise<{ initialised: boolean }> {
    let initialised = false;
    // A `.git` entry marks the folder as a repository of its own; a folder that merely sits
    // inside another repository is not one, and gets its own repository if it is empty.
    if (!existsSync(path.join(this.root, '.git'))) {
      const entries = (await fs.readdir(this.root)).filter((name) => name !== STATE_DIR);
      if (entries.length > 0) {
        throw new GitError(`${this.root} is not a git repository and not empty: run \`git init\` there (and commit) first, or choose an empty --target`);
      }
      await this.git(this.root, ['init', '--quiet', `--initial-branch=${this.baseBranch}`]);
      this.logLine(`initialised a git repository in ${this.root}`);
      // Just created: no branches, and HEAD already names the base branch.
      await this.createInitialCommit(false);
      initialised = true;
    } else if ((await this.localBranches()).length === 0) {
      await this.createInitialCommit(true);
      initialised = true;
    }
    await this.ensureExcluded();
    return { initialised };
  }

  /**
   * The first commit is built with plumbing rather than `git commit --allow-empty`, which would
   * also commit whatever the user had staged in a repository without commits.
   */
  private async createInitialCommit(pointHead: boolean): Promise<void> {
    const emptyTree = (await this.git(this.root, ['hash-object', '-t', 'tree', '-w', '/dev/null'])).trim();
    const sha = (await this.git(this.root, ['commit-tree', emptyTree, '-m', INITIAL_COMMIT_MESSAGE])).trim();
    // HEAD first: killed between the two, the repository still has no commits and this reruns.
    if (pointHead) await this.git(this.root, ['symbolic-ref', 'HEAD', `refs/heads/${this.baseBranch}`]);
    // The empty old value makes git refuse if the branch appeared meanwhile.
    await this.git(this.root, ['update-ref', '-m', 'moderator: initial commit', `refs/heads/${this.baseBranch}`, sha, '']);
    this.logLine(`created the initial empty commit ${sha.slice(0, 12)} on ${this.baseBranch}`);
  }

  private async ensureExcluded(): Promise<void> {
    // info/ is shared by all worktrees: git's own `--git-path info/exclude` is this file.
    const file = path.join((await this.layout()).commonDir, 'info', 'exclude');
    let text = '';
    try {
      text = await fs.readFile(file, 'utf8');
    } catch (error) {
      if (!isErrno(error, 'ENOENT')) throw new GitError(`cannot read ${file}: ${messageOf(error)}`, { cause: error });
    }
    const present = text.split(/\r?\n/).some((line) => ['.duo-agent', '.duo-agent/', '/.duo-agent', '/.duo-agent/'].includes(line.trim()));
    if (present) return;
    const separator = text === '' || text.endsWith('\n') ? '' : '\n';
    // Written whole and renamed, so a kill mid-write never leaves half a line to be appended to.
    const temporary = `${file}.moderator-tmp`;
    try {
      await fs.mkdir(path.dirname(file), { recursive: true });
      await fs.writeFile(temporary, `${text}${separator}# Moderator's state folder\n${STATE_DIR}/\n`);
      await fs.rename(temporary, file);
    } catch (error) {
      throw new GitError(`cannot update ${file}: ${messageOf(error)}`, { cause: error });
    }
    this.logLine(`added ${STATE_DIR}/ to ${file}`);
  }

  // ---------------------------------------------------------------- checks and recovery

  /** Refuses to start on a work tree with the user's uncommitted work or on another branch. */
  async assertClean(): Promise<void> {
    const { branches, current: marked } = await this.branchesAndHead();
    if (branches.length === 0) throw new GitError(`the repository at ${this.root} has no commits yet: prepare the target first`);
    if (!branches.includes(this.baseBranch)) {
      const listed = branches.length > 10 ? `${branches.slice(0, 10).join(', ')}, …` : branches.join(', ');
      throw new GitError(`the base branch ${this.baseBranch} (git.base_branch) does not exist in ${this.root} (branches: ${listed}): set git.base_branch to one of them, or leave it unset to use the checked-out branch`);
    }
    // for-each-ref marks no branch on a detached HEAD or an unborn branch: git tells which.
    const current = marked ?? (await this.currentBranch(this.root));
    if (current !== this.baseBranch) {
      const where = current === null ? 'has a detached HEAD' : `is on branch ${current}`;
      throw new GitError(`the work tree of ${this.root} ${where}, not the base branch ${this.baseBranch}: run \`git checkout ${this.baseBranch}\` there first`);
    }
    const dirty = await this.dirtyPaths(this.root);
    if (dirty.length > 0) {
      const shown = dirty.slice(0, 5).join(', ') + (dirty.length > 5 ? ` and ${dirty.length - 5} more` : '');
      throw new GitError(`the work tree of ${this.root} has uncommitted changes (${shown}): commit or stash them first`);
    }
  }

  /**
   * Puts the repository back into a state the idempotent methods can continue from after a
   * crash: stale lock files removed, an unfinished merge in the main work tree (or a worktree)
   * aborted, registrations of deleted worktrees pruned. Returns what it fixed, for the log.
   */
  async recoverAfterCrash(options: RecoverOptions = {}): Promise<string[]> {
    return this.onMainTree(async () => {
      const lockWaitMs = options.lockWaitMs ?? 15_000;
      const fixed: string[] = [];
      // What was verified before is about to be repaired: check it again afterwards.
      this.memo.forget();
      const { gitDir, commonDir } = await this.layout();
      fixed.push(...(await this.removeBrokenRegistrations(commonDir)));
      const admins = await this.worktreeAdminDirs(commonDir);

      // Locks first: `merge --abort` itself needs the index lock.
      const locks: string[] = [];
      for (const dir of [gitDir, ...admins.keys()]) {
        locks.push(path.join(dir, 'index.lock'), path.join(dir, 'HEAD.lock'), path.join(dir, 'ORIG_HEAD.lock'));
      }
      locks.push(path.join(commonDir, 'packed-refs.lock'), path.join(commonDir, 'config.lock'));
      locks.push(...(await findLockFiles(path.join(commonDir, 'refs'))));
      for (const lock of locks) {
        if (await removeStaleLock(lock, lockWaitMs)) fixed.push(`removed the stale lock ${path.relative(this.root, lock)}`);
      }

      const merging: { tree: string; mergeHead: string }[] = [{ tree: this.root, mergeHead: path.join(gitDir, 'MERGE_HEAD') }];
      for (const [admin, tree] of admins) merging.push({ tree, mergeHead: path.join(admin, 'MERGE_HEAD') });
      for (const { tree, mergeHead } of merging) {
        if (existsSync(mergeHead) && existsSync(tree)) {
          await this.git(tree, ['merge', '--abort']);
          fixed.push(`aborted an unfinished merge in ${tree}`);
        }
      }

      // A merge killed before it wrote MERGE_HEAD leaves files in the main work tree and no merge to
      // abort; the retried merge would then refuse to overwrite them. The tree was clean when the run
      // started, so whatever is there came from the interrupted merge, or from a person meanwhile:
      // stashed, never deleted.
      const leftovers = await this.dirtyPaths(this.root);
      if (leftovers.length > 0) {
        await this.git(this.root, ['stash', 'push', '--include-untracked', '-m', 'moderator: left in the work tree by an interrupted merge']);
        fixed.push(`stashed ${leftovers.length} leftover change(s) of an interrupted merge in the main work tree (see \`git stash list\`)`);
      }

      const before = new Set(admins.keys());
      await this.git(this.root, ['worktree', 'prune']);
      const after = new Set((await this.worktreeAdminDirs(commonDir)).keys());
      for (const admin of before) {
        if (!after.has(admin)) fixed.push(`pruned the registration of the deleted worktree ${admins.get(admin) ?? admin}`);
      }
      for (const line of fixed) this.logLine(line);
      return fixed;
    });
  }

  // ---------------------------------------------------------------- worktrees

  /**
   * A worktree at `worktreePath` with `branch` checked out, the branch created from the base
   * branch's tip when missing. Repairs the half states a kill leaves: a branch without its
   * worktree, a folder that is not (or only half) registered as a worktree.
   */
  async ensureWorktree(branch: string, worktreePath: string): Promise<void> {
    await this.checkBranchName(branch);
    const target = await realOrResolved(path.resolve(this.root, worktreePath));
    // Checked or made by this process, still there, whole and on its branch (read from its files).
    const known = this.memo.worktrees.get(target);
    if (known?.branch === branch && existsSync(path.join(target, '.git')) && adminLooksWhole(known.admin) && (await headFileIsOn(known.admin, branch))) return;
    this.memo.worktrees.delete(target);
    // Nothing at the path, as for every new task: create it straight away. Whatever makes that
    // fail (a registration a kill left, the branch checked out elsewhere, ...) gets the full check.
    if (known === undefined && !existsSync(target) && (await this.tryAddWorktree(branch, target))) return;
    await this.verifyWorktree(branch, target);
  }

  /** The full check of `ensureWorktree`: every half state a kill can leave is found and repaired. */
  private async verifyWorktree(branch: string, target: string): Promise<void> {
    await this.removeBrokenRegistrations((await this.layout()).commonDir);
    await this.git(this.root, ['worktree', 'prune']);
    const worktrees = await this.listWorktrees();

    const here = worktrees.find((entry) => entry.path === target);
    if (here !== undefined) {
      const half = await this.isHalfCreated(here);
      if (!half && here.branch === branch) {
        await this.remember(branch, target, false);
        return;
      }
      if (!half) {
        throw new GitError(`${target} is already a worktree of ${here.branch ?? 'a detached HEAD'}, not of ${branch}`);
      }
      this.logLine(`removing the half-created worktree ${target}`);
      await this.dropWorktree(target);
    }
    const elsewhere = worktrees.find((entry) => entry.branch === branch && entry.path !== target);
    if (elsewhere !== undefined) throw new GitError(`branch ${branch} is already checked out in the worktree ${elsewhere.path}`);

    if (existsSync(target)) {
      if (!(await this.isDisposable(target))) {
        throw new GitError(`${target} exists and is not a worktree: refusing to delete a folder outside ${path.join(this.root, STATE_DIR)}`);
      }
      this.logLine(`removing ${target}: a folder left without a worktree registration`);
      await fs.rm(target, { recursive: true, force: true });
    }
    await fs.mkdir(path.dirname(target), { recursive: true });
    await this.addWorktree(branch, target, await this.branchExists(branch));
  }

  /** `worktree add` where nothing is in the way; false (nothing to undo but what the full check repairs) when it fails. */
  private async tryAddWorktree(branch: string, target: string): Promise<boolean> {
    try {
      await fs.mkdir(path.dirname(target), { recursive: true });
      await this.addWorktree(branch, target, this.memo.branches.has(branch));
      return true;
    } catch {
      return false;
    }
  }

  private async addWorktree(branch: string, target: string, branchExists: boolean): Promise<void> {
    if (branchExists) {
      await this.git(this.root, ['worktree', 'add', target, branch]);
      this.logLine(`added the worktree ${target} for the existing branch ${branch}`);
    } else {
      await this.git(this.root, ['worktree', 'add', '-b', branch, target, `refs/heads/${this.baseBranch}`]);
      this.logLine(`created the branch ${branch} from ${this.baseBranch} in the worktree ${target}`);
    }
    await this.remember(branch, target, !branchExists);
  }

  /**
   * A worktree this process verified or created. A branch it created from the base right now has
   * no step commits: no earlier process can have committed on it (task ids, and so step keys and
   * branch names, are never reused on a target), so its first commit needs no search.
   */
  private async remember(branch: string, target: string, createdNow: boolean): Promise<void> {
    const real = await realOrResolved(target);
    this.memo.branches.add(branch);
    this.memo.worktrees.set(real, { branch, admin: await worktreeAdminOf(real), steps: createdNow ? new Map() : undefined });
  }

  /** Removes the worktree (and its uncommitted files); keeps the branch. Nothing there: no-op. */
  async removeWorktree(worktreePath: string): Promise<void> {
    const target = await realOrResolved(path.resolve(this.root, worktreePath));
    const known = this.memo.worktrees.get(target);
    this.memo.worktrees.delete(target);
    if (known !== undefined && existsSync(path.join(target, '.git'))) {
      try {
        // Twice --force, as in dropWorktree: a locked worktree and uncommitted files go too.
        await this.git(this.root, ['worktree', 'remove', '--force', '--force', target]);
        this.logLine(`removed the worktree ${target}`);
        return;
      } catch {
        // Whatever was in the way, the full path below deals with it.
      }
    }
    await this.removeBrokenRegistrations((await this.layout()).commonDir);
    await this.git(this.root, ['worktree', 'prune']);
    const registered = (await this.listWorktrees()).some((entry) => entry.path === target);
    if (registered) {
      await this.dropWorktree(target);
      this.logLine(`removed the worktree ${target}`);
    } else if (existsSync(target) && (await this.isDisposable(target))) {
      await fs.rm(target, { recursive: true, force: true });
    }
  }

  /**
   * Writes and deletes files in a task worktree. Every path is checked before anything is
   * written: relative, inside the worktree even through symlinks, never into `.git`.
   */
  async writeFiles(worktreePath: string, files: { path: string; content: string }[], deletes: string[] = []): Promise<void> {
    const rootReal = await this.worktreeRoot(worktreePath);
    const writes = await Promise.all(files.map(async (file) => ({ target: await resolveInside(rootReal, file.path, true), content: file.content })));
    const removals = await Promise.all(deletes.map((file) => resolveInside(rootReal, file, false)));
    try {
      for (const { target, content } of writes) {
        await fs.mkdir(path.dirname(target), { recursive: true });
        await fs.writeFile(target, content);
      }
      for (const target of removals) await fs.rm(target, { recursive: true, force: true });
    } catch (error) {
      throw new GitError(`cannot write files in ${rootReal}: ${messageOf(error)}`, { cause: error });
    }
  }

  // ---------------------------------------------------------------- commits and merges

  /**
   * Commits everything in the worktree with the step trailer and returns the commit. If this
   * step's commit is already on the branch, returns it and commits nothing (uncommitted files
   * are left as they are). An unchanged tree still gets its (empty) commit, so every step has one.
   */
  async commitAll(worktreePath: string, message: string, stepKey: string): Promise<string> {
    checkStepKey(stepKey);
    const cwd = await this.worktreeRoot(worktreePath);
    const { current, memo } = await this.taskBranchOf(cwd);
    const existing = await this.stepCommitOn(cwd, memo, stepKey);
    if (existing !== null) {
      this.logLine(`step ${stepKey} is already committed as ${existing.slice(0, 12)} in ${cwd}`);
      return existing;
    }
    await this.git(cwd, ['add', '--all']);
    // --cleanup=whitespace keeps lines starting with "#" (markdown headings in a summary),
    // which the user's commit.cleanup=strip would delete.
    await this.git(cwd, ['commit', '--quiet', '--allow-empty', '--cleanup=whitespace', '-m', withStepTrailer(message, stepKey)]);
    const sha = await this.revParse(cwd, 'HEAD^{commit}');
    memo?.steps?.set(stepKey, sha);
    this.logLine(`committed step ${stepKey} as ${sha.slice(0, 12)} on ${current}`);
    return sha;
  }

  /** The commit a step already made on the worktree's branch (see commitAll), or null. */
  async committedStep(worktreePath: string, stepKey: string): Promise<string | null> {
    checkStepKey(stepKey);
    const cwd = await this.worktreeRoot(worktreePath);
    const { memo } = await this.taskBranchOf(cwd);
    return this.stepCommitOn(cwd, memo, stepKey);
  }

  /** Whether the worktree holds changes that are not committed (untracked files included). */
  async hasUncommittedChanges(worktreePath: string): Promise<boolean> {
    return (await this.dirtyPaths(await this.worktreeRoot(worktreePath))).length > 0;
  }

  /** The task branch checked out in a worktree, and what this process remembers of it (dropped when it moved). */
  private async taskBranchOf(cwd: string): Promise<{ current: string; memo: KnownWorktree | undefined }> {
    const known = this.memo.worktrees.get(cwd);
    const current = known !== undefined && (await headFileIsOn(known.admin, known.branch)) ? known.branch : await this.currentBranch(cwd);
    if (current === null || current === this.baseBranch) {
      throw new GitError(`${cwd} is not on a task branch (${current ?? 'detached HEAD'}): commitAll commits only in task worktrees`);
    }
    const memo = known?.branch === current ? known : undefined;
    if (known !== undefined && memo === undefined) this.memo.worktrees.delete(cwd);
    return { current, memo };
  }

  /**
   * A step's commit on the branch. A step this process knows is not on the branch is not searched
   * for; one it knows is there is searched for again, in case the branch was moved since.
   */
  private async stepCommitOn(cwd: string, memo: KnownWorktree | undefined, stepKey: string): Promise<string | null> {
    if (memo?.steps !== undefined && !memo.steps.has(stepKey)) return null;
    const steps = await this.stepsOnBranch(cwd);
    if (memo !== undefined) memo.steps = steps;
    return steps.get(stepKey) ?? null;
  }

  /**
   * Merges `branch` into the base branch with a merge commit, in the main work tree. Returns
   * the merge commit; if this step's merge is already on the base branch, returns it. If the
   * branch is already contained in the base (merged by someone else), returns the base tip and
   * merges nothing. Conflicts abort the merge and throw a GitError with `conflicts`.
   */
  async mergeNoFf(branch: string, message: string, stepKey: string): Promise<string> {
    checkStepKey(stepKey);
    return this.onMainTree(async () => {
      const { gitDir } = await this.layout();
      const mergeHead = path.join(gitDir, 'MERGE_HEAD');
      const ready = (this.memo.branches.has(branch) || (await this.branchExists(branch)))
        && ((await headFileIsOn(gitDir, this.baseBranch)) || (await this.currentBranch(this.root)) === this.baseBranch)
        && !existsSync(mergeHead);
      if (!ready) return this.mergeAfterChecks(branch, message, stepKey, mergeHead);
      // The usual case: the merge itself finds out whether there is anything to merge. A branch
      // already part of the base is "Already up to date" and changes nothing.
      await this.merge(branch, message, stepKey, mergeHead);
      const [sha = '', body = ''] = (await this.git(this.root, ['log', '-1', '--no-show-signature', '--format=%H%x00%B', 'HEAD', '--'])).split('\0');
      if (hasStepTrailer(body, stepKey)) {
        this.logLine(`${branch} is merged into ${this.baseBranch} as ${sha.slice(0, 12)} (step ${stepKey})`);
        return sha;
      }
      // Nothing was merged. If this step's own merge is what made the branch part of the base (a
      // process killed before it journaled the merge), it is on the base's first-parent line
      // after the branch's tip: found there without walking the base's whole history.
      const existing = await this.findStepCommit(this.root, ['--first-parent', `${this.qualify(branch)}..refs/heads/${this.baseBranch}`], stepKey);
      if (existing !== null) {
        this.logLine(`step ${stepKey} is already merged as ${existing.slice(0, 12)}`);
        return existing;
      }
      this.logLine(`${branch} is already contained in ${this.baseBranch}: nothing to merge`);
      return sha;
    });
  }

  /**
   * mergeNoFf when something is unusual (the branch missing, the main work tree on another branch
   * or in a merge): every check in the order that decides the answer, an earlier merge of this
   * step on the base branch first.
   */
  private async mergeAfterChecks(branch: string, message: string, stepKey: string, mergeHead: string): Promise<string> {
    const base = `refs/heads/${this.baseBranch}`;
    const existing = await this.findStepCommit(this.root, ['--first-parent', base], stepKey);
    if (existing !== null) {
      this.logLine(`step ${stepKey} is already merged as ${existing.slice(0, 12)}`);
      return existing;
    }
    if (!(await this.branchExists(branch))) throw new GitError(`cannot merge ${branch} into ${this.baseBranch}: the branch does not exist`);
    const current = await this.currentBranch(this.root);
    if (current !== this.baseBranch) {
      throw new GitError(`cannot merge ${branch}: the work tree of ${this.root} is on ${current ?? 'a detached HEAD'}, not ${this.baseBranch}`);
    }
    // Only a merge started by this call may be aborted below; one found already running is
    // the user's or a crash's (recoverAfterCrash handles the latter on resume).
    if (existsSync(mergeHead)) {
      throw new GitError(`cannot merge ${branch}: a merge is already in progress in ${this.root} (conclude it or run \`git merge --abort\` there)`);
    }
    const head = await this.revParse(this.root, 'HEAD^{commit}');
    if (await this.isAncestor(this.root, `refs/heads/${branch}`, head)) {
      this.logLine(`${branch} is already contained in ${this.baseBranch}: nothing to merge`);
      return head;
    }
    await this.merge(branch, message, stepKey, mergeHead);
    const sha = await this.revParse(this.root, 'HEAD^{commit}');
    this.logLine(`merged ${branch} into ${this.baseBranch} as ${sha.slice(0, 12)} (step ${stepKey})`);
    return sha;
  }

  /** `git merge --no-ff` in the main work tree; on conflicts the merge is aborted and a GitError lists them. */
  private async merge(branch: string, message: string, stepKey: string, mergeHead: string): Promise<void> {
    try {
      await this.git(this.root, [
        // --no-stat: nobody reads the diffstat, and computing it is a diff of the whole merge.
        'merge', '--no-ff', '--no-edit', '--no-log', '--no-squash', '--no-autostash', '--no-stat', '--no-verify-signatures', '--cleanup=whitespace',
        '-m', withStepTrailer(message, stepKey), branch,
      ]);
    } catch (error) {
      const conflicts = await this.unmergedPaths(this.root);
      if (existsSync(mergeHead)) await this.git(this.root, ['merge', '--abort']);
      if (conflicts.length > 0) {
        const shown = conflicts.slice(0, 5).join(', ') + (conflicts.length > 5 ? ` and ${conflicts.length - 5} more` : '');
        throw new GitError(`merging ${branch} into ${this.baseBranch} stopped on conflicts in ${shown}; the merge was aborted`, { cause: error, conflicts });
      }
      throw error;
    }
  }

  // ---------------------------------------------------------------- reading

  /** `git diff base...branch` (the branch's own changes), cut to `maxBytes` with a marker line. */
  async diff(branch: string, maxBytes = 60_000): Promise<string> {
    const text = await this.git(this.root, [
      'diff', '--no-color', '--no-ext-diff', '--no-textconv', '--src-prefix=a/', '--dst-prefix=b/',
      `refs/heads/${this.baseBranch}...${this.qualify(branch)}`, '--',
    ]);
    return truncateBytes(text, maxBytes, 'diff');
  }

  /** Paths the branch changed since it left the base branch. */
  async changedFiles(branch: string): Promise<string[]> {
    const out = await this.git(this.root, ['diff', '--name-only', '-z', '--no-ext-diff', '--no-textconv', `refs/heads/${this.baseBranch}...${this.qualify(branch)}`, '--']);
    return out.split('\0').filter((name) => name !== '');
  }

  async headSha(ref = 'HEAD'): Promise<string> {
    return this.revParse(this.root, `${this.checkRef(ref)}^{commit}`);
  }

  async treeHash(ref: string): Promise<string> {
    return this.revParse(this.root, `${this.checkRef(ref)}^{tree}`);
  }

  async branchExists(name: string): Promise<boolean> {
    // for-each-ref matches whole path components, so "a" would also list "a/b": compare exactly.
    const out = await this.git(this.root, ['for-each-ref', '--format=%(refname)', `refs/heads/${name}`]);
    const exists = out.split('\n').includes(`refs/heads/${name}`);
    if (exists) this.memo.branches.add(name);
    return exists;
  }

  async log(ref: string, limit?: number): Promise<CommitInfo[]> {
    const args = ['log', '--no-show-signature', '--format=%H%x00%s%x00%b%x1e'];
    if (limit !== undefined) args.push(`--max-count=${Math.max(0, Math.floor(limit))}`);
    const out = await this.git(this.root, [...args, this.checkRef(ref), '--']);
    return out.split('\x1e').map((record) => record.replace(/^\n/, '')).filter((record) => record !== '').map((record) => {
      const [sha = '', subject = '', body = ''] = record.split('\0');
      return { sha, subject, body: body.trimEnd() };
    });
  }

  /** Local branches whose name starts with `prefix`, sorted by name. */
  async listBranches(prefix: string): Promise<string[]> {
    return (await this.localBranches()).filter((name) => name.startsWith(prefix));
  }

  // ---------------------------------------------------------------- internals

  private async git(cwd: string, args: string[]): Promise<string> {
    try {
      return await this.runner.run(cwd, args);
    } catch (error) {
      // A failure can leave a state nobody verified: what this process learned is checked again.
      this.memo.forget();
      throw error;
    }
  }

  private async layout(): Promise<RepositoryLayout> {
    if (this.memo.layout !== undefined) return this.memo.layout;
    let layout = plainLayout(this.root);
    if (layout === undefined) {
      const [gitDir = '', commonDir = ''] = (await this.git(this.root, ['rev-parse', '--path-format=absolute', '--absolute-git-dir', '--git-common-dir'])).trim().split('\n');
      layout = { gitDir, commonDir };
    }
    this.memo.layout = layout;
    return layout;
  }

  private onMainTree<T>(work: () => Promise<T>): Promise<T> {
    const next = this.mainQueue.then(work, work);
    this.mainQueue = next.catch(() => undefined);
    return next;
  }

  private checkRef(ref: string): string {
    if (ref === '' || ref.startsWith('-') || /[\s\0]/.test(ref)) throw new GitError(`invalid git ref ${JSON.stringify(ref)}`);
    return ref;
  }

  /** A plain branch name as its full ref, so a tag or file of the same name cannot be taken. */
  private qualify(branch: string): string {
    this.checkRef(branch);
    return branch.startsWith('refs/') ? branch : `refs/heads/${branch}`;
  }

  private async checkBranchName(branch: string): Promise<void> {
    if (branch.split('/').every((part) => PLAIN_REF_COMPONENT.test(part) && !part.endsWith('.lock')) || this.memo.validBranchNames.has(branch)) return;
    if (branch.startsWith('-') || !(await this.runner.test(this.root, ['check-ref-format', `refs/heads/${branch}`]))) {
      throw new GitError(`invalid branch name ${JSON.stringify(branch)}`);
    }
    this.memo.validBranchNames.add(branch);
  }

  private async revParse(cwd: string, spec: string): Promise<string> {
    return (await this.git(cwd, ['rev-parse', '--verify', '--quiet', spec])).trim();
  }

  private async isAncestor(cwd: string, ancestor: string, descendant: string): Promise<boolean> {
    return this.runner.test(cwd, ['merge-base', '--is-ancestor', ancestor, descendant]);
  }

  private async localBranches(): Promise<string[]> {
    return (await this.branchesAndHead()).branches;
  }

  /** Local branches, and the one checked out in the main work tree when for-each-ref marks one. */
  private async branchesAndHead(): Promise<{ branches: string[]; current: string | undefined }> {
    const out = await this.git(this.root, ['for-each-ref', '--format=%(HEAD)%(refname)', 'refs/heads/']);
    const branches: string[] = [];
    let current: string | undefined;
    for (const line of out.split('\n')) {
      const name = line.slice(1);
      if (!name.startsWith('refs/heads/')) continue;
      branches.push(name.slice('refs/heads/'.length));
      if (line.startsWith('*')) current = name.slice('refs/heads/'.length);
    }
    return { branches, current };
  }

  /** The checked-out branch, or null on a detached HEAD (an unborn branch still has a name). */
  private async currentBranch(cwd: string): Promise<string | null> {
    const name = (await this.git(cwd, ['branch', '--show-current'])).trim();
    return name === '' ? null : name;
  }

  private async dirtyPaths(cwd: string): Promise<string[]> {
    const out = await this.git(cwd, ['status', '--porcelain=v1', '-z', '--untracked-files=normal', '--ignore-submodules=none']);
    const fields = out.split('\0');
    const paths: string[] = [];
    for (let index = 0; index < fields.length; index += 1) {
      const field = fields[index] ?? '';
      if (field.length < 4) continue;
      const status = field.slice(0, 2);
      const file = field.slice(3);
      // Renames and copies are followed by their source path as the next field.
      if (status.includes('R') || status.includes('C')) index += 1;
      if (file === `${STATE_DIR}/` || file.startsWith(`${STATE_DIR}/`)) continue;
      // The user's own Moderator settings, not yet committed: not work anyone could lose.
      if (status === '??' && cwd === this.root && SETTINGS_FILES.has(file)) continue;
      paths.push(file);
    }
    return paths;
  }

  private async unmergedPaths(cwd: string): Promise<string[]> {
    try {
      const out = await this.git(cwd, ['diff', '--name-only', '-z', '--no-ext-diff', '--no-textconv', '--diff-filter=U']);
      return [...new Set(out.split('\0').filter((name) => name !== ''))];
    } catch {
      return [];
    }
  }

  /** Newest commit in `range` whose message carries exactly this step's trailer, or null. */
  private async findStepCommit(cwd: string, range: string[], stepKey: string): Promise<string | null> {
    const out = await this.git(cwd, ['log', '--no-show-signature', '--fixed-strings', `--grep=${stepTrailerLine(stepKey)}`, '--format=%H%x00%B%x1e', ...range, '--']);
    for (const record of out.split('\x1e')) {
      const [sha, body] = record.replace(/^\n/, '').split('\0');
      if (sha !== undefined && sha !== '' && body !== undefined && hasStepTrailer(body, stepKey)) return sha;
    }
    return null;
  }

  /**
   * The step commits of the task branch checked out in `cwd`, newest per step key: the branch's
   * own commits, or, once merged (the branch is then part of the base and has none of its own),
   * its newest MERGED_SEARCH_DEPTH commits. A fresh branch also has none of its own and costs one
   * short log instead of a search of the whole history.
   */
  private async stepsOnBranch(cwd: string): Promise<Map<string, string>> {
    const own = await this.stepCommits(cwd, [`refs/heads/${this.baseBranch}..HEAD`]);
    // Any commit of its own means HEAD is not part of the base: no merged search.
    if (own.commits > 0) return own.steps;
    return (await this.stepCommits(cwd, [`--max-count=${MERGED_SEARCH_DEPTH}`, 'HEAD'])).steps;
  }

  private async stepCommits(cwd: string, range: string[]): Promise<{ commits: number; steps: Map<string, string> }> {
    // No --grep: with it, --max-count would count matches, not commits scanned.
    const out = await this.git(cwd, ['log', '--no-show-signature', '--format=%H%x00%B%x1e', ...range, '--']);
    const steps = new Map<string, string>();
    let commits = 0;
    for (const record of out.split('\x1e')) {
      const [sha, body] = record.replace(/^\n/, '').split('\0');
      if (sha === undefined || sha === '' || body === undefined) continue;
      commits += 1;
      for (const key of stepKeysOf(body)) if (!steps.has(key)) steps.set(key, sha);
    }
    return { commits, steps };
  }

  /** Worktree admin folders (`.git/worktrees/<name>`) mapped to the worktree folder they name. */
  /**
   * A `git worktree add` killed early leaves a registration git itself cannot read: measured, an
   * empty `commondir` and a zero `HEAD`, locked "initializing". Then `git worktree list` and
   * `git branch` fail for the whole repository and `prune` keeps it, being locked. Such a
   * registration of one of our own worktrees (under `.duo-agent/`) is removed with its folder;
   * `ensureWorktree` then makes the worktree again.
   */
  private async removeBrokenRegistrations(commonDir: string): Promise<string[]> {
    const fixed: string[] = [];
    const ours = path.join(this.root, STATE_DIR);
    for (const [admin, tree] of await this.worktreeAdminDirs(commonDir)) {
      const readable = async (name: string) => {
        try {
          return (await fs.readFile(path.join(admin, name), 'utf8')).trim() !== '';
        } catch {
          return false;
        }
      };
      const broken = !(await readable('commondir')) || !(await readable('gitdir')) || !(await readable('HEAD'));
      if (!broken) continue;
      if (tree !== '' && !isWithin(ours, path.resolve(tree))) continue;
      await fs.rm(admin, { recursive: true, force: true });
      if (tree !== '') await fs.rm(tree, { recursive: true, force: true });
      const line = `removed the unreadable worktree registration ${path.relative(this.root, admin)}${tree ? ` and its folder ${path.relative(this.root, tree)}` : ''}`;
      this.logLine(line);
      fixed.push(line);
    }
    return fixed;
  }

  private async worktreeAdminDirs(commonDir: string): Promise<Map<string, string>> {
    const result = new Map<string, string>();
    const dir = path.join(commonDir, 'worktrees');
    let names: string[] = [];
    try {
      names = await fs.readdir(dir);
    } catch (error) {
      if (!isErrno(error, 'ENOENT')) throw error;
    }
    for (const name of names) {
      const admin = path.join(dir, name);
      try {
        const gitFile = (await fs.readFile(path.join(admin, 'gitdir'), 'utf8')).trim();
        result.set(admin, path.dirname(gitFile));
      } catch {
        result.set(admin, '');
      }
    }
    return result;
  }

  private async listWorktrees(): Promise<WorktreeEntry[]> {
    const out = await this.git(this.root, ['worktree', 'list', '--porcelain', '-z']);
    const entries: WorktreeEntry[] = [];
    let entry: WorktreeEntry | null = null;
    for (const field of out.split('\0')) {
      if (field.startsWith('worktree ')) {
        entry = { path: await realOrResolved(field.slice('worktree '.length)), branch: null, locked: null };
        entries.push(entry);
      } else if (entry !== null && field.startsWith('branch refs/heads/')) {
        entry.branch = field.slice('branch refs/heads/'.length);
      } else if (entry !== null && (field === 'locked' || field.startsWith('locked '))) {
        entry.locked = field.slice('locked'.length).trim();
      }
    }
    return entries;
  }

  /**
   * Measured: a `git worktree add` killed during its checkout leaves the worktree registered,
   * on the right branch, "locked" with reason "initializing", with an `index.lock` and no
   * index, and only part of the files. It looks complete to `worktree list`, so it is detected
   * here (the reason text is translated, hence the index check too).
   */
  private async isHalfCreated(entry: WorktreeEntry): Promise<boolean> {
    const gitFile = path.join(entry.path, '.git');
    if (!existsSync(gitFile)) return true;
    if (entry.locked === null) return false;
    if (entry.locked === 'initializing') return true;
    const admin = await this.adminDirOf(entry.path);
    return admin === null || !existsSync(path.join(admin, 'index'));
  }

  private async adminDirOf(worktree: string): Promise<string | null> {
    for (const [admin, tree] of await this.worktreeAdminDirs((await this.layout()).commonDir)) {
      if ((await realOrResolved(tree)) === worktree) return admin;
    }
    return null;
  }

  /** Removes a registered worktree even when half-created, locked or missing its `.git` file. */
  private async dropWorktree(target: string): Promise<void> {
    try {
      // Twice --force: also removes a locked worktree, which a killed `worktree add` leaves.
      await this.git(this.root, ['worktree', 'remove', '--force', '--force', target]);
    } catch (error) {
      // `worktree remove` refuses a folder without its `.git` file ("validation failed"):
      // delete the registration and the folder by hand.
      const admin = await this.adminDirOf(target);
      if (admin === null) throw error;
      await fs.rm(admin, { recursive: true, force: true });
      if (await this.isDisposable(target)) await fs.rm(target, { recursive: true, force: true });
    }
    await this.git(this.root, ['worktree', 'prune']);
  }

  /** Folders Moderator may delete without asking: its own state folder's, or empty ones. */
  private async isDisposable(target: string): Promise<boolean> {
    const stateDir = await realOrResolved(path.join(this.root, STATE_DIR));
    if (isWithin(stateDir, target)) return true;
    try {
      return (await fs.readdir(target)).length === 0;
    } catch {
      return false;
    }
  }

  /** The real path of a task worktree; the main work tree is refused (agents never write there). */
  private async worktreeRoot(worktreePath: string): Promise<string> {
    const target = await realOrResolved(path.resolve(this.root, worktreePath));
    if (!existsSync(path.join(target, '.git'))) throw new GitError(`${target} is not a worktree`);
    if (target === (await realOrResolved(this.root))) throw new GitError(`${target} is the main work tree, not a task worktree`);
    return target;
  }
}
