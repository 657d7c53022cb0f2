import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { InputFileError, SESSION_FILE_CAP, readInputFile } from '../../config/input-file.ts';
import { ModelError } from './model-error.ts';
import type { ModelProvider, ModelReply, ModelRequest } from './provider.ts';

const usageSchema = z
  .object({
    input_tokens: z.number().int().nonnegative(),
    output_tokens: z.number().int().nonnegative(),
    cache_read_input_tokens: z.number().int().nonnegative().default(0),
    cache_creation_input_tokens: z.number().int().nonnegative().default(0),
  })
  .strict();

const callSchema = z
  .object({
    purpose: z.string().min(1),
    task: z.string().optional(),
    model: z.string().min(1),
    reply: z
      .object({
        text: z.string(),
        /** Tools the model called in this turn; the run executes them again when it replays. */
        tool_calls: z.array(z.object({ id: z.string(), name: z.string(), input: z.unknown(), input_error: z.string().optional() }).strict()).optional(),
        /** Set when the recorded reply stopped at its token limit, so the replay is cut off the same way. */
        stop_reason: z.literal('max_tokens').optional(),
      })
      .strict(),
    usage: usageSchema,
    latency_ms: z.number().nonnegative().optional(),
    cost_usd: z.number().nonnegative().optional(),
  })
  .strict();

/** The replay format: what `--record` writes and `npm run demo` plays. */
export const sessionSchema = z
  .object({
    format: z.literal('moderator-session/1'),
    title: z.string().optional(),
    requirements: z.string().min(1),
    /** The git tree (of the base branch) the recording started from; a replay on another tree is refused. */
    start_tree: z.string().regex(/^[0-9a-f]{40}([0-9a-f]{24})?$/, 'a git tree id').optional(),
    project: z.record(z.string(), z.unknown()).optional(),
    calls: z.record(z.string(), z.array(callSchema)),
  })
  .strict();

export type Session = z.output<typeof sessionSchema>;
export type RecordedCall = z.output<typeof callSchema>;

/** Reads and validates a session file; every problem is one line naming the file. */
export function readSession(file: string): Session {
  let raw: unknown;
  try {
    // A regular file of at most 64 MiB: `--replay /dev/zero` must not read until memory runs out.
    raw = JSON.parse(readInputFile(file, SESSION_FILE_CAP));
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : error instanceof InputFileError ? `it ${error.problem}` : (error as Error).message;
    throw new ModelError('model', `replay session ${file}: ${reason}`, { cause: error });
  }
  const parsed = sessionSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? issue.path.join('.') : '(root)';
    throw new ModelError('model', `replay session ${file}: ${where}: ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data;
}

/**
 * Plays a recorded session: the n-th call of an agent for a task gets that agent's n-th recorded
 * reply for the task (calls for no task, such as the plan, likewise), so tasks that run in
 * parallel replay whatever order their calls interleave in. A task the recording does not know
 * (ids renumbered on a target that holds earlier runs) falls back to the agent's n-th call
 * overall, which only holds when tasks ran one at a time. A call the recording does not hold, or
 * holds for another purpose, fails loudly: a replay that silently drifted from its recording
 * would demonstrate nothing.
 */
export class ReplayProvider implements ModelProvider {
  readonly name = 'replay';
  readonly description: string;
  private readonly session: Session;
  private readonly delayMs: number;

  constructor(options: { session: Session; file: string; delayMs?: number }) {
    this.session = options.session;
    this.delayMs = options.delayMs ?? 0;
    this.description = `replay of ${options.file} (recorded model replies, no model is called)`;
  }

  async complete(request: ModelRequest, sequence: number, taskSequence?: number): Promise<ModelReply> {
    const calls = this.session.calls[request.agent] ?? [];
    const task = request.taskId ?? null;
    const forTask = calls.filter((call) => (call.task ?? null) === task);
    const byTask = taskSequence !== undefined && (task === null || forTask.length > 0);
    const recorded = byTask ? forTask[taskSequence] : calls[sequence];
    const wanted = byTask
      ? `${request.agent} call #${taskSequence + 1} for ${task ?? 'no task'} (${request.purpose})`
      : `${request.agent} call #${sequence + 1} (${request.purpose}${request.taskId ? ` ${request.taskId}` : ''})`;
    if (!recorded) {
      const holds = byTask ? `${forTask.length} ${request.agent} calls for ${task ?? 'no task'}` : `${calls.length} ${request.agent} calls`;
      throw new ModelError('replay_mismatch', `the recording has no ${wanted}: it holds ${holds}`);
    }
    // Only the purpose is checked: task ids are renumbered when a target already holds earlier runs.
    if (recorded.purpose !== request.purpose) {
      throw new ModelError(
        'replay_mismatch',
        `the run asked for ${wanted} but the recording holds ${recorded.purpose}${recorded.task ? ` ${recorded.task}` : ''} there`,
      );
    }
    const started = performance.now();
    if (this.delayMs > 0) await sleep(this.delayMs, undefined, { signal: request.signal });
    request.signal?.throwIfAborted();
    return {
      text: recorded.reply.text,
      toolCalls: (recorded.reply.tool_calls ?? []).map((call) => ({ id: call.id, name: call.name, input: call.input, ...(call.input_error ? { inputError: call.input_error } : {}) })),
      stopReason: recorded.reply.stop_reason ?? ((recorded.reply.tool_calls ?? []).length > 0 ? 'tool_use' : 'end'),
      model: recorded.model,
      usage: {
        inputTokens: recorded.usage.input_tokens,
        outputTokens: recorded.usage.output_tokens,
        cacheReadTokens: recorded.usage.cache_read_input_tokens,
        cacheWriteTokens: recorded.usage.cache_creation_input_tokens,
      },
      costUsd: recorded.cost_usd ?? 0,
      latencyMs: Math.round(performance.now() - started),
    };
  }
}
