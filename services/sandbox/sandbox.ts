import { execFile } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, realpathSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** A program and its argv, where it runs and with what environment. */
export interface Command {
  file: string;
  args: string[];
  cwd: string;
  env: Record<string, string>;
}

/**
 * How the target's commands (the TechLead's run_command, the test and setup commands) are
 * confined. `wrap` turns a command into the one to spawn; only `writable` may be written to.
 */
export interface CommandSandbox {
  /** Whether commands are confined at all. */
  readonly confined: boolean;
  /** One line for the person watching the run. */
  readonly description: string;
  wrap(command: Command, writable: string): Command;
}

/** Commands run as they are, on the host: the worktree path checks and the env allow-list only. */
export const UNSANDBOXED: CommandSandbox = {
  confined: false,
  description: 'commands are NOT sandboxed: they can write anywhere this user can, use the network, and leave processes behind',
  wrap: (command) => command,
};

export type SandboxMode = 'auto' | 'bwrap' | 'off';

export interface BwrapOptions {
  /** The bwrap executable. */
  bwrap: string;
  /** Keep the host's network (agents.techlead.allow_network); otherwise only a private loopback. */
  network: boolean;
}

/** HOME inside the sandbox: in its private /tmp, so tools that write caches or config can. */
const SANDBOX_HOME = '/tmp/home';

/**
 * The git folders of a worktree, to be mounted read-only over the writable worktree: its `.git`
 * (a folder, or the file of a linked worktree), and for a linked worktree its admin folder and the
 * repository's common folder (config, hooks, refs). A command can then plant no config that
 * Moderator's own git calls would run, no hook, and cannot move the branch.
 */
function gitPathsOf(worktree: string): string[] {
  const dotGit = path.join(worktree, '.git');
  const entry = statSync(dotGit, { throwIfNoEntry: false });
  if (entry === undefined) return [];
  if (entry.isDirectory()) return [dotGit];
  const paths = [dotGit];
  try {
    const admin = path.resolve(worktree, /^gitdir: (.+)$/m.exec(readFileSync(dotGit, 'utf8'))?.[1]?.trim() ?? '');
    const common = path.resolve(admin, readFileSync(path.join(admin, 'commondir'), 'utf8').trim());
    for (const folder of [common, admin]) if (statSync(folder, { throwIfNoEntry: false })?.isDirectory()) paths.push(realpathSync(folder));
  } catch {
    // No readable admin folder: git itself cannot use this worktree; the `.git` file stays read-only.
  }
  return paths;
}

/**
 * The bwrap argv that runs `command` with `writable` as the only writable place of the host's file
 * system (FACTS.md: measured with bubblewrap 0.8 here):
 * - the whole file system read-only, a private /tmp (HOME in it) and a minimal /dev and /proc;
 * - `writable` bound read-write over that, and its git folders bound read-only again;
 * - its own PID namespace, so when the command ends (or bwrap is killed on a timeout) every
 *   process it started goes too, a `setsid` daemon included; `--die-with-parent` if Moderator dies;
 * - no network (a private loopback only) unless `network`.
 * No `--new-session`: the command is spawned as a new session already (a detached process group),
 * so it has no controlling terminal to inject input into.
 */
export function bwrapArgs(options: BwrapOptions, command: Command, writable: string): string[] {
  const root = realpathSync(writable);
  const args = ['--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc', '--tmpfs', '/tmp', '--dir', SANDBOX_HOME, '--bind', root, root];
  for (const folder of gitPathsOf(root)) args.push('--ro-bind', folder, folder);
  args.push('--unshare-pid', '--unshare-ipc', '--die-with-parent');
  if (!options.network) args.push('--unshare-net');
  args.push('--chdir', command.cwd, '--', command.file, ...command.args);
  return args;
}

/** Commands confined by bubblewrap (see bwrapArgs). */
export class BwrapSandbox implements CommandSandbox {
  readonly confined = true;
  readonly description: string;
  private readonly options: BwrapOptions;

  constructor(options: BwrapOptions) {
    this.options = options;
    this.description = `commands run in a bubblewrap sandbox: the task's worktree writable, the rest of the file system read-only (the repository's .git included), a private /tmp and HOME, ${options.network ? 'the network allowed (agents.techlead.allow_network)' : 'no network'}, every process killed when the command ends`;
  }

