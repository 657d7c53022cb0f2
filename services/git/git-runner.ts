import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { GitError } from './git-error.ts';

export interface GitRunnerOptions {
  identity: { name: string; email: string };
  /**
   * The whole environment of every git process (git needs PATH and HOME); nothing is inherited.
   * GIT_*, EDITOR, VISUAL, PAGER and SSH_ASKPASS are dropped from it (see UNSAFE_ENV).
   */
  env: Record<string, string>;
  runHooks: boolean;
}

/** Keys git would act on: GIT_DIR, GIT_INDEX_FILE, GIT_EXTERNAL_DIFF, editors, pagers... */
const UNSAFE_ENV = /^(git_.*|editor|visual|pager|ssh_askpass|prefix)$/i;

/**
 * Repository config that makes git start a program, overridden on every call: a command line
 * `-c` is read after the repository's own config (and anything it includes), so it wins.
 * Worktrees share the main repository's `.git/config` (FACTS.md), so without these a command
 * run in a task worktree could plant `core.fsmonitor` and have it run inside Moderator's next
 * `git status` on the host.
 *
 * What no setting here can cover: clean/smudge/process filters (`filter.<driver>.*`) and merge
 * drivers (`merge.<driver>.driver`), chosen by `.gitattributes` and defined in config. They cannot
 * be listed generically (any driver name is valid) nor switched off (a user's own git-lfs filter
 * must keep working). That gap is closed where the config is written, not here: commands run in
 * the sandbox (services/sandbox) see the repository's `.git` read-only, so they cannot define a
 * driver. Diff drivers are switched off per command with `--no-ext-diff --no-textconv`; pagers by
 * `--no-pager` (git also never pages into a pipe).
 */
export const NEUTRAL_GIT_CONFIG: readonly string[] = [
  'core.fsmonitor=false',
  // Plain ssh: a planted core.sshCommand would run on any ssh transport.
  'core.sshCommand=ssh',
  // An empty askPass and credential.helper reset what the repository set (an empty
  // credential.helper clears the list of helpers; GIT_TERMINAL_PROMPT=0 stops the terminal prompt).
  'core.askPass=',
  'credential.helper=',
  // ":" is git's own "no editor": it accepts the message as given.
  'core.editor=:',
  'sequence.editor=:',
  // Signing is off (commit.gpgsign, tag.gpgsign) and merges verify nothing, so no gpg program
  // runs; the programs are pinned anyway in case a command starts verifying.
  'merge.verifySignatures=false',
  'gpg.program=gpg',
  'gpg.ssh.program=ssh-keygen',
  'gpg.x509.program=gpgsm',
  // `ext::<command>` URLs run a command as the transport.
  'protocol.ext.allow=never',
];

/**
 * Large enough for any log or diff Moderator reads whole (the diff is cut afterwards); past it
 * git is killed and the call fails instead of filling memory.
 */
const MAX_OUTPUT_BYTES = 256 * 1024 * 1024;

/** How git ended when it did not exit 0. */
type GitExit =
  | { kind: 'exit'; code: number; output: string }
  | { kind: 'signal'; signal: string; output: string }
  | { kind: 'too-much' }
  | { kind: 'not-started'; errno: string; message: string };

