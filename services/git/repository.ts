import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { hasStepTrailer, stepTrailerLine } from './commit-message.ts';
import { GitError } from './git-error.ts';
import { GitRunner } from './git-runner.ts';
import { readCommitFromFiles } from './ref-files.ts';
import { RepositoryMemo, headFileIsOn, plainLayout, type RepositoryLayout } from './repository-memo.ts';

/** Moderator's own folder in the target; kept out of git through `.git/info/exclude`. */
export const STATE_DIR = '.duo-agent';
export const INITIAL_COMMIT_MESSAGE = 'Initial commit (created by Moderator)';
/** Moderator's settings files a user keeps in the target; untracked, they do not make the work tree dirty. */
export const SETTINGS_FILES = new Set(['duo-agent.config.yaml', 'agents.yaml']);
/** How many of a merged task branch's newest commits are searched for a step's commit. */
export const MERGED_SEARCH_DEPTH = 500;
/**
 * One component of a branch name that is a valid ref name for certain: a strict subset of
 * check-ref-format's rules (no "..", no leading or trailing ".", no ".lock" end, none of
 * `~^:?*[\\ @{`). Names made of such components need no git process to be checked; any other
 * name is asked of `git check-ref-format`.
 */
export const PLAIN_REF_COMPONENT = /^[A-Za-z0-9_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*$/;

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

export interface WorktreeEntry {
  path: string;
  branch: string | null;
  locked: string | null;
}

export function isErrno(error: unknown, code: string): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === code;
}

export async function realOrResolved(file: string): Promise<string> {
  try {
    return await fs.realpath(file);
  } catch {
    return path.resolve(file);
  }
}

