import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { messageOf } from '../../errors.ts';
import { GitError } from './git-error.ts';
import { readCommitFromFiles } from './ref-files.ts';
import { adminLooksWhole, headFileIsOn, worktreeAdminOf } from './repository-memo.ts';
import { Repository, STATE_DIR, realOrResolved } from './repository.ts';
import { resolveInside } from './safe-path.ts';

/** The task worktrees: made, verified, repaired after a kill, removed; files written into them. */
export class Worktrees {
  constructor(private readonly repo: Repository) {}

  /**
   * A worktree at `worktreePath` with `branch` checked out, the branch created from the base
   * branch's tip when missing. Repairs the half states a kill leaves: a branch without its
   * worktree, a folder that is not (or only half) registered as a worktree.
   */
  async ensureWorktree(branch: string, worktreePath: string): Promise<void> {
    await this.repo.checkBranchName(branch);
    const target = await realOrResolved(path.resolve(this.repo.root, worktreePath));
    // Checked or made by this process, still there, whole and on its branch (read from its files).
    const known = this.repo.memo.worktrees.get(target);
    if (known?.branch === branch && existsSync(path.join(target, '.git')) && adminLooksWhole(known.admin) && (await headFileIsOn(known.admin, branch))) return;
    this.repo.memo.worktrees.delete(target);
    // Nothing at the path, as for every new task: create it straight away. Whatever makes that
    // fail (a registration a kill left, the branch checked out elsewhere, ...) gets the full check.
    if (known === undefined && !existsSync(target) && (await this.tryAddWorktree(branch, target))) return;
    await this.verifyWorktree(branch, target);
  }


  /** The full check of `ensureWorktree`: every half state a kill can leave is found and repaired. */
  private async verifyWorktree(branch: string, target: string): Promise<void> {
    await this.repo.removeBrokenRegistrations((await this.repo.layout()).commonDir);
    await this.repo.git(this.repo.root, ['worktree', 'prune']);
    const worktrees = await this.repo.listWorktrees();

    const here = worktrees.find((entry) => entry.path === target);
    if (here !== undefined) {
      const half = await this.repo.isHalfCreated(here);
      if (!half && here.branch === branch) {
        await this.remember(branch, target, undefined);
        return;
      }
      if (!half) {
        throw new GitError(`${target} is already a worktree of ${here.branch ?? 'a detached HEAD'}, not of ${branch}`);
      }
      this.repo.logLine(`removing the half-created worktree ${target}`);
      await this.repo.dropWorktree(target);
    }
    const elsewhere = worktrees.find((entry) => entry.branch === branch && entry.path !== target);
    if (elsewhere !== undefined) throw new GitError(`branch ${branch} is already checked out in the worktree ${elsewhere.path}`);

    if (existsSync(target)) {
      if (!(await this.repo.isDisposable(target))) {
        throw new GitError(`${target} exists and is not a worktree: refusing to delete a folder outside ${path.join(this.repo.root, STATE_DIR)}`);
      }
      this.repo.logLine(`removing ${target}: a folder left without a worktree registration`);
      await fs.rm(target, { recursive: true, force: true });
    }
    await fs.mkdir(path.dirname(target), { recursive: true });
    await this.addWorktree(branch, target, await this.repo.branchExists(branch));
  }


  /** `worktree add` where nothing is in the way; false (nothing to undo but what the full check repairs) when it fails. */
  private async tryAddWorktree(branch: string, target: string): Promise<boolean> {
    try {
      await fs.mkdir(path.dirname(target), { recursive: true });
      await this.addWorktree(branch, target, this.repo.memo.branches.has(branch));
      return true;
    } catch {
      return false;
    }
  }


  private async addWorktree(branch: string, target: string, branchExists: boolean): Promise<void> {
    if (branchExists) {
      await this.repo.git(this.repo.root, ['worktree', 'add', target, branch]);
      this.repo.logLine(`added the worktree ${target} for the existing branch ${branch}`);
      await this.remember(branch, target, undefined);
    } else {
      const base = `refs/heads/${this.repo.baseBranch}`;
      const forkedFrom = await readCommitFromFiles(this.repo.root, base);
      await this.repo.git(this.repo.root, ['worktree', 'add', '-b', branch, target, base]);
      this.repo.logLine(`created the branch ${branch} from ${this.repo.baseBranch} in the worktree ${target}`);
      await this.remember(branch, target, { forkedFrom });
    }
  }


  /**
   * A worktree this process verified or created. A branch it created from the base right now has
   * no step commits: no earlier process can have committed on it (task ids, and so step keys and
   * branch names, are never reused on a target), so its first commit needs no search.
   */
  private async remember(branch: string, target: string, createdNow: { forkedFrom: string | undefined } | undefined): Promise<void> {
    const real = await realOrResolved(target);
    this.repo.memo.branches.add(branch);
    this.repo.memo.worktrees.set(real, { branch, admin: await worktreeAdminOf(real), steps: createdNow ? new Map() : undefined, forkedFrom: createdNow?.forkedFrom });
  }


  /** Removes the worktree (and its uncommitted files); keeps the branch. Nothing there: no-op. */
  async removeWorktree(worktreePath: string): Promise<void> {
    const target = await realOrResolved(path.resolve(this.repo.root, worktreePath));
    const known = this.repo.memo.worktrees.get(target);
    this.repo.memo.worktrees.delete(target);
    if (known !== undefined && existsSync(path.join(target, '.git'))) {
      try {
        // Twice --force, as in dropWorktree: a locked worktree and uncommitted files go too.
        await this.repo.git(this.repo.root, ['worktree', 'remove', '--force', '--force', target]);
        this.repo.logLine(`removed the worktree ${target}`);
        return;
      } catch {
        // Whatever was in the way, the full path below deals with it.
      }
    }
    await this.repo.removeBrokenRegistrations((await this.repo.layout()).commonDir);
    await this.repo.git(this.repo.root, ['worktree', 'prune']);
    const registered = (await this.repo.listWorktrees()).some((entry) => entry.path === target);
    if (registered) {
      await this.repo.dropWorktree(target);
      this.repo.logLine(`removed the worktree ${target}`);
    } else if (existsSync(target) && (await this.repo.isDisposable(target))) {
      await fs.rm(target, { recursive: true, force: true });
    }
  }


  /**
   * Writes and deletes files in a task worktree. Every path is checked before anything is
   * written: relative, inside the worktree even through symlinks, never into `.git`.
   */
  async writeFiles(worktreePath: string, files: { path: string; content: string }[], deletes: string[] = []): Promise<void> {
    const rootReal = await this.repo.worktreeRoot(worktreePath);
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


}
