import { spawn } from 'node:child_process';
import { z } from 'zod';
import { NEUTRAL_GIT_CONFIG } from '../git/git-runner.ts';
import { capText, defineTool, type ToolContext } from './define-tool.ts';
import { ToolError } from './tool-error.ts';

/** Variables that would point git elsewhere (GIT_DIR, GIT_INDEX_FILE...) or start a program. */
const UNSAFE_GIT_ENV = /^(git_.*|editor|visual|pager|ssh_askpass|prefix)$/i;
/**
 * Settings from the user's or the repository's config that would change what is read or run.
 * These git processes run on the host, outside the sandbox: repository config that starts a
 * program is overridden as in Moderator's own git calls.
 */
const GIT_CONFIG = ['color.ui=false', 'core.quotepath=false', 'grep.fullName=true', ...NEUTRAL_GIT_CONFIG];
/** One matching line is cut to this many characters: a minified file is one huge line. */
const MAX_MATCH_LINE = 300;
const MAX_MATCHES = 500;

interface GitOutput {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stdout reached the byte limit and git was stopped there. */
  truncated: boolean;
  timedOut: boolean;
}

/**
 * git without a shell, in the worktree, with the caller's environment minus what would redirect
 * it. Keeps the first `maxBytes` of stdout and stops git there: a search that matches
 * everything must not fill memory.
 */
function runGit(context: ToolContext, args: string[], maxBytes: number): Promise<GitOutput> {
  const env = Object.fromEntries(Object.entries(context.env).filter(([key]) => !UNSAFE_GIT_ENV.test(key)));
  env.GIT_TERMINAL_PROMPT = '0';
  // A diff or grep must not take the index lock a concurrent git command of the agent needs.
  env.GIT_OPTIONAL_LOCKS = '0';
  const config = GIT_CONFIG.flatMap((setting) => ['-c', setting]);
  return new Promise((resolve, reject) => {
    const child = spawn('git', ['--no-pager', ...config, ...args], { cwd: context.paths.root, env, shell: false, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let outBytes = 0;
    let stderr = '';
    let truncated = false;
    let timedOut = false;
    const stop = (): void => {
      child.kill('SIGKILL');
    };
    const timer = setTimeout(() => {
      timedOut = true;
      stop();
    }, context.commandTimeoutMs);
    context.signal?.addEventListener('abort', stop, { once: true });
    child.stdout.on('data', (chunk: Buffer) => {
      if (truncated) return;
      const room = maxBytes - outBytes;
      if (chunk.length >= room) {
        out.push(chunk.subarray(0, room));
        outBytes = maxBytes;
        truncated = true;
        stop();
      } else {
        out.push(chunk);
        outBytes += chunk.length;
      }
    });
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < 4096) stderr += chunk.toString('utf8');
    });
    child.on('error', (error) => {
      clearTimeout(timer);
      context.signal?.removeEventListener('abort', stop);
      reject(new ToolError(`cannot run git: ${error.message}`, { cause: error }));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      context.signal?.removeEventListener('abort', stop);
      resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr, truncated, timedOut });
    });
  });
}

function firstLine(text: string): string {
  return text.split('\n').map((line) => line.trim()).find((line) => line !== '') ?? 'no output';
}

function gitFailure(what: string, output: GitOutput, context: ToolContext): ToolError {
  if (output.timedOut) return new ToolError(`${what} timed out after ${context.commandTimeoutMs} ms`);
  if (context.signal?.aborted) return new ToolError(`${what} was aborted`);
  return new ToolError(`${what} failed: ${firstLine(output.stderr)}`);
}

