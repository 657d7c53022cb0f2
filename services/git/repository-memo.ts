import { existsSync, statSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';

/** Where git keeps a repository's files; never changes while a process runs. */
export interface RepositoryLayout {
  /** The main work tree's git folder (HEAD, index, MERGE_HEAD). */
  gitDir: string;
  /** Shared by all worktrees: config, refs, `worktrees/`, `info/exclude`. */
  commonDir: string;
}

/** A task worktree this process checked or created itself. */
export interface KnownWorktree {
  branch: string;
  /** Its admin folder (`.git/worktrees/<name>`), from the worktree's `.git` file; undefined if unreadable. */
  admin: string | undefined;
  /**
   * The steps committed on its branch, by step key, as far as this process knows: filled by the
   * first search of the branch in this process (or empty for a branch this process created) and
   * kept up to date by its own commits. Undefined: not searched yet.
   */
  steps: Map<string, string> | undefined;
  /**
   * The base branch's tip read just before this process created the branch from the base; the
   * branch holds it (the tip can only have moved forward before the branch was made). Undefined for
   * a branch this process did not create, or when the tip could not be read from the files.
   */
  forkedFrom: string | undefined;
}

/**
 * What this process has already learned about one repository, so a step does not ask git again
 * what an earlier step of the same process verified (issue: 170 git calls for a 4-task demo).
 * Only this process's own knowledge: a new process (a resume after a crash) starts empty and
 * verifies everything, which keeps crash recovery exactly as thorough. Any failed git call forgets
 * it all (`forget`), since a failure can leave the repository in a state nobody verified.
 */
export class RepositoryMemo {
  layout: RepositoryLayout | undefined;
  /** Branches seen to exist (Moderator never deletes one; a failed call forgets them all). */
  readonly branches = new Set<string>();
  /** By the worktree's real path. */
  readonly worktrees = new Map<string, KnownWorktree>();
  /** Branch names git's check-ref-format accepted. */
  readonly validBranchNames = new Set<string>();

  forget(): void {
    this.branches.clear();
    this.worktrees.clear();
  }
}

/**
 * The layout read from the files, as git itself resolves it, when `root/.git` is a plain git
 * folder (no `commondir` file redirecting it); undefined when git must be asked (a `.git` file
 * of a linked worktree or submodule).
 */
export function plainLayout(root: string): RepositoryLayout | undefined {
  const gitDir = path.join(root, '.git');
  if (!statSync(gitDir, { throwIfNoEntry: false })?.isDirectory() || existsSync(path.join(gitDir, 'commondir'))) return undefined;
  return { gitDir, commonDir: gitDir };
}

/** A linked worktree's admin folder, from the `gitdir:` line of its `.git` file. */
export async function worktreeAdminOf(worktree: string): Promise<string | undefined> {
  try {
    const text = await fs.readFile(path.join(worktree, '.git'), 'utf8');
    const match = /^gitdir: (.+)$/m.exec(text);
    return match?.[1] === undefined ? undefined : path.resolve(worktree, match[1].trim());
  } catch {
    return undefined;
  }
}

/**
 * Whether a HEAD file says it is on `branch`. Reading the file is how git's files backend keeps
 * HEAD; anything else in it (a detached sha, a reftable stub, no file) means "ask git".
 */
export async function headFileIsOn(gitDir: string | undefined, branch: string): Promise<boolean> {
  if (gitDir === undefined) return false;
  try {
    return (await fs.readFile(path.join(gitDir, 'HEAD'), 'utf8')).trim() === `ref: refs/heads/${branch}`;
  } catch {
    return false;
  }
}

/**
 * The signs a `git worktree add` killed mid-checkout leaves (FACTS: "locked" with reason
 * "initializing", an `index.lock` and no index) are absent from a known worktree's admin folder.
 */
export function adminLooksWhole(admin: string | undefined): boolean {
  return admin !== undefined && existsSync(path.join(admin, 'index')) && !existsSync(path.join(admin, 'locked'));
}
