import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { UsageError } from '../errors.ts';

export interface TestCommandOptions {
  /** The target's test command, e.g. `npm test -- --reporter=dot`. Split into argv, never given to a shell. */
  command: string;
  cwd: string;
  /** The whole environment of the command: nothing is inherited from this process. */
  env: Record<string, string>;
  /** Wall-clock limit in ms; the command's whole process group is killed when it is reached. */
  timeoutMs: number;
  /** How much of the output's end is kept, in bytes (default 64 KiB). */
  outputCapBytes?: number;
  signal?: AbortSignal;
}

export interface TestCommandResult {
  /** Exit code 0, within the time limit, not aborted. */
  passed: boolean;
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  /** The run was stopped through `signal` (DESIGN, checkpoint rule 8). */
  aborted: boolean;
  durationMs: number;
  /** The end of stdout and stderr interleaved as they arrived, with a marker when cut. */
  output: string;
}

const DEFAULT_CAP = 64 * 1024;
/** Between SIGTERM and SIGKILL: time for a test runner to print its summary and clean up. */
const KILL_GRACE_MS = 2_000;
/** After the command exits, how long its output pipes may stay open (held by a daemon it started). */
const CLOSE_GRACE_MS = 2_000;

/**
 * Splits a command line into argv like a POSIX shell would for plain words: whitespace
 * separates, single quotes are literal, double quotes allow `\"`, `\\`, `\$` and `` \` ``, and a
 * backslash outside quotes escapes the next character. Anything that would need a shell to mean
 * what it says (pipes, `&&`, `;`, redirections, `$(...)`, `$VAR`, backticks, subshells,
 * comments, leading `VAR=value`) is refused with a UsageError instead of being passed on
 * literally to do something else.
 */
export function splitCommand(command: string): string[] {
  const argv: string[] = [];
  let word = '';
  let inWord = false;
  let quotedWord = false;
  const refuse = (what: string): never => {
    throw new UsageError(`the test command ${JSON.stringify(command)} uses ${what}, which needs a shell; Moderator runs the command without one: put it in a script (e.g. an npm script) and name that`);
  };
  for (let index = 0; index < command.length; index += 1) {
    const char = command[index] ?? '';
    const next = command[index + 1] ?? '';
    if (char === "'") {
      const end = command.indexOf("'", index + 1);
      if (end < 0) throw new UsageError(`the test command ${JSON.stringify(command)} has an unterminated single quote`);
      word += command.slice(index + 1, end);
      inWord = true;
      quotedWord = true;
      index = end;
    } else if (char === '"') {
      let end = index + 1;
      for (; end < command.length && command[end] !== '"'; end += 1) {
        const inner = command[end] ?? '';
        const after = command[end + 1] ?? '';
        if (inner === '\\' && ['"', '\\', '$', '`'].includes(after)) {
          word += after;
          end += 1;
        } else {
          word += inner;
        }
      }
      if (end >= command.length) throw new UsageError(`the test command ${JSON.stringify(command)} has an unterminated double quote`);
      inWord = true;
      quotedWord = true;
      index = end;
    } else if (char === '\\') {
      if (index + 1 >= command.length) throw new UsageError(`the test command ${JSON.stringify(command)} ends with a backslash`);
      word += next;
      inWord = true;
      quotedWord = true;
      index += 1;
    } else if (/\s/.test(char)) {
      if (char === '\n' || char === '\r') refuse('a line break (a second command)');
      if (inWord) {
        argv.push(word);
        word = '';
        inWord = false;
        quotedWord = false;
      }
    } else if (char === '|' || char === '&' || char === ';') {
      refuse(`"${char === next ? char + next : char}"`);
    } else if (char === '<' || char === '>') {
      refuse(`the redirection "${char}"`);
    } else if (char === '`') {
      refuse('a backtick command substitution');
    } else if (char === '$' && (next === '(' || next === '{' || /[A-Za-z_0-9?!#@*$-]/.test(next))) {
      refuse(next === '(' ? '"$(...)"' : 'a variable expansion (pass variables through the env setting)');
    } else if (char === '(' || char === ')') {
      refuse(`"${char}"`);
    } else if (char === '#' && !inWord) {
      refuse('a "#" comment');
    } else {
      if (!inWord && argv.length === 0 && !quotedWord && /^[A-Za-z_][A-Za-z0-9_]*=/.test(command.slice(index))) {
        refuse('a leading VAR=value assignment (pass variables through the env setting)');
      }
      word += char;
      inWord = true;
    }
  }
  if (inWord) argv.push(word);
  if (argv.length === 0) throw new UsageError('the test command is empty');
  return argv;
}

/** Keeps the last `cap` bytes of a stream of chunks and counts what was dropped. */
class TailBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  dropped = 0;

  constructor(private readonly cap: number) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size > this.cap && this.chunks.length > 0) {
      const first = this.chunks[0] as Buffer;
      const excess = this.size - this.cap;
      if (first.length <= excess) {
        this.chunks.shift();
        this.size -= first.length;
        this.dropped += first.length;
      } else {
        this.chunks[0] = first.subarray(excess);
        this.size -= excess;
        this.dropped += excess;
      }
    }
  }

  text(): string {
    let bytes = Buffer.concat(this.chunks);
    let dropped = this.dropped;
    if (dropped > 0) {
      // The cut may fall inside a multi-byte character: drop its continuation bytes.
      let start = 0;
      while (start < bytes.length && start < 3 && ((bytes[start] ?? 0) & 0xc0) === 0x80) start += 1;
      bytes = bytes.subarray(start);
      dropped += start;
      return `[… ${dropped} bytes truncated]\n${bytes.toString('utf8')}`;
    }
    return bytes.toString('utf8');
  }
}

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    // Negative pid: the whole process group (the child was spawned detached, as its leader),
    // so `npm test` -> node -> workers all go, not just npm.
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the group is already gone.
  }
}

