import { existsSync } from 'node:fs';
import path from 'node:path';
import { findLockFiles, removeStaleLock } from './stale-locks.ts';
import { Repository, type RecoverOptions } from './repository.ts';

/** Putting a repository back after a kill: stale locks, interrupted merges, half-made worktrees. */
export class CrashRecovery {
  constructor(private readonly repo: Repository) {}

  /**
   * Puts the repository back into a state the idempotent methods can continue from after a
   * crash: stale lock files removed, an unfinished merge in the main work tree (or a worktree)
   * aborted, registrations of deleted worktrees pruned. Returns what it fixed, for the log.
   */
  async recoverAfterCrash(options: RecoverOptions = {}): Promise<string[]> {
    return this.repo.onMainTree(async () => {
      const lockWaitMs = options.lockWaitMs ?? 15_000;
      const fixed: string[] = [];
      // What was verified before is about to be repaired: check it again afterwards.
      this.repo.memo.forget();
      const { gitDir, commonDir } = await this.repo.layout();
      fixed.push(...(await this.repo.removeBrokenRegistrations(commonDir)));
      const admins = await this.repo.worktreeAdminDirs(commonDir);

      // Locks first: `merge --abort` itself needs the index lock.
      const locks: string[] = [];
      for (const dir of [gitDir, ...admins.keys()]) {
        locks.push(path.join(dir, 'index.lock'), path.join(dir, 'HEAD.lock'), path.join(dir, 'ORIG_HEAD.lock'));
      }
      locks.push(path.join(commonDir, 'packed-refs.lock'), path.join(commonDir, 'config.lock'));
      locks.push(...(await findLockFiles(path.join(commonDir, 'refs'))));
      for (const lock of locks) {
        if (await removeStaleLock(lock, lockWaitMs)) fixed.push(`removed the stale lock ${path.relative(this.repo.root, lock)}`);
      }

      const merging: { tree: string; mergeHead: string }[] = [{ tree: this.repo.root, mergeHead: path.join(gitDir, 'MERGE_HEAD') }];
      for (const [admin, tree] of admins) merging.push({ tree, mergeHead: path.join(admin, 'MERGE_HEAD') });
      for (const { tree, mergeHead } of merging) {
        if (existsSync(mergeHead) && existsSync(tree)) {
          await this.repo.git(tree, ['merge', '--abort']);
          fixed.push(`aborted an unfinished merge in ${tree}`);
        }
      }

      // A merge killed before it wrote MERGE_HEAD leaves files in the main work tree and no merge to
      // abort; the retried merge would then refuse to overwrite them. The tree was clean when the run
      // started, so whatever is there came from the interrupted merge, or from a person meanwhile:
      // stashed, never deleted.
      const leftovers = await this.repo.dirtyPaths(this.repo.root);
      if (leftovers.length > 0) {
        await this.repo.git(this.repo.root, ['stash', 'push', '--include-untracked', '-m', 'moderator: left in the work tree by an interrupted merge']);
        fixed.push(`stashed ${leftovers.length} leftover change(s) of an interrupted merge in the main work tree (see \`git stash list\`)`);
      }

      const before = new Set(admins.keys());
      await this.repo.git(this.repo.root, ['worktree', 'prune']);
      const after = new Set((await this.repo.worktreeAdminDirs(commonDir)).keys());
      for (const admin of before) {
        if (!after.has(admin)) fixed.push(`pruned the registration of the deleted worktree ${admins.get(admin) ?? admin}`);
      }
      for (const line of fixed) this.repo.logLine(line);
      return fixed;
    });
  }


}
