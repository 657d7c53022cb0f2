import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { GitError } from './git-error.ts';
import { Repository, STATE_DIR, realOrResolved } from './repository.ts';
import type { Worktrees } from './worktrees.ts';

/** Where trial merges are checked out to be tested: throwaway, never a task's worktree. */
export const TRIALS_DIR = path.join(STATE_DIR, 'trials');

/**
 * Merges made only to be tested ahead of their turn, as a merge queue does: the commit a PR's
 * merge would make on top of another (possible) commit, built from git's objects alone
 * (`merge-tree --write-tree`, then `commit-tree`): no branch, no ref, no work tree touched. Each
 * is tested in a detached worktree under `.duo-agent/trials/`, removed afterwards like any
 * worktree (Worktrees.removeWorktree); a kill's leftovers go with crash recovery.
 */
export class TrialMerges {
  constructor(
    private readonly repo: Repository,
    private readonly worktrees: Worktrees,
  ) {}

  /**
   * The merge of `branch` into the commit `onto`, as a dangling commit, and its tree; null when
   * they conflict (that PR's own turn will say so).
   */
  async merge(onto: string, branch: string): Promise<{ commit: string; tree: string } | null> {
    const result = await this.repo.runner.runForExit(this.repo.root, ['merge-tree', '--write-tree', '--no-messages', onto, `refs/heads/${branch}`]);
    if (result.code === 1) return null;
    const tree = result.stdout.split('\n')[0]?.trim() ?? '';
    if (result.code !== 0 || !/^[0-9a-f]{40,64}$/.test(tree)) throw new GitError(`git merge-tree of ${branch} onto ${onto.slice(0, 12)} failed (exit ${result.code})`);
    const commit = (await this.repo.git(this.repo.root, ['commit-tree', tree, '-p', onto, '-p', `refs/heads/${branch}`, '-m', `trial merge of ${branch}`])).trim();
    return { commit, tree };
  }

  /** The tree of a commit (or of a worktree's HEAD, with `cwd` that worktree). */
  async treeOf(cwd: string, rev: string): Promise<string> {
    return (await this.repo.git(cwd, ['rev-parse', '--verify', '--end-of-options', `${rev}^{tree}`])).trim();
  }

  /** A detached worktree of `commit` at `.duo-agent/trials/<name>`, made fresh. */
  async checkout(name: string, commit: string): Promise<string> {
    const target = path.join(this.repo.root, TRIALS_DIR, name);
    await this.worktrees.removeWorktree(target);
    await fs.mkdir(path.dirname(target), { recursive: true });
    await this.repo.git(this.repo.root, ['worktree', 'add', '--detach', target, commit]);
    return target;
  }

  /** Every trial worktree a killed process left; returns what it removed, for the log. */
  async dropAll(): Promise<string[]> {
    const root = path.join(this.repo.root, TRIALS_DIR);
    // No folder: nothing left (a registration whose folder went is pruned by crash recovery).
    if (!existsSync(root)) return [];
    const real = await realOrResolved(root);
    const removed: string[] = [];
    for (const entry of await this.repo.listWorktrees()) {
      if (!entry.path.startsWith(`${real}${path.sep}`)) continue;
      await this.repo.dropWorktree(entry.path);
      removed.push(`removed the trial worktree ${path.relative(this.repo.root, entry.path)} of an interrupted test run`);
    }
    await fs.rm(root, { recursive: true, force: true });
    return removed;
  }
}
