/**
 * Counts the git processes a run starts, by wrapping GitRunner's `run`, `test` and `runForExit`:
 * the one runner all of Moderator's git calls go through. Installed once per process, before the
 * run composes its GitService (the prototype is patched, so every instance counts).
 */
import { GitRunner } from '../services/git/git-runner.ts';

/** One git call: its command (`worktree add`, `rev-parse`...), the whole argument list, and how long it took. */
export interface GitCall {
  command: string;
  args: readonly string[];
  ms: number;
  /**
   * Of that, the part this process was blocked starting git: the call's synchronous part, which is
   * libuv's fork and exec of the child (it grows with this process's memory).
   */
  spawnMs: number;
}

export interface GitCalls {
  /** Calls by command, in all. */
  readonly byCommand: Map<string, number>;
  /** Every call, in all. */
  calls(): number;
  /** Time the run waited for git, in all (calls rarely overlap with one task at a time). */
  ms(): number;
  /** Called after every call (a benchmark that splits the calls by task). */
  onCall: ((call: GitCall) => void) | undefined;
}

export function commandOf(args: readonly string[]): string {
  return args[0] === 'worktree' ? `worktree ${args[1] ?? ''}` : (args[0] ?? '');
}

export function countGitCalls(): GitCalls {
  const byCommand = new Map<string, number>();
  let total = 0;
  let ms = 0;
  const counter: GitCalls = { byCommand, calls: () => total, ms: () => ms, onCall: undefined };
  async function counted<T>(args: string[], call: () => Promise<T>): Promise<T> {
    const command = commandOf(args);
    byCommand.set(command, (byCommand.get(command) ?? 0) + 1);
    total += 1;
    const started = performance.now();
    let spawnMs = 0;
    try {
      const running = call();
      spawnMs = performance.now() - started;
      return await running;
    } finally {
      const took = performance.now() - started;
      ms += took;
      counter.onCall?.({ command, args, ms: took, spawnMs });
    }
  }
  const { run, test, runForExit } = GitRunner.prototype;
  GitRunner.prototype.run = function (this: GitRunner, cwd: string, args: string[]) {
    return counted(args, () => run.call(this, cwd, args));
  };
  GitRunner.prototype.test = function (this: GitRunner, cwd: string, args: string[]) {
    return counted(args, () => test.call(this, cwd, args));
  };
  GitRunner.prototype.runForExit = function (this: GitRunner, cwd: string, args: string[]) {
    return counted(args, () => runForExit.call(this, cwd, args));
  };
  return counter;
}