function firstUsefulLine(text: string): string {
  const lines = text.split('\n').map((line) => line.trim()).filter((line) => line !== '');
  const line = lines.find((candidate) => /^(fatal|error):/.test(candidate)) ?? lines[0] ?? 'no output';
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

function failure(cwd: string, args: string[], exit: GitExit): GitError {
  const command = args[0] === 'worktree' ? `worktree ${args[1] ?? ''}` : (args[0] ?? '');
  let why: string;
  switch (exit.kind) {
    case 'exit':
      why = firstUsefulLine(exit.output);
      break;
    case 'signal':
      why = `killed by ${exit.signal}${exit.output.trim() === '' ? '' : `: ${firstUsefulLine(exit.output)}`}`;
      break;
    case 'too-much':
      why = `it printed more than ${MAX_OUTPUT_BYTES / 1024 / 1024} MiB; stopped`;
      break;
    case 'not-started':
      // spawn reports a missing cwd as ENOENT too.
      why = exit.errno !== 'ENOENT' ? exit.message : existsSync(cwd) ? 'git was not found on PATH: install git' : 'the folder does not exist';
      break;
  }
  // git names a full disk in a later line than the one shown ("unable to write file x" first):
  // said in the message, so the run halts resumable instead of failing the task (isStorageFull).
  const full = exit.kind === 'exit' && /no space left on device|out of diskspace/i.test(exit.output) && !/no space left on device|out of diskspace/i.test(why);
  return new GitError(`git ${command} failed in ${cwd}: ${why}${full ? ' (no space left on device)' : ''}`, { cause: exit });
}

/**
 * Runs git with `execFile` (no shell) and Moderator's hermetic settings on every call, whatever
 * the user's global config or the repository's config says. Failures are one-line GitErrors
 * saying what failed where.
 *
 * Not through simple-git: its `spawn.after` plugin sleeps 50 ms after every command that prints
 * nothing, whatever its `completion` option says (FACTS.md). Most of Moderator's git calls print
 * nothing (`add`, `commit --quiet`, `update-ref`, `worktree prune`), so that was 77 sleeps and
 * 3.85 s of a 15 s demo; `git add -A` costs 4-6 ms through execFile and 55-62 ms through it.
 */
export class GitRunner {
  private readonly prefix: string[];
  private readonly env: Record<string, string>;

  constructor(options: GitRunnerOptions) {
    const { name, email } = options.identity;
    this.env = Object.fromEntries(Object.entries(options.env).filter(([key]) => !UNSAFE_ENV.test(key)));
    // Never wait for a person: no credential prompt on a terminal.
    this.env.GIT_TERMINAL_PROMPT = '0';
    const config = [
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
      ...NEUTRAL_GIT_CONFIG,
      ...(options.runHooks ? [] : ['core.hooksPath=/dev/null']),
    ];
    this.prefix = ['--no-pager', ...config.flatMap((setting) => ['-c', setting])];
  }

  /** git's stdout; any non-zero exit throws. */
  async run(cwd: string, args: string[]): Promise<string> {
    const result = await this.exec(cwd, args);
    if (typeof result !== 'string') throw failure(cwd, args, result);
    return result;
  }

  /** For commands whose exit code 1 means "no" (`merge-base --is-ancestor`, `check-ref-format`). */
  async test(cwd: string, args: string[]): Promise<boolean> {
    const result = await this.exec(cwd, args);
    if (typeof result === 'string') return true;
    if (result.kind === 'exit' && result.code === 1) return false;
    throw failure(cwd, args, result);
  }

  /**
   * For commands whose exit code carries an answer beyond yes and no (`merge-tree --write-tree`
   * exits 1 on conflicts and still prints what it found): the code and stdout of any exit; only
   * a git that did not run to an exit (not found, killed, too much output) throws.
   */
  async runForExit(cwd: string, args: string[]): Promise<{ code: number; stdout: string }> {
    return new Promise((resolve, reject) => {
      execFile('git', [...this.prefix, ...args], { cwd, env: this.env, encoding: 'utf8', maxBuffer: MAX_OUTPUT_BYTES, windowsHide: true }, (error, stdout, stderr) => {
        if (error === null) resolve({ code: 0, stdout });
        else if (typeof error.code === 'number') resolve({ code: error.code, stdout });
        else reject(failure(cwd, args, error.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER' ? { kind: 'too-much' } : typeof error.code === 'string' ? { kind: 'not-started', errno: error.code, message: error.message } : { kind: 'signal', signal: error.signal ?? 'a signal', output: `${stderr}\n${stdout}` }));
      });
    });
  }

  /** stdout when git exited 0; how it ended otherwise. Never rejects. */
  private exec(cwd: string, args: string[]): Promise<string | GitExit> {
    return new Promise((resolve) => {
      execFile('git', [...this.prefix, ...args], { cwd, env: this.env, encoding: 'utf8', maxBuffer: MAX_OUTPUT_BYTES, windowsHide: true }, (error, stdout, stderr) => {
        if (error === null) resolve(stdout);
        // execFile's error holds the exit code as a number, an errno string when git never started.
        else if (typeof error.code === 'number') resolve({ kind: 'exit', code: error.code, output: `${stderr}\n${stdout}` });
        else if (error.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER') resolve({ kind: 'too-much' });
        else if (typeof error.code === 'string') resolve({ kind: 'not-started', errno: error.code, message: error.message });
        else resolve({ kind: 'signal', signal: error.signal ?? 'a signal', output: `${stderr}\n${stdout}` });
      });
    });
  }
}