export function isWithin(parent: string, child: string): boolean {
  const rel = path.relative(parent, child);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

/** Cuts UTF-8 text to at most `maxBytes`, at a line end when one is near, with a marker line. */
export function truncateBytes(text: string, maxBytes: number, what: string): string {
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
/**
 * The one target repository that every part of the git service works on: its root and base
 * branch, the runner every git call goes through, what this process already verified (the memo),
 * the queue that keeps main-work-tree operations one at a time, and the queries they share.
 */
export class Repository {
  readonly root: string;
  readonly baseBranch: string;
  readonly runner: GitRunner;
  readonly logLine: (msg: string) => void;
  /** Operations on the main work tree (merges, recovery) run one at a time: they share one index. */
  private mainQueue: Promise<unknown> = Promise.resolve();
  /** What this process already verified; see RepositoryMemo. */
  readonly memo = new RepositoryMemo();

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



  async git(cwd: string, args: string[]): Promise<string> {
    try {
      return await this.runner.run(cwd, args);
    } catch (error) {
      // A failure can leave a state nobody verified: what this process learned is checked again.
      this.memo.forget();
      throw error;
    }
  }


  async layout(): Promise<RepositoryLayout> {
    if (this.memo.layout !== undefined) return this.memo.layout;
    let layout = plainLayout(this.root);
    if (layout === undefined) {
      const [gitDir = '', commonDir = ''] = (await this.git(this.root, ['rev-parse', '--path-format=absolute', '--absolute-git-dir', '--git-common-dir'])).trim().split('\n');
      layout = { gitDir, commonDir };
    }
    this.memo.layout = layout;
    return layout;
  }


  onMainTree<T>(work: () => Promise<T>): Promise<T> {
    const next = this.mainQueue.then(work, work);
    this.mainQueue = next.catch(() => undefined);
    return next;
  }


  checkRef(ref: string): string {
    if (ref === '' || ref.startsWith('-') || /[\s\0]/.test(ref)) throw new GitError(`invalid git ref ${JSON.stringify(ref)}`);
    return ref;
  }


  /** A plain branch name as its full ref, so a tag or file of the same name cannot be taken. */
  qualify(branch: string): string {
    this.checkRef(branch);
    return branch.startsWith('refs/') ? branch : `refs/heads/${branch}`;
  }


  async checkBranchName(branch: string): Promise<void> {
    if (branch.split('/').every((part) => PLAIN_REF_COMPONENT.test(part) && !part.endsWith('.lock')) || this.memo.validBranchNames.has(branch)) return;
    if (branch.startsWith('-') || !(await this.runner.test(this.root, ['check-ref-format', `refs/heads/${branch}`]))) {
      throw new GitError(`invalid branch name ${JSON.stringify(branch)}`);
    }
    this.memo.validBranchNames.add(branch);
  }


  /** The object `spec` names in `cwd`; `HEAD` and full branch refs are read from git's files when they say it plainly (ref-files.ts). */
  async revParse(cwd: string, spec: string): Promise<string> {
    return (await readCommitFromFiles(cwd, spec)) ?? (await this.git(cwd, ['rev-parse', '--verify', '--quiet', spec])).trim();
  }


  async isAncestor(cwd: string, ancestor: string, descendant: string): Promise<boolean> {
    return this.runner.test(cwd, ['merge-base', '--is-ancestor', ancestor, descendant]);
  }


  async localBranches(): Promise<string[]> {
    return (await this.branchesAndHead()).branches;
  }


  /** Local branches, and the one checked out in the main work tree when for-each-ref marks one. */
  async branchesAndHead(): Promise<{ branches: string[]; current: string | undefined }> {
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
  async currentBranch(cwd: string): Promise<string | null> {
    const name = (await this.git(cwd, ['branch', '--show-current'])).trim();
    return name === '' ? null : name;
  }


  async dirtyPaths(cwd: string): Promise<string[]> {
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


  async unmergedPaths(cwd: string): Promise<string[]> {
    try {
      const out = await this.git(cwd, ['diff', '--name-only', '-z', '--no-ext-diff', '--no-textconv', '--diff-filter=U']);
      return [...new Set(out.split('\0').filter((name) => name !== ''))];
    } catch {
      return [];
    }
  }


  /** Worktree admin folders (`.git/worktrees/<name>`) mapped to the worktree folder they name. */
  /**
   * A `git worktree add` killed early leaves a registration git itself cannot read: measured, an
   * empty `commondir` and a zero `HEAD`, locked "initializing". Then `git worktree list` and
   * `git branch` fail for the whole repository and `prune` keeps it, being locked. Such a
   * registration of one of our own worktrees (under `.duo-agent/`) is removed with its folder;
   * `ensureWorktree` then makes the worktree again.
   */
  async removeBrokenRegistrations(commonDir: string): Promise<string[]> {
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


  async worktreeAdminDirs(commonDir: string): Promise<Map<string, string>> {
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


  async listWorktrees(): Promise<WorktreeEntry[]> {
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
  async isHalfCreated(entry: WorktreeEntry): Promise<boolean> {
    const gitFile = path.join(entry.path, '.git');
    if (!existsSync(gitFile)) return true;
    if (entry.locked === null) return false;
    if (entry.locked === 'initializing') return true;
    const admin = await this.adminDirOf(entry.path);
    return admin === null || !existsSync(path.join(admin, 'index'));
  }


  async adminDirOf(worktree: string): Promise<string | null> {
    for (const [admin, tree] of await this.worktreeAdminDirs((await this.layout()).commonDir)) {
      if ((await realOrResolved(tree)) === worktree) return admin;
    }
    return null;
  }


  /** Removes a registered worktree even when half-created, locked or missing its `.git` file. */
  async dropWorktree(target: string): Promise<void> {
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
  async isDisposable(target: string): Promise<boolean> {
    const stateDir = await realOrResolved(path.join(this.root, STATE_DIR));
    if (isWithin(stateDir, target)) return true;
    try {
      return (await fs.readdir(target)).length === 0;
    } catch {
      return false;
    }
  }


  /** The real path of a task worktree; the main work tree is refused (agents never write there). */
  async worktreeRoot(worktreePath: string): Promise<string> {
    const target = await realOrResolved(path.resolve(this.root, worktreePath));
    if (!existsSync(path.join(target, '.git'))) throw new GitError(`${target} is not a worktree`);
    if (target === (await realOrResolved(this.root))) throw new GitError(`${target} is the main work tree, not a task worktree`);
    return target;
  }


  /** `git diff base...branch` (the branch's own changes), cut to `maxBytes` with a marker line. */
  async diff(branch: string, maxBytes = 60_000): Promise<string> {
    const text = await this.git(this.root, [
      'diff', '--no-color', '--no-ext-diff', '--no-textconv', '--src-prefix=a/', '--dst-prefix=b/',
      `refs/heads/${this.baseBranch}...${this.qualify(branch)}`, '--',
    ]);
    return truncateBytes(text, maxBytes, 'diff');
  }


  /**
   * How far a task's worktree is from the base branch, uncommitted work included: lines changed in
   * tracked files, and the untracked files with their bytes. What the Monitor compares between ticks
   * to tell progress from an agent busy without effect.
   */
  async workSize(worktreePath: string): Promise<{ lines: number; untrackedFiles: number; untrackedBytes: number }> {
    const cwd = await this.worktreeRoot(worktreePath);
    const numstat = await this.git(cwd, ['diff', '--numstat', '--no-ext-diff', '--no-textconv', `refs/heads/${this.baseBranch}`, '--']);
    let lines = 0;
    for (const row of numstat.split('\n')) {
      const [added, deleted] = row.split('\t');
      // Binary files count "-": a change all the same.
      lines += (Number.parseInt(added ?? '', 10) || (added === '-' ? 1 : 0)) + (Number.parseInt(deleted ?? '', 10) || 0);
    }
    const untracked = (await this.git(cwd, ['ls-files', '--others', '--exclude-standard', '-z'])).split('\0').filter((name) => name !== '');
    let untrackedBytes = 0;
    for (const name of untracked) untrackedBytes += (await fs.stat(path.join(cwd, name)).catch(() => undefined))?.size ?? 0;
    return { lines, untrackedFiles: untracked.length, untrackedBytes };
  }


  /** Paths the branch changed since it left the base branch. */
  async changedFiles(branch: string): Promise<string[]> {
    const out = await this.git(this.root, ['diff', '--name-only', '-z', '--no-ext-diff', '--no-textconv', `refs/heads/${this.baseBranch}...${this.qualify(branch)}`, '--']);
    return out.split('\0').filter((name) => name !== '');
  }


  async headSha(ref = 'HEAD'): Promise<string> {
    return this.revParse(this.root, `${this.checkRef(ref)}^{commit}`);
  }


  /**
   * Whether this process knows that the task branch checked out at `worktree` (its real path)
   * holds the base's current tip: it made the branch from that very tip, and the base has not
   * moved since. Commits on the branch since then only add to it. False means "ask git".
   */
  async holdsBaseTip(worktree: string): Promise<boolean> {
    const known = this.memo.worktrees.get(worktree);
    if (known?.forkedFrom === undefined || !(await headFileIsOn(known.admin, known.branch))) return false;
    return (await readCommitFromFiles(this.root, `refs/heads/${this.baseBranch}`)) === known.forkedFrom;
  }


  /** The tip of a branch (a plain name is a branch, never a tag of the same name). */
  async branchHead(branch: string): Promise<string> {
    return this.revParse(this.root, `${this.qualify(branch)}^{commit}`);
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


  /** Newest commit in `range` whose message carries exactly this step's trailer, or null. */
  async findStepCommit(cwd: string, range: string[], stepKey: string): Promise<string | null> {
    const out = await this.git(cwd, ['log', '--no-show-signature', '--fixed-strings', `--grep=${stepTrailerLine(stepKey)}`, '--format=%H%x00%B%x1e', ...range, '--']);
    for (const record of out.split('\x1e')) {
      const [sha, body] = record.replace(/^\n/, '').split('\0');
      if (sha !== undefined && sha !== '' && body !== undefined && hasStepTrailer(body, stepKey)) return sha;
    }
    return null;
  }
}
