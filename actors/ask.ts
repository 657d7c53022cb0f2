import type { z } from 'zod';
import { ModelError } from '../services/llm/model-error.ts';
import type { AgentName, ChatMessage } from '../services/llm/provider.ts';
import { parseReply } from './replies.ts';
import type { RunServices } from './run-services.ts';

export interface AskOptions<T> {
  agent: AgentName;
  purpose: string;
  taskId?: string;
  /** Deterministic journal key of the call, e.g. `techlead:implement:T2:1`. */
  callKey: string;
  system: string;
  prompt: string;
  schema: z.ZodType<T>;
  settings: { model: string; temperature: number; max_tokens: number };
  signal?: AbortSignal;
}

/**
 * One structured model call: the reply must parse against `schema`. A malformed reply is sent
 * back once with the validation error; a second malformed reply is an error, never a crash.
 */
export async function ask<T>(services: RunServices, options: AskOptions<T>): Promise<T> {
  const messages: ChatMessage[] = [{ role: 'user', content: options.prompt }];
  const request = {
    agent: options.agent,
    purpose: options.purpose,
    taskId: options.taskId,
    model: options.settings.model,
    system: options.system,
    temperature: options.settings.temperature,
    maxTokens: options.settings.max_tokens,
    signal: options.signal,
  };
  const first = await services.gateway.call(options.callKey, { ...request, messages });
  const parsed = parseReply(first.text, options.schema);
  if (parsed.ok) return parsed.value;

  services.logs.for(options.agent).warn({ callKey: options.callKey, error: parsed.error }, 'malformed reply; asking once more');
  const retryMessages: ChatMessage[] = [
    ...messages,
    { role: 'assistant', content: first.text },
    { role: 'user', content: `Your reply could not be used: ${parsed.error}. Answer again with only the JSON, in the shape asked for.` },
  ];
  const second = await services.gateway.call(`${options.callKey}:retry`, { ...request, purpose: `${options.purpose}-retry`, messages: retryMessages });
  const reparsed = parseReply(second.text, options.schema);
  if (reparsed.ok) return reparsed.value;
  throw new ModelError('malformed_reply', `${options.agent} ${options.purpose}${options.taskId ? ` ${options.taskId}` : ''}: malformed reply twice: ${reparsed.error}`);
}
