import fs from 'node:fs/promises';
import path from 'node:path';

/**
 * Reading a ref the way git's files backend stores it, without starting git: the fast path of
 * `rev-parse` for the questions Moderator asks after nearly every step ("which commit is this
 * worktree's HEAD now", "where is the base branch"). Each answer is either exactly what git would
 * say or undefined, and undefined means "ask git": a packed ref (no loose file), a reftable
 * repository (`refs/heads` is then a file and HEAD names `refs/heads/.invalid`), a symbolic ref
 * other than HEAD, anything unreadable or unexpected.
 *
 * Why it is exact: git resolves `refs/heads/<name>` from the loose file `<common dir>/refs/heads/
 * <name>` when it exists (it wins over `packed-refs`), and writes that file by renaming a finished
 * `<name>.lock` over it, so a read sees the old or the new sha, never half of one. A worktree's
 * HEAD is the file `HEAD` in its own git folder. Branch tips are commits (Moderator's are made by
 * commit, merge and worktree add), so the `^{commit}` peel git would do changes nothing.
 */

/** A whole object name, SHA-1 or SHA-256. */
const OBJECT_ID = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

/** Where a checkout's git state lives, read from its `.git` as git discovers it. */
export interface GitDirs {
  /** HEAD, the index, MERGE_HEAD: the main work tree's `.git`, a linked worktree's admin folder. */
  gitDir: string;
  /** refs, objects, config: shared by every worktree of the repository. */
  commonDir: string;
}

async function readSmallFile(file: string): Promise<string | undefined> {
  try {
    return (await fs.readFile(file, 'utf8')).trim();
  } catch {
    return undefined;
  }
}

/**
 * The git folders of the checkout whose top is `cwd`: `cwd/.git` a folder (a main work tree) or a
 * `gitdir:` file (a linked worktree, whose admin folder names the common folder in `commondir`).
 * Undefined when `cwd/.git` is neither, as in a subfolder of a checkout: git must be asked.
 */
export async function gitDirsOf(cwd: string): Promise<GitDirs | undefined> {
  const dotGit = path.join(cwd, '.git');
  const stat = await fs.stat(dotGit).catch(() => undefined);
  if (stat === undefined) return undefined;
  let gitDir: string;
  if (stat.isDirectory()) gitDir = dotGit;
  else {
    const match = /^gitdir: (.+)$/m.exec((await readSmallFile(dotGit)) ?? '');
    if (match?.[1] === undefined) return undefined;
    gitDir = path.resolve(cwd, match[1].trim());
  }
  const common = await readSmallFile(path.join(gitDir, 'commondir'));
  return { gitDir, commonDir: common === undefined ? gitDir : path.resolve(gitDir, common) };
}

/** The commit a branch's loose ref file names (`refs/heads/<name>`), or undefined: ask git. */
export async function readBranchRef(commonDir: string, ref: string): Promise<string | undefined> {
  if (!ref.startsWith('refs/heads/') || ref.endsWith('/') || ref.split('/').some((part) => part === '' || part === '.' || part === '..')) return undefined;
  const content = await readSmallFile(path.join(commonDir, ...ref.split('/')));
  return content !== undefined && OBJECT_ID.test(content) ? content : undefined;
}

/** The commit `HEAD` names in a checkout's git folder: detached, or on a branch with a loose ref. Undefined: ask git. */
export async function readHead(dirs: GitDirs): Promise<string | undefined> {
  const head = await readSmallFile(path.join(dirs.gitDir, 'HEAD'));
  if (head === undefined) return undefined;
  if (OBJECT_ID.test(head)) return head;
  const match = /^ref: (refs\/heads\/\S+)$/.exec(head);
  return match?.[1] === undefined ? undefined : readBranchRef(dirs.commonDir, match[1]);
}

/**
 * The commit of `HEAD` or a full `refs/heads/...` name, optionally written with git's `^{commit}`
 * peel, as seen from the checkout at `cwd`; undefined for any other spec or when the files do not
 * say it plainly.
 */
export async function readCommitFromFiles(cwd: string, spec: string): Promise<string | undefined> {
  const name = spec.endsWith('^{commit}') ? spec.slice(0, -'^{commit}'.length) : spec;
  if (name !== 'HEAD' && !name.startsWith('refs/heads/')) return undefined;
  const dirs = await gitDirsOf(cwd);
  if (dirs === undefined) return undefined;
  return name === 'HEAD' ? readHead(dirs) : readBranchRef(dirs.commonDir, name);
}
