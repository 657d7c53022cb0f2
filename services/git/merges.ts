import { existsSync } from 'node:fs';
import path from 'node:path';
import { checkStepKey, withStepTrailer } from './commit-message.ts';
import { GitError } from './git-error.ts';
import type { GitRunner } from './git-runner.ts';
import { gitDirsOf } from './ref-files.ts';
import { headFileIsOn } from './repository-memo.ts';
import { Repository } from './repository.ts';

/** Merging task branches into the base branch in the main work tree, at most once per step. */
export class Merges {
  constructor(private readonly repo: Repository) {}

  /**
   * Merges `branch` into the base branch with a merge commit, in the main work tree. Returns
   * the merge commit; if this step's merge is already on the base branch, returns it. If the
   * branch is already contained in the base (merged by someone else), returns the base tip and
   * merges nothing. Conflicts abort the merge and throw a GitError with `conflicts`.
   */
  async mergeNoFf(branch: string, message: string, stepKey: string): Promise<string> {
    checkStepKey(stepKey);
    return this.repo.onMainTree(async () => {
      const { gitDir } = await this.repo.layout();
      const mergeHead = path.join(gitDir, 'MERGE_HEAD');
      const ready = (this.repo.memo.branches.has(branch) || (await this.repo.branchExists(branch)))
        && ((await headFileIsOn(gitDir, this.repo.baseBranch)) || (await this.repo.currentBranch(this.repo.root)) === this.repo.baseBranch)
        && !existsSync(mergeHead);
      if (!ready) return this.mergeAfterChecks(branch, message, stepKey, mergeHead);
      // The usual case: the merge itself finds out whether there is anything to merge. A branch
      // already part of the base is "Already up to date" and changes nothing; otherwise --no-ff
      // always makes a commit, so a moved HEAD is this merge (nothing else runs on the main tree
      // meanwhile). Both reads of HEAD are usually file reads (ref-files.ts), not git calls.
      const before = await this.repo.revParse(this.repo.root, 'HEAD^{commit}');
      await this.merge(branch, message, stepKey, mergeHead);
      const sha = await this.repo.revParse(this.repo.root, 'HEAD^{commit}');
      if (sha !== before) {
        this.repo.logLine(`${branch} is merged into ${this.repo.baseBranch} as ${sha.slice(0, 12)} (step ${stepKey})`);
        return sha;
      }
      // Nothing was merged. If this step's own merge is what made the branch part of the base (a
      // process killed before it journaled the merge), it is on the base's first-parent line
      // after the branch's tip (HEAD itself when it was the last thing done): found there without
      // walking the base's whole history.
      const existing = await this.repo.findStepCommit(this.repo.root, ['--first-parent', `${this.repo.qualify(branch)}..refs/heads/${this.repo.baseBranch}`], stepKey);
      if (existing !== null) {
        this.repo.logLine(`step ${stepKey} is already merged as ${existing.slice(0, 12)}`);
        return existing;
      }
      this.repo.logLine(`${branch} is already contained in ${this.repo.baseBranch}: nothing to merge`);
      return sha;
    });
  }


  /**
   * mergeNoFf when something is unusual (the branch missing, the main work tree on another branch
   * or in a merge): every check in the order that decides the answer, an earlier merge of this
   * step on the base branch first.
   */
  private async mergeAfterChecks(branch: string, message: string, stepKey: string, mergeHead: string): Promise<string> {
    const base = `refs/heads/${this.repo.baseBranch}`;
    const existing = await this.repo.findStepCommit(this.repo.root, ['--first-parent', base], stepKey);
    if (existing !== null) {
      this.repo.logLine(`step ${stepKey} is already merged as ${existing.slice(0, 12)}`);
      return existing;
    }
    if (!(await this.repo.branchExists(branch))) throw new GitError(`cannot merge ${branch} into ${this.repo.baseBranch}: the branch does not exist`);
    const current = await this.repo.currentBranch(this.repo.root);
    if (current !== this.repo.baseBranch) {
      throw new GitError(`cannot merge ${branch}: the work tree of ${this.repo.root} is on ${current ?? 'a detached HEAD'}, not ${this.repo.baseBranch}`);
    }
    // Only a merge started by this call may be aborted below; one found already running is
    // the user's or a crash's (recoverAfterCrash handles the latter on resume).
    if (existsSync(mergeHead)) {
      throw new GitError(`cannot merge ${branch}: a merge is already in progress in ${this.repo.root} (conclude it or run \`git merge --abort\` there)`);
    }
    const head = await this.repo.revParse(this.repo.root, 'HEAD^{commit}');
    if (await this.repo.isAncestor(this.repo.root, `refs/heads/${branch}`, head)) {
      this.repo.logLine(`${branch} is already contained in ${this.repo.baseBranch}: nothing to merge`);
      return head;
    }
    await this.merge(branch, message, stepKey, mergeHead);
    const sha = await this.repo.revParse(this.repo.root, 'HEAD^{commit}');
    this.repo.logLine(`merged ${branch} into ${this.repo.baseBranch} as ${sha.slice(0, 12)} (step ${stepKey})`);
    return sha;
  }


