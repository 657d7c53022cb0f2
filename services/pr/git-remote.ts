import path from 'node:path';
import { GitError as SimpleGitError, simpleGit, type SimpleGit } from 'simple-git';
import { messageOf } from '../../errors.ts';
import { GitRunner } from '../git/git-runner.ts';
import { mergeBaseInto } from '../git/merges.ts';
import { PrError } from './pr-error.ts';

export interface GitRemoteOptions {
  /** The target repository (its main work tree, kept clean on the base branch). */
  root: string;
  baseBranch: string;
  /** Where task branches go and the base comes from: an http(s) URL, a path or a file:// URL. */
  url: string;
  /** Sent to an http(s) remote as an Authorization header; never put in the URL, argv or output. */
  token?: string | undefined;
  identity: { name: string; email: string };
  /** Environment of the git processes (PATH, HOME); secrets and GIT_* are not passed on. */
  env: Record<string, string>;
  log?: (line: string) => void;
}

/** Where the remote's base branch is kept locally; not a branch, so no task ever starts from it by mistake. */
const trackingRef = (base: string) => `refs/remotes/moderator/${base}`;

/** A URL or path as it may be shown: any user:password part removed. */
export function displayUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@]*@/i, '$1');
}

const isHttp = (url: string) => /^https?:\/\//i.test(url);

/**
 * git against the PR provider's remote: pushes task branches, fetches the base branch, and keeps
 * the local base equal to the remote's. Every method can run again after a kill: a push of what
 * the remote already has and a fetch are no-ops, a fast-forward to where the base already is
 * changes nothing.
 */
export class GitRemote {
  readonly url: string;
  readonly baseBranch: string;
  private readonly root: string;
  /** As configured, possibly with credentials in it: for git's argv only, never shown. */
  private readonly configuredUrl: string;
  private readonly local: GitRunner;
  private readonly network: SimpleGit;
  private readonly secrets: string[];
  private readonly logLine: (line: string) => void;

  constructor(options: GitRemoteOptions) {
    this.root = path.resolve(options.root);
    this.baseBranch = options.baseBranch;
    this.configuredUrl = options.url;
    this.url = displayUrl(options.url);
    this.logLine = options.log ?? (() => {});
    this.local = new GitRunner({ identity: options.identity, env: options.env, runHooks: false });
    const header = options.token && isHttp(options.url)
      ? `Authorization: Basic ${Buffer.from(`x-access-token:${options.token}`).toString('base64')}`
      : undefined;
    // Everything a failure message could echo back is redacted: the token, and the header carrying it.
    this.secrets = [options.token, header, header?.slice('Authorization: Basic '.length)].filter((value): value is string => !!value);
    const base = Object.fromEntries(Object.entries(options.env ?? {}).filter(([key]) => !/^(git_.*|editor|visual|pager|ssh_askpass|prefix)$/i.test(key)));
    // The header goes through GIT_CONFIG_* in git's environment rather than `-c` on its command
    // line: argv is readable by every user of the machine (ps, /proc/<pid>/cmdline), the
    // environment only by the same user. It is scoped to the remote's origin, so a redirect to
    // another host never receives it.
    const credentials = header
      ? { GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: `http.${new URL(options.url).origin}/.extraheader`, GIT_CONFIG_VALUE_0: header }
      : {};
    this.network = simpleGit({
      baseDir: this.root,
      config: [
        'core.hooksPath=/dev/null',
        // A worktree's tools could plant one in the shared .git/config (FACTS.md).
        'core.fsmonitor=false',
        // No helper may offer the user's stored credentials, or store ours.
        'credential.helper=',
        'color.ui=false',
        'core.quotepath=false',
      ],
      unsafe: { allowUnsafeHooksPath: true, allowUnsafeFsMonitor: true, allowUnsafeCredentialHelper: true, allowUnsafeConfigEnvCount: true },
      allowEnvironment: [...Object.keys(credentials), 'GIT_TERMINAL_PROMPT'],
      errors: (error, result) => {
        if (result.exitCode === 0) return error;
        return new SimpleGitError(undefined, Buffer.concat([...result.stdErr, ...result.stdOut]).toString('utf8'));
      },
    });
    // A remote asking for a password must fail, not wait for a terminal nobody watches.
    this.network.env({ ...base, ...credentials, GIT_TERMINAL_PROMPT: '0' });
  }

  /** Pushes the local branch to the same name on the remote; a branch the remote already has is a no-op. */
  async push(branch: string): Promise<void> {
    const ref = `refs/heads/${branch}`;
    try {
      await this.network.raw(['push', '--porcelain', '--no-verify', '--', this.configuredUrl, `${ref}:${ref}`]);
    } catch (error) {
      const text = this.redact(messageOf(error));
      if (/\[rejected\]|non-fast-forward|fetch first|\[remote rejected\]/i.test(text)) {
        throw new PrError('pr_push_rejected', `pushing ${branch} to ${this.url} was refused (${firstLine(text, /rejected/i)}): the branch there has commits this run does not; delete it there or change git.branch_prefix`, { cause: error });
      }
      throw this.networkFailure(`pushing ${branch} to ${this.url}`, text, error);
    }
    this.logLine(`pushed ${branch} to ${this.url}`);
  }

