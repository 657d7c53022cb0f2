import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { messageOf } from '../../errors.ts';
import { branchName, commitMessage, type CommitTask } from './commit-message.ts';
import { CrashRecovery } from './crash-recovery.ts';
import { GitError } from './git-error.ts';
import { Merges, abortMergeIn, mergeBaseInto } from './merges.ts';
import { Repository, type CommitInfo, type GitServiceOptions, type RecoverOptions } from './repository.ts';
import { StepCommits } from './step-commits.ts';
import { TargetSetup } from './target-setup.ts';
import { Trees, type TreeChange, type TreeEntry } from './trees.ts';
import { TrialMerges } from './trial-merges.ts';
import { Worktrees } from './worktrees.ts';

export type { CommitInfo, GitIdentity, GitServiceOptions, RecoverOptions } from './repository.ts';
export type { TreeChange, TreeEntry } from './trees.ts';

/**
 * Git on one target repository and its task worktrees, as the rest of Moderator sees it: a thin
 * facade over the parts that do the work, one per concern (target setup, crash recovery,
 * worktrees, step commits, merges) on one shared Repository. Every mutating method may be called
 * again after the process was killed at any point (DESIGN, checkpoint rule 2): each one looks at
 * the real repository first and completes or skips the work, never duplicating a branch, commit
 * or merge.
 */
export class GitService {
  readonly root: string;
  readonly baseBranch: string;
  private readonly repo: Repository;
  private readonly setup: TargetSetup;
  private readonly recovery: CrashRecovery;
  private readonly worktrees: Worktrees;
  private readonly steps: StepCommits;
  private readonly merges: Merges;
  private readonly trees: Trees;
  private readonly trials: TrialMerges;

  constructor(options: GitServiceOptions) {
    this.repo = new Repository(options);
    this.root = this.repo.root;
    this.baseBranch = this.repo.baseBranch;
    this.setup = new TargetSetup(this.repo);
    this.recovery = new CrashRecovery(this.repo);
    this.worktrees = new Worktrees(this.repo);
    this.steps = new StepCommits(this.repo);
    this.merges = new Merges(this.repo);
    this.trees = new Trees(this.repo);
    this.trials = new TrialMerges(this.repo, this.worktrees);
  }