  /** `git merge --no-ff` in the main work tree; on conflicts the merge is aborted and a GitError lists them. */
  private async merge(branch: string, message: string, stepKey: string, mergeHead: string): Promise<void> {
    try {
      await this.repo.git(this.repo.root, [
        // --no-stat: nobody reads the diffstat, and computing it is a diff of the whole merge.
        'merge', '--no-ff', '--no-edit', '--no-log', '--no-squash', '--no-autostash', '--no-stat', '--no-verify-signatures', '--cleanup=whitespace',
        '-m', withStepTrailer(message, stepKey), branch,
      ]);
    } catch (error) {
      const conflicts = await this.repo.unmergedPaths(this.repo.root);
      if (existsSync(mergeHead)) await this.repo.git(this.repo.root, ['merge', '--abort']);
      if (conflicts.length > 0) {
        const shown = conflicts.slice(0, 5).join(', ') + (conflicts.length > 5 ? ` and ${conflicts.length - 5} more` : '');
        throw new GitError(`merging ${branch} into ${this.repo.baseBranch} stopped on conflicts in ${shown}; the merge was aborted`, { cause: error, conflicts });
      }
      throw error;
    }
  }


}

/**
 * Starts merging the base branch into a task branch in its worktree, without committing, so the
 * TechLead's next commit concludes it: a clean merge just becomes part of the revision, a
 * conflicting one leaves the conflict markers in the files for the revision to resolve. Returns
 * the files in conflict. Nothing to do when the branch already contains the base, or the base the
 * branch; a merge already in progress (a re-run after a kill) is left as it is. Shared by the local
 * provider and the GitHub one (which first brings the local base up to the remote's).
 */
export async function mergeBaseInto(
  runner: GitRunner,
  worktree: string,
  baseBranch: string,
  log: (line: string) => void,
  /** The caller already knows the branch holds the base's tip (see Repository.holdsBaseTip): git need not be asked. */
  holdsBase = false,
): Promise<{ merging: boolean; conflicts: string[] }> {
  const gitDir = await gitDirOf(runner, worktree);
  const unmerged = async () => [...new Set((await runner.run(worktree, ['diff', '--name-only', '-z', '--diff-filter=U'])).split('\0').filter((name) => name !== ''))];
  if (existsSync(path.join(gitDir, 'MERGE_HEAD'))) return { merging: true, conflicts: await unmerged() };
  const base = `refs/heads/${baseBranch}`;
  if (holdsBase || (await runner.test(worktree, ['merge-base', '--is-ancestor', base, 'HEAD']))) return { merging: false, conflicts: [] };
  // The base already holds the branch: it was merged and a crash lost the record (a deleted WAL).
  // Merging the base in would make a merge commit the base does not have, and the branch's merge
  // would then merge it a second time; left as it is, that merge finds the one already made.
  if (await runner.test(worktree, ['merge-base', '--is-ancestor', 'HEAD', base])) return { merging: false, conflicts: [] };
  try {
    await runner.run(worktree, ['merge', '--no-ff', '--no-commit', '--no-edit', '--no-autostash', base]);
  } catch (error) {
    if (!existsSync(path.join(gitDir, 'MERGE_HEAD'))) throw error;
  }
  const conflicts = await unmerged();
  log(`merging ${baseBranch} into ${worktree}${conflicts.length ? `: conflicts in ${conflicts.join(', ')}` : ''}`);
  return { merging: true, conflicts };
}

/** A worktree's own git folder (where MERGE_HEAD is), read from its `.git` file when it can be. */
async function gitDirOf(runner: GitRunner, worktree: string): Promise<string> {
  return (await gitDirsOf(worktree))?.gitDir ?? (await runner.run(worktree, ['rev-parse', '--absolute-git-dir'])).trim();
}

/** Aborts the merge in progress in a worktree, if there is one (`git merge --abort`). */
export async function abortMergeIn(runner: GitRunner, worktree: string, log: (line: string) => void): Promise<void> {
  const gitDir = await gitDirOf(runner, worktree);
  if (!existsSync(path.join(gitDir, 'MERGE_HEAD'))) return;
  await runner.run(worktree, ['merge', '--abort']);
  log(`aborted the merge in progress in ${worktree}`);
}
