import { spawn } from 'node:child_process';

export interface ProcessGroupOptions {
  file: string;
  args: string[];
  cwd: string;
  /** The whole environment of the program: nothing is inherited from this process. */
  env: Record<string, string>;
  /** Wall-clock limit in ms; then the whole group gets SIGTERM, and SIGKILL `killGraceMs` later. */
  timeoutMs: number;
  signal?: AbortSignal | undefined;
  /** Written to the program's stdin, which is then closed; without it stdin is /dev/null. */
  stdin?: string | undefined;
  onStdout: (chunk: Buffer) => void;
  onStderr: (chunk: Buffer) => void;
  /** Between SIGTERM and SIGKILL: time to print a summary and clean up (default 2 s). */
  killGraceMs?: number;
  /** After the program exits, how long its output pipes may stay open, held by a daemon it started outside its group (default 2 s). */
  closeGraceMs?: number;
}

export interface ProcessGroupResult {
  /** Set when the program never started: ENOENT (not found, or the cwd is missing), EACCES, ... */
  startError: NodeJS.ErrnoException | undefined;
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  /** Stopped through `signal` (DESIGN, checkpoint rule 8), or aborted before it started. */
  aborted: boolean;
}

export interface ProcessGroup {
  /** Stops the group early (SIGTERM, then SIGKILL), for a caller that has seen enough. */
  stop(): void;
  /** Settles once the program is gone and its pipes are closed (or given up on); never rejects. */
  readonly done: Promise<ProcessGroupResult>;
}

const DEFAULT_KILL_GRACE_MS = 2_000;
const DEFAULT_CLOSE_GRACE_MS = 2_000;

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
 * Runs a program without a shell as the leader of its own process group, and supervises it: a
 * timeout or an abort stops the whole group (SIGTERM, then SIGKILL), whatever is left in the
 * group when the program exits is killed with it, and output pipes a daemon outside the group
 * keeps open do not hold the caller for longer than `closeGraceMs`. The one place the test
 * runner and the claude CLI provider start programs.
 */
export function runProcessGroup(options: ProcessGroupOptions): ProcessGroup {
  const killGraceMs = options.killGraceMs ?? DEFAULT_KILL_GRACE_MS;
  const closeGraceMs = options.closeGraceMs ?? DEFAULT_CLOSE_GRACE_MS;
  if (options.signal?.aborted) {
    return { stop: () => {}, done: Promise.resolve({ startError: undefined, code: null, signal: null, timedOut: false, aborted: true }) };
  }
  const child = spawn(options.file, options.args, {
    cwd: options.cwd,
    env: options.env,
    shell: false,
    detached: true,
    stdio: [options.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    windowsHide: true,
  });
  const { stdout, stderr } = child;
  // Both are pipes as configured above; the typings cannot tell with a conditional stdin.
  if (stdout === null || stderr === null) throw new TypeError('spawn gave no stdout or stderr pipe');
  let timedOut = false;
  let aborted = false;
  let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  const timers: NodeJS.Timeout[] = [];
  let settle: (result: ProcessGroupResult) => void = () => {};
  const done = new Promise<ProcessGroupResult>((resolve) => {
    let settled = false;
    settle = (result) => {
      if (settled) return;
      settled = true;
      for (const timer of timers) clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      resolve(result);
    };
  });
  const finished = (): ProcessGroupResult => ({ startError: undefined, code: exit?.code ?? null, signal: exit?.signal ?? null, timedOut, aborted });

  const stop = (): void => {
    if (exit !== null) return;
    killGroup(child.pid, 'SIGTERM');
    timers.push(setTimeout(() => killGroup(child.pid, 'SIGKILL'), killGraceMs));
  };
  function onAbort(): void {
    if (exit !== null) return;
    aborted = true;
    stop();
  }

  stdout.on('data', options.onStdout);
  stderr.on('data', options.onStderr);
  child.on('error', (error: NodeJS.ErrnoException) => {
    // A start failure has no pid; anything later is reported by exit and close.
    if (child.pid === undefined) settle({ startError: error, code: null, signal: null, timedOut: false, aborted: false });
  });
  child.on('exit', (code, signal) => {
    exit = { code, signal };
    // Whatever the program left running in its group (a server it forgot to stop) goes with
    // it; and if something outside the group still holds the pipes, stop waiting for them.
    killGroup(child.pid, 'SIGKILL');
    timers.push(setTimeout(() => {
      stdout.destroy();
      stderr.destroy();
      settle(finished());
    }, closeGraceMs));
  });
  child.on('close', () => {
    if (exit !== null) settle(finished());
  });
  if (options.stdin !== undefined && child.stdin) {
    child.stdin.on('error', () => {
      // EPIPE: the program exited without reading; its exit status says why.
    });
    child.stdin.end(options.stdin);
  }
  timers.push(setTimeout(() => {
    if (exit !== null) return;
    timedOut = true;
    stop();
  }, Math.max(0, options.timeoutMs)));
  options.signal?.addEventListener('abort', onAbort, { once: true });
  return { stop, done };
}
