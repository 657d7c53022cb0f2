import { existsSync, statSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parse, type ParseEntry } from 'shell-quote';
import { UsageError } from '../errors.ts';
import { runProcessGroup } from './process-group.ts';
import { UNSANDBOXED, findProgram, type CommandSandbox } from './sandbox/sandbox.ts';

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
  /**
   * Where the command runs: default UNSANDBOXED (on the host). Sandboxed, only `cwd` is
   * writable (see services/sandbox).
   */
  sandbox?: CommandSandbox | undefined;
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

/**
 * A command line Moderator will not run: it needs a shell to mean what it says, or cannot be
 * split. `problem` completes a sentence about the command ("uses \"&&\", which needs a shell"),
 * so each caller names the command its own way without parsing this message.
 */
export class CommandLineError extends UsageError {
  readonly command: string;
  readonly problem: string;
  /** The problem is shell syntax: the fix is a script that does it, named as the command. */
  readonly needsShell: boolean;

  constructor(command: string, problem: string, needsShell: boolean) {
    super(describeCommandLineProblem('the test command', command, problem, needsShell));
    this.command = command;
    this.problem = problem;
    this.needsShell = needsShell;
  }

  /** The same refusal said of `what` ("the command", "the setup command"). */
  describe(what: string): string {
    return describeCommandLineProblem(what, this.command, this.problem, this.needsShell);
  }
}

function describeCommandLineProblem(what: string, command: string, problem: string, needsShell: boolean): string {
  const hint = needsShell ? '; Moderator runs the command without one: put it in a script (e.g. an npm script) and name that' : '';
  return `${what} ${JSON.stringify(command)} ${problem}${hint}`;
}

/** Marks what shell-quote would expand (`$NAME`, `${...}`, a lone `$`) in the words it returns. */
const EXPANSION = '\u0000';
const LONE_DOLLAR = `${EXPANSION}${EXPANSION}`;
const REDIRECTION = /[<>]/;
const VARIABLES_HINT = 'pass variables through the env setting: project.pass_env';

/**
 * Checks what shell-quote does not (quotes left open, a trailing backslash, backticks and line
 * breaks outside quotes, which it would take as literal text or as a space between words) and
 * returns the command with a "#" inside a word and double-quoted `$` escaped for it: inside double quotes
 * Moderator takes them literally, as it always did (there is no shell to expand them, and
 * `node -e "...${x}..."` means what its author wrote), where shell-quote would expand `$`.
 */
function literalDoubleQuotes(command: string, refuse: (problem: string, needsShell: boolean) => never): string {
  let out = '';
  let quote: "'" | '"' | null = null;
  for (let index = 0; index < command.length; index += 1) {
    const char = command[index] ?? '';
    const next = command[index + 1] ?? '';
    if (quote === "'") {
      if (char === "'") quote = null;
    } else if (char === '\\') {
      if (index + 1 >= command.length) refuse('ends with a backslash', false);
      // shell-quote keeps the backslash of \` inside double quotes, where a shell drops it.
      out += quote === '"' && next === '`' ? '`' : `${char}${next}`;
      index += 1;
      continue;
    } else if (quote === '"') {
      if (char === '"') quote = null;
      else if (char === '$') {
        out += '\\$';
        continue;
      }
    } else if (char === "'" || char === '"') {
      quote = char;
    } else if (char === '#' && index > 0 && !/\s/.test(command[index - 1] ?? '')) {
      // Only a "#" that starts a word starts a comment; shell-quote takes any.
      out += '\\#';
      continue;
    } else if (char === '`') {
      refuse('uses a backtick command substitution, which needs a shell', true);
    } else if (char === '\n' || char === '\r') {
      refuse('uses a line break (a second command), which needs a shell', true);
    }
    out += char;
  }
  if (quote !== null) refuse(`has an unterminated ${quote === '"' ? 'double' : 'single'} quote`, false);
  return out;
}

/**
 * Splits a command line into argv with shell-quote, the way a POSIX shell splits plain words
 * (quotes, backslash escapes). Anything outside quotes that would need a shell to mean what it
 * says (pipes, `&&`, `;`, redirections, `$(...)`, `$VAR`, backticks, subshells, comments, a
 * leading `VAR=value`) is refused with a CommandLineError instead of being passed on literally to
 * do something else. Quoted text and glob patterns reach the program as written.
 */
