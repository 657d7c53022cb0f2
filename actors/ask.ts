import type { z } from 'zod';
import { ModelError } from '../services/llm/model-error.ts';
import type { AgentName, ConversationItem, ModelRequest, ToolCall, ToolResult, ToolSpec } from '../services/llm/provider.ts';
import { once } from '../services/effects.ts';
import { parseReply } from './replies.ts';
import type { RunServices } from './run-services.ts';

/** Tools an agent may use in a conversation; `run` never throws, a failure is an error result. */
export interface AgentTools {
  specs: ToolSpec[];
  run(call: ToolCall, signal?: AbortSignal): Promise<ToolResult>;
}

export interface AskOptions<T> {
  agent: AgentName;
  purpose: string;
  taskId?: string;
  /** Deterministic journal key of the call, e.g. `techlead:implement:T2:1`. */
  callKey: string;
  system: string;
  prompt: string;
  schema: z.ZodType<T>;
  settings: { model: string; temperature: number; max_tokens: number; backup_model?: string | undefined };
  signal?: AbortSignal;
  /** With tools, the model may call them for up to `maxTurns` turns before its final answer. */
  tools?: AgentTools;
  maxTurns?: number;
  /** Parse failures of a free-text answer become this value instead of a retry (e.g. claude-cli's summary). */
  lenient?: (text: string) => T;
}

/**
 * One structured exchange with a model: its final answer must parse against `schema`. With tools,
 * each turn's tool calls are run and their results sent back, every turn a journaled call of its
 * own (`<key>`, `<key>:turn2`, ...), so a resumed step replays paid turns from the journal.
 * A malformed answer is sent back once with the validation error; a second one is an error.
 */
export async function ask<T>(services: RunServices, options: AskOptions<T>): Promise<T> {
  const conversation: ConversationItem[] = [{ role: 'user', content: options.prompt }];
  const base: Omit<ModelRequest, 'messages'> = {
    agent: options.agent,
    purpose: options.purpose,
    taskId: options.taskId,
    model: options.settings.model,
    backupModel: options.settings.backup_model,
    system: options.system,
    temperature: options.settings.temperature,
    maxTokens: options.settings.max_tokens,
    tools: options.tools?.specs,
    signal: options.signal,
  };
  const maxTurns = options.tools ? (options.maxTurns ?? 40) : 1;
  const label = `${options.agent} ${options.purpose}${options.taskId ? ` ${options.taskId}` : ''}`;

  const converse = async (key: string, purpose: string): Promise<string> => {
    for (let turn = 1; turn <= maxTurns; turn += 1) {
      const reply = await services.gateway.call(turn === 1 ? key : `${key}:turn${turn}`, { ...base, purpose, messages: [...conversation] });
      const calls = reply.toolCalls ?? [];
      conversation.push({ role: 'assistant', content: reply.text, ...(calls.length > 0 ? { toolCalls: calls } : {}) });
      if (calls.length === 0 || !options.tools) return reply.text;
      const results: ToolResult[] = [];
      const turnKey = turn === 1 ? key : `${key}:turn${turn}`;
      for (const call of calls) {
        const tools = options.tools;
        // Journaled, so a resumed step does not run a tool whose result is already known (edits are not idempotent).
        const result = await once(services.store, services.runId, `tool:${turnKey}:${call.id}`, () => tools.run(call, options.signal));
        results.push(result);
        services.logs.for(options.agent).info({ callKey: key, tool: call.name, isError: result.isError ?? false }, 'tool call');
        services.progress(`    ${options.taskId ?? options.agent}: ${call.name} ${describeInput(call.input)}${result.isError ? ' (refused/failed)' : ''}`);
      }
      conversation.push({ role: 'tool', results });
    }
    throw new ModelError('model', `${label}: no final answer within ${maxTurns} tool turns (agents.techlead.max_tool_turns)`);
  };

  const first = await converse(options.callKey, options.purpose);
  const parsed = parseReply(first, options.schema);
  if (parsed.ok) return parsed.value;
  if (options.lenient) return options.lenient(first);

  services.logs.for(options.agent).warn({ callKey: options.callKey, error: parsed.error }, 'malformed reply; asking once more');
  conversation.push({ role: 'user', content: `Your reply could not be used: ${parsed.error}. Answer again with only the JSON, in the shape asked for.` });
  const second = await converse(`${options.callKey}:retry`, `${options.purpose}-retry`);
  const reparsed = parseReply(second, options.schema);
  if (reparsed.ok) return reparsed.value;
  throw new ModelError('malformed_reply', `${label}: malformed reply twice: ${reparsed.error}`);
}

/** A short, single-line view of a tool's input for progress lines. */
function describeInput(input: unknown): string {
  if (input && typeof input === 'object') {
    const record = input as Record<string, unknown>;
    const main = record.path ?? record.command ?? record.pattern;
    if (typeof main === 'string') return main.length > 80 ? `${main.slice(0, 77)}...` : main;
  }
  return '';
}