export const searchTool = defineTool({
  name: 'search',
  description: 'Search the text files of the worktree (tracked and untracked, not ignored ones, not node_modules) for a pattern. Results are "file:line: text". The pattern is literal unless regex is true; then it is a POSIX extended regular expression as in grep -E.',
  input: z.strictObject({
    pattern: z.string().min(1).describe('What to look for'),
    path: z.string().optional().describe('A file or folder to search in, relative to the worktree root (default: everything)'),
    regex: z.boolean().optional().describe('Treat pattern as an extended regular expression (default false: literal text)'),
  }),
  async run(input, context) {
    const where = await context.paths.resolve(input.path, { allowRoot: true });
    const relative = context.paths.display(where);
    // git grep rather than a walk here: no regex can hang this process (the worst is a killed
    // git), binaries and ignored files are skipped the way the project itself defines them.
    const args = [
      'grep', '-z', '-n', '-I', '--untracked', '--no-color', input.regex ? '-E' : '-F', '-e', input.pattern, '--',
      `:(literal)${relative}`, ':(exclude,glob)**/node_modules/**',
    ];
    const output = await runGit(context, args, Math.max(context.outputCapBytes * 4, 64 * 1024));
    if (output.code === 1 && output.stdout === '' && !output.timedOut) return `no match for ${JSON.stringify(input.pattern)} in ${relative}`;
    if (output.code !== 0 && !output.truncated) throw gitFailure('search', output, context);
    const records = output.stdout.split('\n').filter((record) => record !== '');
    // A record cut by the byte limit is incomplete.
    if (output.truncated) records.pop();
    const lines: string[] = [];
    for (const record of records.slice(0, MAX_MATCHES)) {
      const [file = '', line = '', ...text] = record.split('\0');
      const joined = text.join('\0');
      lines.push(`${file}:${line}: ${joined.length > MAX_MATCH_LINE ? `${joined.slice(0, MAX_MATCH_LINE)}…` : joined}`);
    }
    if (records.length > MAX_MATCHES || output.truncated) lines.push(`[… more matches not shown; narrow the pattern or the path]`);
    return capText(lines.join('\n'), context.outputCapBytes, 'narrow the pattern or the path');
  },
});

export const gitDiffTool = defineTool({
  name: 'git_diff',
  description: 'Show what this task changed: the worktree (committed and uncommitted changes to tracked files) against the base branch, and the untracked files. With staged: true, only what is staged, against HEAD.',
  input: z.strictObject({
    staged: z.boolean().optional().describe('Show only the staged changes, against HEAD (default false)'),
  }),
  async run(input, context) {
    const cap = context.outputCapBytes;
    const diffArgs = ['diff', '--no-color', '--no-ext-diff', '--no-textconv', '--src-prefix=a/', '--dst-prefix=b/'];
    if (input.staged) {
      const output = await runGit(context, [...diffArgs, '--cached', 'HEAD', '--'], cap + 1);
      if (output.code !== 0 && !output.truncated) throw gitFailure('git diff --cached', output, context);
      return capText(output.stdout === '' ? '[nothing staged]' : output.stdout, cap, 'the diff is cut');
    }
    const base = await mergeBase(context);
    const output = await runGit(context, [...diffArgs, base.sha, '--'], cap + 1);
    if (output.code !== 0 && !output.truncated) throw gitFailure('git diff', output, context);
    const untracked = await runGit(context, ['ls-files', '--others', '--exclude-standard', '-z'], 64 * 1024);
    const newFiles = untracked.code === 0 ? untracked.stdout.split('\0').filter((file) => file !== '') : [];
    const header = `diff of the worktree against ${base.label}`;
    const body = output.stdout === '' ? '[no changes to tracked files]' : output.stdout;
    const footer = newFiles.length === 0 ? '' : `\nuntracked files (not in the diff above): ${newFiles.join(', ')}`;
    // The untracked list goes first when the diff is long, so the cap cannot hide it.
    return capText(`${header}${footer}\n${body}`, cap, 'the diff is cut; read the files instead');
  },
});

/** Where this task's branch left the base branch; HEAD when the base cannot be found. */
async function mergeBase(context: ToolContext): Promise<{ sha: string; label: string }> {
  for (const ref of [`refs/heads/${context.baseBranch}`, `refs/remotes/origin/${context.baseBranch}`]) {
    const output = await runGit(context, ['merge-base', ref, 'HEAD'], 1024);
    const sha = output.stdout.trim();
    if (output.code === 0 && /^[0-9a-f]{40,64}$/.test(sha)) return { sha, label: `${context.baseBranch} (merge base ${sha.slice(0, 10)})` };
  }
  const head = await runGit(context, ['rev-parse', '--verify', 'HEAD'], 1024);
  if (head.code !== 0) throw gitFailure('git rev-parse HEAD', head, context);
  return { sha: head.stdout.trim(), label: `HEAD (the base branch ${context.baseBranch} was not found)` };
}