export function splitCommand(command: string): string[] {
  const refuse = (problem: string, needsShell: boolean): never => {
    throw new CommandLineError(command, problem, needsShell);
  };
  const shellSyntax = (what: string): never => refuse(`uses ${what}, which needs a shell`, true);
  if (command.includes(EXPANSION)) refuse('contains a NUL character', false);
  const literal = literalDoubleQuotes(command, refuse);
  let entries: ParseEntry[];
  try {
    entries = parse(literal, (name) => `${EXPANSION}${name}${EXPANSION}`);
  } catch {
    // shell-quote throws on a malformed `${...}`.
    return shellSyntax(`a variable expansion (${VARIABLES_HINT})`);
  }
  const argv: string[] = [];
  for (const [index, entry] of entries.entries()) {
    if (typeof entry === 'string') {
      const next = entries[index + 1];
      const opensParenthesis = typeof next === 'object' && 'op' in next && next.op === '(';
      if (entry.includes(`${LONE_DOLLAR}(`) || (entry.endsWith(LONE_DOLLAR) && opensParenthesis)) shellSyntax('"$(...)"');
      // A `$` that starts no name is literal in a shell too.
      const word = entry.split(LONE_DOLLAR).join('$');
      if (word.includes(EXPANSION)) shellSyntax(`a variable expansion (${VARIABLES_HINT})`);
      argv.push(word);
    } else if ('comment' in entry) {
      shellSyntax('a "#" comment');
    } else if (entry.op === 'glob') {
      argv.push(entry.pattern);
    } else if (REDIRECTION.test(entry.op)) {
      shellSyntax(`the redirection "${entry.op}"`);
    } else {
      shellSyntax(`"${entry.op}"`);
    }
  }
  const [program] = argv;
  if (program === undefined) return refuse('is empty', false);
  if (/^[A-Za-z_][A-Za-z0-9_]*=/.test(program)) shellSyntax(`a leading VAR=value assignment (${VARIABLES_HINT})`);
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

/**
 * Runs the target's test command without a shell and reports how it went. A command that
 * cannot start (not found, not executable, missing cwd) is a failed run with the reason in
 * `output`, not an exception: for the agent it is a test result like any other. A command
 * line that needs a shell is a configuration error and throws a CommandLineError.
 */
export async function runTestCommand(options: TestCommandOptions): Promise<TestCommandResult> {
  const [file, ...args] = splitCommand(options.command) as [string, ...string[]];
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
  const notStarted = (reason: string): TestCommandResult => finish({ exitCode: null, signal: null, timedOut: false, aborted: false }, reason);

  if (options.signal?.aborted) return finish({ exitCode: null, signal: null, timedOut: false, aborted: true }, '[aborted before start]');
  // spawn reports a missing cwd as ENOENT too, which would read as "command not found".
  if (!existsSync(options.cwd) || !statSync(options.cwd).isDirectory()) return notStarted(`working directory does not exist: ${options.cwd}`);
  const sandbox = options.sandbox ?? UNSANDBOXED;
  // In the sandbox bwrap starts the program, and would report a missing one as its own failure.
  if (sandbox.confined && findProgram(file, options.env.PATH, options.cwd) === undefined) return notStarted(`command not found: ${file}`);

  const command = sandbox.wrap({ file, args, cwd: options.cwd, env: options.env }, options.cwd);
  const run = await runProcessGroup({
    ...command,
    timeoutMs: options.timeoutMs,
    signal: options.signal,
    onStdout: (chunk) => tail.push(chunk),
    onStderr: (chunk) => tail.push(chunk),
  }).done;
  if (run.startError !== undefined) {
    const error = run.startError;
    return notStarted(error.code === 'ENOENT' ? `command not found: ${file}`
      : error.code === 'EACCES' ? `permission denied: ${file} is not executable`
        : `cannot run ${file}: ${error.message}`);
  }
  const note = run.timedOut ? `[timed out after ${options.timeoutMs} ms; process group killed]`
    : run.aborted ? '[aborted; process group killed]' : undefined;
  return finish({ exitCode: run.code, signal: run.signal, timedOut: run.timedOut, aborted: run.aborted }, note);
}
