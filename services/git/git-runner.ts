import { GitError as SimpleGitError, simpleGit, type SimpleGit } from 'simple-git';
import { messageOf } from '../../errors.ts';
import { GitError } from './git-error.ts';

export interface GitRunnerOptions {
  identity: { name: string; email: string };
  env: Record<string, string> | undefined;
  runHooks: boolean;
}

/**
 * A git process that exited non-zero; kept apart so exit codes that mean "no" can be read.
 * It extends simple-git's own error class because simple-git replaces any other error a
 * plugin returns with a new one built from its text, losing the exit code.
 */
class GitExit extends SimpleGitError {
  readonly exitCode: number;

  constructor(exitCode: number, output: string) {
    super(undefined, output);
    this.exitCode = exitCode;
  }
}

/** Keys git or simple-git would act on: GIT_DIR, GIT_INDEX_FILE, editors, pagers... */
const UNSAFE_ENV = /^(git_.*|editor|visual|pager|ssh_askpass|prefix)$/i;

function firstUsefulLine(text: string): string {
  const lines = text.split('\n').map((line) => line.trim()).filter((line) => line !== '');
  const line = lines.find((candidate) => /^(fatal|error):/.test(candidate)) ?? lines[0] ?? 'no output';
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

function failure(cwd: string, args: string[], error: unknown): GitError {
  const command = args[0] === 'worktree' ? `worktree ${args[1] ?? ''}` : (args[0] ?? '');
  return new GitError(`git ${command} failed in ${cwd}: ${firstUsefulLine(messageOf(error))}`, { cause: error });
}

/**
 * Runs git through simple-git with Moderator's hermetic settings on every call, whatever the
 * user's global config says. Failures are one-line GitErrors saying what failed where.
 */
export class GitRunner {
  private readonly config: string[];
  private readonly env: Record<string, string> | undefined;
  private readonly clients = new Map<string, SimpleGit>();

  constructor(options: GitRunnerOptions) {
    const { name, email } = options.identity;
    this.env = options.env === undefined
      ? undefined
      : Object.fromEntries(Object.entries(options.env).filter(([key]) => !UNSAFE_ENV.test(key)));
    this.config = [
      `user.name=${name}`,
      `user.email=${email}`,
      // author.* and committer.* (git 2.22+) would beat user.* from the user's global config.
      `author.name=${name}`,
      `author.email=${email}`,
      `committer.name=${name}`,
      `committer.email=${email}`,
      'commit.gpgsign=false',
      'tag.gpgsign=false',
      // Parsed output must not carry colour codes, quoted names or signature blocks.
      'color.ui=false',
      'core.quotepath=false',
      'log.showsignature=false',
      // A recorded resolution must not quietly resolve a conflict nobody reviewed.
      'rerere.enabled=false',
      ...(options.runHooks ? [] : ['core.hooksPath=/dev/null']),
    ];
  }

  /** git's stdout; any non-zero exit throws. */
  async run(cwd: string, args: string[]): Promise<string> {
    try {
      return await this.client(cwd).raw(args);
    } catch (error) {
      throw failure(cwd, args, error);
    }
  }

  /** For commands whose exit code 1 means "no" (`merge-base --is-ancestor`, `check-ref-format`). */
  async test(cwd: string, args: string[]): Promise<boolean> {
    try {
      await this.client(cwd).raw(args);
      return true;
    } catch (error) {
      if (error instanceof GitExit && error.exitCode === 1) return false;
      throw failure(cwd, args, error);
    }
  }

  private client(cwd: string): SimpleGit {
    let client = this.clients.get(cwd);
    if (client !== undefined) return client;
    client = simpleGit({
      baseDir: cwd,
      config: this.config,
      unsafe: { allowUnsafeHooksPath: true },
      // Any non-zero exit is an error (simple-git's default lets one through when stderr is
      // empty, e.g. `commit` with nothing to commit); the exit code is kept.
      errors: (error, result) => {
        if (result.exitCode === 0) return error;
        return new GitExit(result.exitCode, Buffer.concat([...result.stdErr, ...result.stdOut]).toString('utf8'));
      },
    });
    if (this.env !== undefined) client.env(this.env);
    this.clients.set(cwd, client);
    return client;
  }
}