  static branchName(prefix: string, type: string, taskId: string, generation = 1): string {
    return branchName(prefix, type, taskId, generation);
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
  static prepareTarget(options: GitServiceOptions): Promise<{ initialised: boolean }> {
    return new GitService(options).prepareTarget();
  }

  /** See the static prepareTarget: this service's target made a repository Moderator can work in. */
  async prepareTarget(): Promise<{ initialised: boolean }> {
    try {
      await fs.mkdir(this.root, { recursive: true });
    } catch (error) {
      throw new GitError(`cannot create the target folder ${this.root}: ${messageOf(error)}`, { cause: error });
    }
    return this.setup.prepare();
  }

  /**
   * The branch the repository at `root` has checked out (an unborn one too), or null: no
   * repository there, or a detached HEAD. The default base branch of a run.
   */
  static async currentBranchOf(options: GitServiceOptions): Promise<string | null> {
    const repo = new Repository(options);
    if (!existsSync(path.join(repo.root, '.git'))) return null;
    try {
      return (await repo.git(repo.root, ['symbolic-ref', '--quiet', '--short', 'HEAD'])).trim() || null;
    } catch {
      return null;
    }
  }

  /** Refuses to start on a work tree with the user's uncommitted work or on another branch. */
  assertClean(): Promise<void> {
    return this.setup.assertClean();
  }

  /** See CrashRecovery: locks, interrupted merges, half-made worktrees; returns what it fixed. */
  async recoverAfterCrash(options: RecoverOptions = {}): Promise<string[]> {
    const fixed = await this.recovery.recoverAfterCrash(options);
    // Trial worktrees of a killed merge queue: their test results went with the process.
    return [...fixed, ...(await this.trials.dropAll())];
  }

  /** A worktree at `worktreePath` with `branch` checked out, made or repaired as needed. */
  ensureWorktree(branch: string, worktreePath: string): Promise<void> {
    return this.worktrees.ensureWorktree(branch, worktreePath);
  }

  /** Removes the worktree (and its uncommitted files); keeps the branch. Nothing there: no-op. */
  removeWorktree(worktreePath: string): Promise<void> {
    return this.worktrees.removeWorktree(worktreePath);
  }

  /** Writes and deletes files in a task worktree, every path checked first. */
  writeFiles(worktreePath: string, files: { path: string; content: string }[], deletes: string[] = []): Promise<void> {
    return this.worktrees.writeFiles(worktreePath, files, deletes);
  }

  /** Commits everything in the worktree as this step, or returns the step's commit made before. */
  commitAll(worktreePath: string, message: string, stepKey: string): Promise<string> {
    return this.steps.commitAll(worktreePath, message, stepKey);
  }

  /** The commit a step already made on the worktree's branch, or null. */
  committedStep(worktreePath: string, stepKey: string): Promise<string | null> {
    return this.steps.committedStep(worktreePath, stepKey);
  }

  /** Whether the worktree holds changes that are not committed (untracked files included). */
  hasUncommittedChanges(worktreePath: string): Promise<boolean> {
    return this.steps.hasUncommittedChanges(worktreePath);
  }

  /** Merges `branch` into the base branch as this step, at most once. */
  mergeNoFf(branch: string, message: string, stepKey: string): Promise<string> {
    return this.merges.mergeNoFf(branch, message, stepKey);
  }

  /** Starts merging the base into a task's worktree (markers left for its next commit); see merges.ts. */
  async mergeBaseInto(worktreePath: string): Promise<{ merging: boolean; conflicts: string[] }> {
    const root = await this.repo.worktreeRoot(worktreePath);
    return mergeBaseInto(this.repo.runner, root, this.baseBranch, this.repo.logLine, await this.repo.holdsBaseTip(root));
  }

  /** Abandons a merge of the base into a task's worktree (one in conflict): the branch is as it was. Nothing in progress: no-op. */
  async abortBaseMerge(worktreePath: string): Promise<void> {
    await abortMergeIn(this.repo.runner, await this.repo.worktreeRoot(worktreePath), this.repo.logLine);
  }

  /** `git diff base...branch` (the branch's own changes), cut to `maxBytes` with a marker line. */
  diff(branch: string, maxBytes?: number): Promise<string> {
    return this.repo.diff(branch, maxBytes);
  }

  /** How far a task worktree is from the base branch, uncommitted work included (the Monitor's measure of progress). */
  workSize(worktreePath: string): Promise<{ lines: number; untrackedFiles: number; untrackedBytes: number }> {
    return this.repo.workSize(worktreePath);
  }

  /** Paths the branch changed since it left the base branch. */
  changedFiles(branch: string): Promise<string[]> {
    return this.repo.changedFiles(branch);
  }

  headSha(ref?: string): Promise<string> {
    return this.repo.headSha(ref);
  }

  /** The tip of a branch (a plain name is a branch, never a tag of the same name). */
  branchHead(branch: string): Promise<string> {
    return this.repo.branchHead(branch);
  }

  treeHash(ref: string): Promise<string> {
    return this.repo.treeHash(ref);
  }

  branchExists(name: string): Promise<boolean> {
    return this.repo.branchExists(name);
  }

  log(ref: string, limit?: number): Promise<CommitInfo[]> {
    return this.repo.log(ref, limit);
  }

  /** Local branches whose name starts with `prefix`, sorted by name. */
  listBranches(prefix: string): Promise<string[]> {
    return this.repo.listBranches(prefix);
  }

  /** The commit `rev` names in `cwd` (a worktree's HEAD, a branch). */
  commitOf(cwd: string, rev: string): Promise<string> {
    return this.trees.commitOf(cwd, rev);
  }

  /** Every file of a commit's tree with its blob and size, from git's objects (no walk of the work tree). */
  listTree(cwd: string, commit: string): Promise<TreeEntry[]> {
    return this.trees.list(cwd, commit);
  }

  /** Paths that differ between two commits. */
  treeChanges(cwd: string, from: string, to: string): Promise<TreeChange[]> {
    return this.trees.changes(cwd, from, to);
  }

  /** The merge of `branch` onto the commit `onto`, made from git's objects only (no ref moves); null when they conflict. See trial-merges.ts. */
  trialMerge(onto: string, branch: string): Promise<{ commit: string; tree: string } | null> {
    return this.trials.merge(onto, branch);
  }

  /** The tree of `rev` as seen from `cwd` (a worktree's `HEAD`, a commit). */
  treeOf(cwd: string, rev: string): Promise<string> {
    return this.trials.treeOf(cwd, rev);
  }

  /** A detached worktree of a trial merge, to test it; `removeWorktree` removes it. */
  checkoutTrial(name: string, commit: string): Promise<string> {
    return this.trials.checkout(name, commit);
  }

  /** Paths of a work tree that differ from its HEAD (edited, added, deleted, untracked). */
  uncommittedPaths(cwd: string): Promise<string[]> {
    return this.trees.uncommitted(cwd);
  }
}
