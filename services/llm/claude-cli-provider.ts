import { statSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import { runProcessGroup } from '../process-group.ts';
import { messageOf } from '../../errors.ts';
import { ModelError } from './model-error.ts';
import type { ConversationItem, ModelProvider, ModelReply, ModelRequest } from './provider.ts';

export interface ClaudeCliOptions {
  /**
   * The folder each request runs in: the task's worktree for the TechLead. ModelRequest has no
   * cwd because the other backends need none; the composition root maps `taskId` to a worktree.
   */
  cwdFor: (request: ModelRequest) => string;
  /** The `claude` program: a name looked up on the env's PATH, or a path. Default `claude`. */
  executable?: string;
  /** Wall-clock limit of one headless run, in ms; the CLI's whole process group is killed then. */
  timeoutMs: number;
  /** `--max-turns`: the CLI's own agent turns (tool uses) per request. */
  maxTurns: number;
  /** The whole environment of the CLI (PATH, HOME, its API key or login): nothing is inherited. */
  env: Record<string, string>;
  /** `--permission-mode`, e.g. `acceptEdits` so it may edit files in its cwd without asking. */
  permissionMode?: string;
  /** `--allowedTools`, e.g. `['Read', 'Edit', 'Bash(npm test:*)']`. */
  allowedTools?: string[];
}

/** Between SIGTERM and SIGKILL, for the CLI to stop its own children. */
const KILL_GRACE_MS = 2_000;
/** Linux refuses one argv string over 128 KiB (MAX_ARG_STRLEN); longer prompts go on stdin. */
const MAX_ARG_BYTES = 100_000;
/** A result object is a few KiB; anything near this is not one. */
const MAX_STDOUT_BYTES = 16 * 1024 * 1024;

/** The one JSON object `claude -p --output-format json` prints when it ends (FACTS.md). */
const resultSchema = z.looseObject({
  type: z.literal('result'),
  subtype: z.string(),
  is_error: z.boolean(),
  result: z.string().optional(),
  duration_ms: z.number().optional(),
  num_turns: z.number().optional(),
  session_id: z.string().optional(),
  total_cost_usd: z.number().nonnegative().optional(),
  cost_usd: z.number().nonnegative().optional(),
  usage: z
    .looseObject({
      input_tokens: z.number().int().nonnegative().default(0),
      output_tokens: z.number().int().nonnegative().default(0),
      cache_read_input_tokens: z.number().int().nonnegative().default(0),
      cache_creation_input_tokens: z.number().int().nonnegative().default(0),
    })
    .optional(),
});

export type ClaudeCliResult = z.output<typeof resultSchema>;

function firstLine(text: string): string | undefined {
  const line = text.split('\n').map((candidate) => candidate.trim()).find((candidate) => candidate !== '');
  return line === undefined ? undefined : line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

/**
 * The conversation as one prompt: the CLI takes a single prompt per headless run. Every turn is
 * labelled, which also keeps the prompt from starting with "-" and reading as a flag.
 */
export function flattenConversation(messages: ConversationItem[]): string {
  return messages
    .map((item) => {
      if (item.role === 'user') return `User:\n${item.content}`;
      if (item.role === 'assistant') {
        const calls = (item.toolCalls ?? []).map((call) => `\n[called ${call.name} ${JSON.stringify(call.input)}]`).join('');
        return `Assistant:\n${item.content}${calls}`;
      }
      return `Tool results:\n${item.results.map((result) => `[${result.isError ? 'error' : 'result'} ${result.id}]\n${result.content}`).join('\n')}`;
    })
    .join('\n\n');
}

interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  aborted: boolean;
  tooMuch: boolean;
}

/** Runs the CLI without a shell, as the leader of its own process group so a timeout kills all of it. */
/** The claude executable could not be started; `reason` says why without the provider's prefix. */
class CliNotStarted extends ModelError {
  constructor(readonly reason: string, cause: unknown) {
    super('model', `claude-cli: ${reason}`, { cause });
  }
}

async function runCli(file: string, args: string[], options: { cwd: string; env: Record<string, string>; timeoutMs: number; stdin?: string | undefined; signal?: AbortSignal | undefined }): Promise<Finished> {
  const out: Buffer[] = [];
  let outBytes = 0;
  let stderr = '';
  let tooMuch = false;
  const run = runProcessGroup({
    file,
    args,
    cwd: options.cwd,
    env: options.env,
    timeoutMs: options.timeoutMs,
    signal: options.signal,
    stdin: options.stdin,
    killGraceMs: KILL_GRACE_MS,
    onStdout: (chunk) => {
      outBytes += chunk.length;
      if (outBytes > MAX_STDOUT_BYTES) {
        if (!tooMuch) run.stop();
        tooMuch = true;
        return;
      }
      out.push(chunk);
    },
    onStderr: (chunk) => {
      if (stderr.length < 16_384) stderr += chunk.toString('utf8');
    },
  });
  const finished = await run.done;
  const error = finished.startError;
  if (error !== undefined) {
    const reason = error.code === 'ENOENT' ? `${file} was not found: install Claude Code or set its path`
      : error.code === 'EACCES' ? `${file} is not executable` : error.message;
    throw new CliNotStarted(reason, error);
  }
  return { code: finished.code, stdout: Buffer.concat(out).toString('utf8'), stderr, timedOut: finished.timedOut, aborted: finished.aborted, tooMuch };
}

/** The result object in the CLI's stdout: the whole of it, or its last line (after any noise). */
function parseResult(stdout: string): ClaudeCliResult | undefined {
  const candidates = [stdout.trim(), stdout.trim().split('\n').pop() ?? ''];
  for (const candidate of candidates) {
    let raw: unknown;
    try {
      raw = JSON.parse(candidate);
    } catch {
      continue;
    }
    const parsed = resultSchema.safeParse(raw);
    if (parsed.success) return parsed.data;
  }
  return undefined;
}

/**
 * The Claude Code CLI, headless, as a model backend. Each request is one `claude -p` run in the
 * folder `cwdFor` names, so the CLI reads and edits that worktree itself with its own tools and
 * agent loop (bounded by `maxTurns`): `request.tools` are not forwarded, and the reply never asks
 * for tool calls. `temperature` and `maxTokens` have no CLI flag and are not applied.
 */
export class ClaudeCliProvider implements ModelProvider {
  readonly name = 'claude-cli';
  readonly description: string;
  private readonly options: ClaudeCliOptions;
  private readonly executable: string;

  constructor(options: ClaudeCliOptions) {
    if (!Number.isInteger(options.maxTurns) || options.maxTurns < 1) throw new RangeError(`claude-cli: maxTurns must be a positive integer, found ${options.maxTurns}`);
    this.options = options;
    this.executable = options.executable ?? 'claude';
    this.description = `Claude Code CLI (${this.executable}) headless in the task's worktree, at most ${options.maxTurns} turns a call`;
  }

  /** The argv of one run; the prompt is last, or on stdin when it is too long for an argument. */
  argsFor(request: ModelRequest, prompt: string): { args: string[]; stdin: string | undefined } {
    const viaStdin = Buffer.byteLength(prompt, 'utf8') > MAX_ARG_BYTES;
    const args = ['-p', ...(viaStdin ? [] : [prompt]), '--output-format', 'json', '--max-turns', String(this.options.maxTurns)];
    if (request.system !== '') args.push('--append-system-prompt', request.system);
    if (request.model !== '') args.push('--model', request.model);
    if (this.options.permissionMode !== undefined) args.push('--permission-mode', this.options.permissionMode);
    // One comma-separated value, last: the flag is variadic and would swallow what follows it.
    if (this.options.allowedTools !== undefined && this.options.allowedTools.length > 0) args.push('--allowedTools', this.options.allowedTools.join(','));
    return { args, stdin: viaStdin ? prompt : undefined };
  }

  async complete(request: ModelRequest): Promise<ModelReply> {
    const cwd = this.options.cwdFor(request);
    const where = `${request.agent} ${request.purpose}${request.taskId ? ` (${request.taskId})` : ''}`;
    // spawn reports a missing cwd as ENOENT, which would read as "claude is not installed".
    if (!statSync(cwd, { throwIfNoEntry: false })?.isDirectory()) throw new ModelError('model', `claude-cli ${where}: the working folder ${cwd} does not exist`);
    if (request.messages.length === 0) throw new ModelError('model', `claude-cli ${where}: the request has no messages`);
    if (Buffer.byteLength(request.system, 'utf8') > MAX_ARG_BYTES) throw new ModelError('model', `claude-cli ${where}: the system prompt is over ${MAX_ARG_BYTES} bytes, too long for a command-line argument`);
    const { args, stdin } = this.argsFor(request, flattenConversation(request.messages));
    const started = performance.now();
    const run = await runCli(this.executable, args, { cwd, env: this.options.env, timeoutMs: this.options.timeoutMs, stdin, signal: request.signal });
    const latencyMs = Math.round(performance.now() - started);

    if (run.aborted) throw new ModelError('model', `claude-cli ${where}: aborted; process group killed`);
    if (run.timedOut) throw new ModelError('model', `claude-cli ${where}: timed out after ${this.options.timeoutMs} ms in ${cwd}; process group killed`, { retryable: true });
    if (run.tooMuch) throw new ModelError('malformed_reply', `claude-cli ${where}: printed more than ${MAX_STDOUT_BYTES} bytes; stopped`);
    const result = parseResult(run.stdout);
    if (result === undefined) {
      const why = run.code !== 0 ? `exited with ${run.code === null ? 'a signal' : `status ${run.code}`}: ${firstLine(run.stderr) ?? firstLine(run.stdout) ?? 'no output'}`
        : `printed no JSON result: ${firstLine(run.stdout) ?? firstLine(run.stderr) ?? 'no output'}`;
      throw new ModelError(run.code !== 0 ? 'model' : 'malformed_reply', `claude-cli ${where}: ${why}`);
    }
    if (result.is_error || result.subtype !== 'success') {
      const detail = firstLine(result.result ?? '') ?? firstLine(run.stderr);
      // The cause keeps the parsed object: a failed run may still have been paid for.
      throw new ModelError('model', `claude-cli ${where}: ${result.subtype}${result.num_turns !== undefined ? ` after ${result.num_turns} turns` : ''}${detail ? `: ${detail}` : ''}`, { cause: result });
    }
    const modelUsage = result.modelUsage;
    const answeredBy = modelUsage !== null && typeof modelUsage === 'object' ? Object.keys(modelUsage)[0] : undefined;
    return {
      text: result.result ?? '',
      model: answeredBy ?? request.model,
      usage: {
        inputTokens: result.usage?.input_tokens ?? 0,
        outputTokens: result.usage?.output_tokens ?? 0,
        cacheReadTokens: result.usage?.cache_read_input_tokens ?? 0,
        cacheWriteTokens: result.usage?.cache_creation_input_tokens ?? 0,
      },
      costUsd: result.total_cost_usd ?? result.cost_usd ?? 0,
      latencyMs,
      toolCalls: [],
      stopReason: 'end',
    };
  }
}

export type InstallCheck = { ok: true; version: string } | { ok: false; message: string };

/** For `doctor`: runs `<executable> --version`; never throws. */
export async function checkInstalled(executable: string, env: Record<string, string>, timeoutMs = 10_000): Promise<InstallCheck> {
  try {
    const run = await runCli(executable, ['--version'], { cwd: process.cwd(), env, timeoutMs });
    if (run.timedOut) return { ok: false, message: `${executable} --version did not answer within ${timeoutMs} ms` };
    const version = firstLine(run.stdout);
    if (run.code !== 0 || version === undefined) return { ok: false, message: `${executable} --version failed: ${firstLine(run.stderr) ?? `exit status ${run.code}`}` };
    return { ok: true, version };
  } catch (error) {
    return { ok: false, message: error instanceof CliNotStarted ? error.reason : messageOf(error) };
  }
}