  /** The remote's commit for a branch, or null when it has no such branch. */
  async remoteHead(branch: string): Promise<string | null> {
    let out: string;
    try {
      out = await this.network.raw(['ls-remote', '--heads', '--', this.configuredUrl, `refs/heads/${branch}`]);
    } catch (error) {
      throw this.networkFailure(`reading the branches of ${this.url}`, this.redact(messageOf(error)), error);
    }
    const line = out.split('\n').find((candidate) => candidate.endsWith(`\trefs/heads/${branch}`));
    return line ? (line.split('\t')[0] ?? null) : null;
  }

  /**
   * Makes the local base branch equal to the remote's: fetches it and fast-forwards the main
   * work tree (clean, on the base: Moderator keeps it so). A local base the remote does not
   * contain is refused, never overwritten. Returns the base's commit and whether it moved.
   */
  async syncBase(): Promise<{ sha: string; moved: boolean }> {
    const remote = await this.fetchBase();
    const local = (await this.local.run(this.root, ['rev-parse', '--verify', '--quiet', `refs/heads/${this.baseBranch}^{commit}`])).trim();
    if (local === remote) return { sha: remote, moved: false };
    if (!(await this.local.test(this.root, ['merge-base', '--is-ancestor', local, remote]))) {
      const ahead = await this.local.test(this.root, ['merge-base', '--is-ancestor', remote, local]);
      throw new PrError(
        'pr_base',
        ahead
          ? `the local ${this.baseBranch} has commits ${this.url} does not: push them there first, or reset ${this.baseBranch} to the remote's ${remote.slice(0, 12)}`
          : `the local ${this.baseBranch} and the one on ${this.url} have diverged: use a clone of that repository as the target, or make the local ${this.baseBranch} equal to the remote's (${remote.slice(0, 12)})`,
      );
    }
    const current = (await this.local.run(this.root, ['branch', '--show-current'])).trim();
    if (current !== this.baseBranch) {
      throw new PrError('pr_base', `the work tree of ${this.root} is on ${current || 'a detached HEAD'}, not ${this.baseBranch}: run \`git checkout ${this.baseBranch}\` there first`);
    }
    try {
      await this.local.run(this.root, ['merge', '--ff-only', '--no-edit', '--no-autostash', remote]);
    } catch (error) {
      throw new PrError('pr_base', `cannot fast-forward ${this.baseBranch} in ${this.root} to the remote's ${remote.slice(0, 12)} (${messageOf(error)}): commit or stash the changes there`, { cause: error });
    }
    this.logLine(`fast-forwarded ${this.baseBranch} from ${local.slice(0, 12)} to ${remote.slice(0, 12)} (${this.url})`);
    return { sha: remote, moved: true };
  }

  /** Files the branch and the local base both changed differently (git 2.38+; an older git reports none). */
  async conflictsWithBase(branch: string): Promise<string[]> {
    const result = await this.local.runForExit(this.root, ['merge-tree', '--write-tree', '--name-only', '--no-messages', `refs/heads/${this.baseBranch}`, `refs/heads/${branch}`]);
    // Exit 1 means conflicts: stdout is the tree, then the conflicted files. Any other exit (an
    // old git without --write-tree) says nothing about which files.
    if (result.code !== 1) return [];
    return result.stdout.split('\n').map((line) => line.trim()).filter((line) => line !== '').slice(1);
  }

  /** Starts merging the (synced) base into a task's worktree; see services/git/merges.ts. */
  mergeBaseInto(worktree: string): Promise<{ merging: boolean; conflicts: string[] }> {
    return mergeBaseInto(this.local, worktree, this.baseBranch, this.logLine);
  }

  private async fetchBase(): Promise<string> {
    const remote = await this.remoteHead(this.baseBranch);
    if (remote === null) {
      throw new PrError('pr_base', `the base branch ${this.baseBranch} does not exist on ${this.url}: push it there first (git push <remote> ${this.baseBranch}) or set git.base_branch`);
    }
    try {
      await this.network.raw(['fetch', '--no-tags', '--no-write-fetch-head', '--', this.configuredUrl, `+refs/heads/${this.baseBranch}:${trackingRef(this.baseBranch)}`]);
    } catch (error) {
      throw this.networkFailure(`fetching ${this.baseBranch} from ${this.url}`, this.redact(messageOf(error)), error);
    }
    return (await this.local.run(this.root, ['rev-parse', '--verify', '--quiet', `${trackingRef(this.baseBranch)}^{commit}`])).trim();
  }


  private networkFailure(what: string, text: string, cause: unknown): PrError {
    if (/authentication failed|could not read username|terminal prompts disabled|\b401\b|\b403\b/i.test(text)) {
      return new PrError('pr_auth', `${what} was refused: the token (DUO_AGENT_GIT_TOKEN) is wrong or cannot push there`, { cause });
    }
    return new PrError('pr_api', `${what} failed: ${firstLine(text, /^(fatal|error):/)}`, { cause });
  }

  private redact(text: string): string {
    let out = text.split(this.configuredUrl).join(this.url);
    for (const secret of this.secrets) out = out.split(secret).join('[redacted]');
    return out;
  }
}

function firstLine(text: string, prefer: RegExp): string {
  const lines = text.split('\n').map((line) => line.trim()).filter((line) => line !== '');
  const line = lines.find((candidate) => prefer.test(candidate)) ?? lines[0] ?? 'no output';
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}