/**
 * Runs the target's test command without a shell and reports how it went. A command that
 * cannot start (not found, not executable, missing cwd) is a failed run with the reason in
 * `output`, not an exception: for the agent it is a test result like any other. A command
 * line that needs a shell is a configuration error and throws a UsageError.
 */
export async function runTestCommand(options: TestCommandOptions): Promise<TestCommandResult> {
  const argv = splitCommand(options.command);
  const [file, ...args] = argv as [string, ...string[]];
  const tail = new TailBuffer(Math.max(0, options.outputCapBytes ?? DEFAULT_CAP));
  const started = performance.now();
  const finish = (partial: Pick<TestCommandResult, 'exitCode' | 'signal' | 'timedOut' | 'aborted'>, note?: string): TestCommandResult => {
    if (note !== undefined) tail.push(Buffer.from(`${note}\n`));
    return {
      ...partial,
      passed: partial.exitCode === 0 && !partial.timedOut && !partial.aborted,
      durationMs: Math.round(performance.now() - started),
      output: tail.text(),
    };
  };

  if (options.signal?.aborted) return finish({ exitCode: null, signal: null, timedOut: false, aborted: true }, '[aborted before start]');
  // spawn reports a missing cwd as ENOENT too, which would read as "command not found".
  if (!existsSync(options.cwd) || !statSync(options.cwd).isDirectory()) {
    return finish({ exitCode: null, signal: null, timedOut: false, aborted: false }, `working directory does not exist: ${options.cwd}`);
  }

  return new Promise<TestCommandResult>((resolve) => {
    let timedOut = false;
    let aborted = false;
    let settled = false;
    let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
    const timers: NodeJS.Timeout[] = [];

    const child = spawn(file, args, {
      cwd: options.cwd,
      env: options.env,
      shell: false,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      windowsHide: true,
    });

    const settle = (result: TestCommandResult): void => {
      if (settled) return;
      settled = true;
      for (const timer of timers) clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      resolve(result);
    };

    const stop = (): void => {
      killGroup(child.pid, 'SIGTERM');
      timers.push(setTimeout(() => killGroup(child.pid, 'SIGKILL'), KILL_GRACE_MS));
    };
    const onAbort = (): void => {
      if (exit !== null) return;
      aborted = true;
      stop();
    };

    child.stdout.on('data', (chunk: Buffer) => tail.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => tail.push(chunk));

    child.on('error', (error: NodeJS.ErrnoException) => {
      const reason = error.code === 'ENOENT' ? `command not found: ${file}`
        : error.code === 'EACCES' ? `permission denied: ${file} is not executable`
          : `cannot run ${file}: ${error.message}`;
      settle(finish({ exitCode: null, signal: null, timedOut: false, aborted: false }, reason));
    });

    child.on('exit', (code, signal) => {
      exit = { code, signal };
      // Whatever the command left running in its group (a server it forgot to stop) goes
      // with it; and if something outside the group still holds the pipes, stop waiting.
      killGroup(child.pid, 'SIGKILL');
      timers.push(setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        settle(finishExit());
      }, CLOSE_GRACE_MS));
    });

    const finishExit = (): TestCommandResult => {
      const note = timedOut ? `[timed out after ${options.timeoutMs} ms; process group killed]`
        : aborted ? '[aborted; process group killed]' : undefined;
      return finish({ exitCode: exit?.code ?? null, signal: exit?.signal ?? null, timedOut, aborted }, note);
    };

    child.on('close', () => {
      if (exit !== null) settle(finishExit());
    });

    timers.push(setTimeout(() => {
      if (exit !== null) return;
      timedOut = true;
      stop();
    }, Math.max(0, options.timeoutMs)));
    options.signal?.addEventListener('abort', onAbort, { once: true });
  });
}
