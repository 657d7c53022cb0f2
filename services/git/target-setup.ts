import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { messageOf } from '../../errors.ts';
import { GitError } from './git-error.ts';
import { Repository, STATE_DIR, INITIAL_COMMIT_MESSAGE, isErrno } from './repository.ts';

/** Making a target a repository Moderator can work in, and refusing one it must not touch. */
export class TargetSetup {
  constructor(private readonly repo: Repository) {}

  async prepare(): Promise<{ initialised: boolean }> {
    let initialised = false;
    // A `.git` entry marks the folder as a repository of its own; a folder that merely sits
    // inside another repository is not one, and gets its own repository if it is empty.
    if (!existsSync(path.join(this.repo.root, '.git'))) {
      const entries = (await fs.readdir(this.repo.root)).filter((name) => name !== STATE_DIR);
      if (entries.length > 0) {
        throw new GitError(`${this.repo.root} is not a git repository and not empty: run \`git init\` there (and commit) first, or choose an empty --target`);
      }
      await this.repo.git(this.repo.root, ['init', '--quiet', `--initial-branch=${this.repo.baseBranch}`]);
      this.repo.logLine(`initialised a git repository in ${this.repo.root}`);
      // Just created: no branches, and HEAD already names the base branch.
      await this.createInitialCommit(false);
      initialised = true;
    } else if ((await this.repo.localBranches()).length === 0) {
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
    const emptyTree = (await this.repo.git(this.repo.root, ['hash-object', '-t', 'tree', '-w', '/dev/null'])).trim();
    const sha = (await this.repo.git(this.repo.root, ['commit-tree', emptyTree, '-m', INITIAL_COMMIT_MESSAGE])).trim();
    // HEAD first: killed between the two, the repository still has no commits and this reruns.
    if (pointHead) await this.repo.git(this.repo.root, ['symbolic-ref', 'HEAD', `refs/heads/${this.repo.baseBranch}`]);
    // The empty old value makes git refuse if the branch appeared meanwhile.
    await this.repo.git(this.repo.root, ['update-ref', '-m', 'moderator: initial commit', `refs/heads/${this.repo.baseBranch}`, sha, '']);
    this.repo.logLine(`created the initial empty commit ${sha.slice(0, 12)} on ${this.repo.baseBranch}`);
  }


  private async ensureExcluded(): Promise<void> {
    // info/ is shared by all worktrees: git's own `--git-path info/exclude` is this file.
    const file = path.join((await this.repo.layout()).commonDir, 'info', 'exclude');
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
    this.repo.logLine(`added ${STATE_DIR}/ to ${file}`);
  }



  /** Refuses to start on a work tree with the user's uncommitted work or on another branch. */
  async assertClean(): Promise<void> {
    const { branches, current: marked } = await this.repo.branchesAndHead();
    if (branches.length === 0) throw new GitError(`the repository at ${this.repo.root} has no commits yet: prepare the target first`);
    if (!branches.includes(this.repo.baseBranch)) {
      const listed = branches.length > 10 ? `${branches.slice(0, 10).join(', ')}, …` : branches.join(', ');
      throw new GitError(`the base branch ${this.repo.baseBranch} (git.base_branch) does not exist in ${this.repo.root} (branches: ${listed}): set git.base_branch to one of them, or leave it unset to use the checked-out branch`);
    }
    // for-each-ref marks no branch on a detached HEAD or an unborn branch: git tells which.
    const current = marked ?? (await this.repo.currentBranch(this.repo.root));
    if (current !== this.repo.baseBranch) {
      const where = current === null ? 'has a detached HEAD' : `is on branch ${current}`;
      throw new GitError(`the work tree of ${this.repo.root} ${where}, not the base branch ${this.repo.baseBranch}: run \`git checkout ${this.repo.baseBranch}\` there first`);
    }
    const dirty = await this.repo.dirtyPaths(this.repo.root);
    if (dirty.length > 0) {
      const shown = dirty.slice(0, 5).join(', ') + (dirty.length > 5 ? ` and ${dirty.length - 5} more` : '');
      throw new GitError(`the work tree of ${this.repo.root} has uncommitted changes (${shown}): commit or stash them first`);
    }
  }

}
