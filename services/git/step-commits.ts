import { checkStepKey, stepKeysOf, withStepTrailer } from './commit-message.ts';
import { GitError } from './git-error.ts';
import { type KnownWorktree, headFileIsOn } from './repository-memo.ts';
import { Repository, MERGED_SEARCH_DEPTH } from './repository.ts';

/** One commit per task step, found again by its trailer: a re-run step never commits twice. */
export class StepCommits {
  constructor(private readonly repo: Repository) {}

  /**
   * Commits everything in the worktree with the step trailer and returns the commit. If this
   * step's commit is already on the branch, returns it and commits nothing (uncommitted files
   * are left as they are). An unchanged tree still gets its (empty) commit, so every step has one.
   */
  async commitAll(worktreePath: string, message: string, stepKey: string): Promise<string> {
    checkStepKey(stepKey);
    const cwd = await this.repo.worktreeRoot(worktreePath);
    const { current, memo } = await this.taskBranchOf(cwd);
    const existing = await this.stepCommitOn(cwd, memo, stepKey);
    if (existing !== null) {
      this.repo.logLine(`step ${stepKey} is already committed as ${existing.slice(0, 12)} in ${cwd}`);
      return existing;
    }
    await this.repo.git(cwd, ['add', '--all']);
    // --cleanup=whitespace keeps lines starting with "#" (markdown headings in a summary),
    // which the user's commit.cleanup=strip would delete.
    await this.repo.git(cwd, ['commit', '--quiet', '--allow-empty', '--cleanup=whitespace', '-m', withStepTrailer(message, stepKey)]);
    const sha = await this.repo.revParse(cwd, 'HEAD^{commit}');
    memo?.steps?.set(stepKey, sha);
    this.repo.logLine(`committed step ${stepKey} as ${sha.slice(0, 12)} on ${current}`);
    return sha;
  }


  /** The commit a step already made on the worktree's branch (see commitAll), or null. */
  async committedStep(worktreePath: string, stepKey: string): Promise<string | null> {
    checkStepKey(stepKey);
    const cwd = await this.repo.worktreeRoot(worktreePath);
    const { memo } = await this.taskBranchOf(cwd);
    return this.stepCommitOn(cwd, memo, stepKey);
  }


  /** Whether the worktree holds changes that are not committed (untracked files included). */
  async hasUncommittedChanges(worktreePath: string): Promise<boolean> {
    return (await this.repo.dirtyPaths(await this.repo.worktreeRoot(worktreePath))).length > 0;
  }


  /** The task branch checked out in a worktree, and what this process remembers of it (dropped when it moved). */
  private async taskBranchOf(cwd: string): Promise<{ current: string; memo: KnownWorktree | undefined }> {
    const known = this.repo.memo.worktrees.get(cwd);
    const current = known !== undefined && (await headFileIsOn(known.admin, known.branch)) ? known.branch : await this.repo.currentBranch(cwd);
    if (current === null || current === this.repo.baseBranch) {
      throw new GitError(`${cwd} is not on a task branch (${current ?? 'detached HEAD'}): commitAll commits only in task worktrees`);
    }
    const memo = known?.branch === current ? known : undefined;
    if (known !== undefined && memo === undefined) this.repo.memo.worktrees.delete(cwd);
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
   * The step commits of the task branch checked out in `cwd`, newest per step key: the branch's
   * own commits, or, once merged (the branch is then part of the base and has none of its own),
   * its newest MERGED_SEARCH_DEPTH commits. A fresh branch also has none of its own and costs one
   * short log instead of a search of the whole history.
   */
  private async stepsOnBranch(cwd: string): Promise<Map<string, string>> {
    const own = await this.stepCommits(cwd, [`refs/heads/${this.repo.baseBranch}..HEAD`]);
    // Any commit of its own means HEAD is not part of the base: no merged search.
    if (own.commits > 0) return own.steps;
    return (await this.stepCommits(cwd, [`--max-count=${MERGED_SEARCH_DEPTH}`, 'HEAD'])).steps;
  }


  private async stepCommits(cwd: string, range: string[]): Promise<{ commits: number; steps: Map<string, string> }> {
    // No --grep: with it, --max-count would count matches, not commits scanned.
    const out = await this.repo.git(cwd, ['log', '--no-show-signature', '--format=%H%x00%B%x1e', ...range, '--']);
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

}