  wrap(command: Command, writable: string): Command {
    const env: Record<string, string> = { ...command.env, HOME: SANDBOX_HOME };
    // The host's TMPDIR is read-only in here; the private /tmp is not.
    if (env.TMPDIR !== undefined) env.TMPDIR = '/tmp';
    return { file: this.options.bwrap, args: bwrapArgs(this.options, command, writable), cwd: command.cwd, env };
  }
}

/**
 * An executable named `name` on `searchPath` (a PATH value), or `name` itself when it is a path;
 * undefined when there is none.
 */
export function findProgram(name: string, searchPath: string | undefined, cwd: string): string | undefined {
  const executable = (file: string): boolean => {
    try {
      accessSync(file, constants.X_OK);
      return statSync(file).isFile();
    } catch {
      return false;
    }
  };
  if (name.includes('/')) {
    const file = path.resolve(cwd, name);
    return executable(file) ? file : undefined;
  }
  for (const dir of (searchPath ?? '').split(path.delimiter)) {
    if (dir === '') continue;
    const file = path.join(dir, name);
    if (executable(file)) return file;
  }
  return undefined;
}

export type ProbeResult = { ok: true } | { ok: false; reason: string };

const probes = new Map<string, Promise<ProbeResult>>();

/**
 * Whether bwrap can make this sandbox here (user namespaces may be off, or bwrap may be missing):
 * it runs `bwrap --version` inside one, with the same options, once per process and options.
 */
export function probeBwrap(options: BwrapOptions): Promise<ProbeResult> {
  const key = `${options.bwrap}\0${options.network}`;
  let probe = probes.get(key);
  if (probe === undefined) {
    probe = runProbe(options);
    probes.set(key, probe);
  }
  return probe;
}

function runProbe(options: BwrapOptions): Promise<ProbeResult> {
  if (findProgram(options.bwrap, undefined, '/') === undefined) return Promise.resolve({ ok: false, reason: `${options.bwrap} is not installed` });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'moderator-sandbox-probe-'));
  const args = bwrapArgs(options, { file: options.bwrap, args: ['--version'], cwd: dir, env: {} }, dir);
  return new Promise<ProbeResult>((resolve) => {
    execFile(options.bwrap, args, { env: { PATH: '/usr/bin:/bin' }, timeout: 10_000 }, (error, _stdout, stderr) => {
      rmSync(dir, { recursive: true, force: true });
      if (error === null) resolve({ ok: true });
      else resolve({ ok: false, reason: `${options.bwrap} cannot make a sandbox here: ${stderr.trim().split('\n')[0] || error.message}` });
    });
  });
}

export interface ResolvedSandbox {
  sandbox: CommandSandbox;
  /** Set when the run must be refused: `bwrap` was asked for and cannot work here. */
  refusal?: string;
}

/**
 * The sandbox for a run's commands: `bwrap` when asked for or (`auto`) when it works here, none
 * for `off` or when `auto` finds it unusable. `description` says which, to be printed once.
 * bwrap is looked up on `path` (the commands' PATH), then at /usr/bin/bwrap.
 */
export async function resolveSandbox(mode: SandboxMode, options: { network: boolean; path: string | undefined; bwrap?: string }): Promise<ResolvedSandbox> {
  const bwrap = options.bwrap ?? findProgram('bwrap', options.path, '/') ?? '/usr/bin/bwrap';
  const bwrapOptions: BwrapOptions = { bwrap, network: options.network };
  if (mode === 'off') {
    return { sandbox: { ...UNSANDBOXED, description: `${UNSANDBOXED.description} (agents.techlead.sandbox: off)` } };
  }
  const probe = await probeBwrap(bwrapOptions);
  if (probe.ok) return { sandbox: new BwrapSandbox(bwrapOptions) };
  if (mode === 'bwrap') {
    return {
      sandbox: UNSANDBOXED,
      refusal: `agents.techlead.sandbox is bwrap, but ${probe.reason}: install bubblewrap (apt-get install bubblewrap) and allow user namespaces, or set agents.techlead.sandbox: auto or off`,
    };
  }
  return { sandbox: { ...UNSANDBOXED, description: `${UNSANDBOXED.description}: ${probe.reason} (install bubblewrap, or set agents.techlead.sandbox: off to say you mean it)` } };
}
