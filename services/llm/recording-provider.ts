import fs from 'node:fs';
import path from 'node:path';
import type { ModelProvider, ModelReply, ModelRequest } from './provider.ts';
import type { CountableRequest, PromptCount } from './token-count.ts';

/** One recorded call, as the replay format stores it (`reply.tool_calls` only when the model called tools). */
export interface RecordingCall {
  purpose: string;
  task?: string;
  model: string;
  reply: { text: string; tool_calls?: { id: string; name: string; input: unknown; input_error?: string }[]; stop_reason?: 'max_tokens' };
  usage: { input_tokens: number; output_tokens: number; cache_read_input_tokens: number; cache_creation_input_tokens: number };
  latency_ms: number;
  cost_usd: number;
}

/** What `--record` writes: the replay format (`moderator-session/1`, see replay.ts). */
export interface RecordingSession {
  format: 'moderator-session/1';
  title?: string;
  requirements: string;
  /** The git tree of the base branch the run started from: a replay is refused on any other. */
  start_tree?: string;
  project?: Record<string, unknown>;
  calls: Record<string, RecordingCall[]>;
}

export interface RecordingOptions {
  inner: ModelProvider;
  file: string;
  requirements: string;
  startTree?: string | undefined;
  title?: string | undefined;
  project?: Record<string, unknown> | undefined;
  /**
   * A session recorded earlier by the same run, to continue: a resumed run gets the replies it
   * already paid for from its journal, so they never pass through here again.
   */
  existing?: { calls: Record<string, unknown[]> } | undefined;
}

/**
 * Wraps a provider and records every successful call into a replay session file. The file is
 * rewritten whole after each call (temp file, fsync, rename), so it is always a complete session:
 * a crash or kill loses at most the call that was in flight.
 */
export class RecordingProvider implements ModelProvider {
  readonly name: string;
  readonly description: string;
  private readonly inner: ModelProvider;
  private readonly file: string;
  private readonly session: RecordingSession;

  constructor(options: RecordingOptions) {
    this.inner = options.inner;
    this.file = options.file;
    this.name = options.inner.name;
    this.description = `${options.inner.description}, recording to ${options.file}`;
    this.session = {
      format: 'moderator-session/1',
      ...(options.title ? { title: options.title } : {}),
      requirements: options.requirements,
      ...(options.startTree ? { start_tree: options.startTree } : {}),
      ...(options.project ? { project: options.project } : {}),
      calls: structuredClone((options.existing?.calls ?? {}) as Record<string, RecordingCall[]>),
    };
  }

  /** The session recorded so far (a copy). */
  recorded(): RecordingSession {
    return structuredClone(this.session);
  }

  /** The recorded provider's own count: recording must not turn a counted prompt into an estimate. */
  async countTokens(request: CountableRequest): Promise<PromptCount | undefined> {
    return this.inner.countTokens?.(request);
  }

  async complete(request: ModelRequest, sequence: number, taskSequence?: number): Promise<ModelReply> {
    const reply = await this.inner.complete(request, sequence, taskSequence);
    const call: RecordingCall = {
      purpose: request.purpose,
      ...(request.taskId ? { task: request.taskId } : {}),
      model: reply.model,
      reply: {
        text: reply.text,
        ...(reply.toolCalls?.length
          ? { tool_calls: reply.toolCalls.map((toolCall) => ({ id: toolCall.id, name: toolCall.name, input: toolCall.input, ...(toolCall.inputError ? { input_error: toolCall.inputError } : {}) })) }
          : {}),
        ...(reply.stopReason === 'max_tokens' ? { stop_reason: 'max_tokens' as const } : {}),
      },
      usage: {
        input_tokens: reply.usage.inputTokens,
        output_tokens: reply.usage.outputTokens,
        cache_read_input_tokens: reply.usage.cacheReadTokens,
        cache_creation_input_tokens: reply.usage.cacheWriteTokens,
      },
      latency_ms: reply.latencyMs,
      cost_usd: reply.costUsd,
    };
    (this.session.calls[request.agent] ??= []).push(call);
    writeAtomically(this.file, `${JSON.stringify(this.session, null, 2)}\n`);
    return reply;
  }
}

/** Replaces `file` with `text` so a reader sees the old file or the new one, never a torn one. */
export function writeAtomically(file: string, text: string): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const temp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(temp, 'w');
  try {
    fs.writeFileSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temp, file);
}
