import { ModelError } from '../services/llm/model-error.ts';
import type { AgentName, ModelReply, ModelRequest, ToolCall, ToolResult, ToolSpec } from '../services/llm/provider.ts';
import { once } from '../services/effects.ts';
import { parseReply } from './reply-parser.ts';
import type { ReplyKind } from './replies.ts';
import type { RunServices } from './run-services.ts';
import { toolCallsInText } from './text-tool-calls.ts';
import { callKeys, stepKeys, type CallKey } from '../protocol/keys.ts';
import { AGENTS, agentOfCaller } from '../protocol/agents.ts';

/** Tools an agent may use in a conversation; `run` never throws, a failure is an error result. */
export interface AgentTools {
  specs: ToolSpec[];
  run(call: ToolCall, signal?: AbortSignal): Promise<ToolResult>;
}

export interface AskOptions<T> {
  agent: AgentName;
  purpose: string;
  taskId?: string;
  /** Deterministic journal key of the call (protocol/keys.ts). */
  callKey: CallKey;
  system: string;
  prompt: string;
  /** What the answer must be: its schema, and the structured-output form of it. */
  reply: ReplyKind<T>;
  settings: { model: string; temperature: number; max_tokens: number; backup_model?: string | undefined };
  signal?: AbortSignal;
  /** With tools, the model may call them for up to `maxTurns` turns before its final answer. */
  tools?: AgentTools;
  maxTurns?: number;
  /** Re-asks after a reply that cannot be used; default `model.reply_retries`. */
  replyRetries?: number;
  /** Parse failures of a free-text answer become this value instead of a retry (e.g. claude-cli's summary). */
  lenient?: (text: string) => T;
}

/** How much of an unusable reply goes back into the conversation for the re-ask: enough to see the slip, not a wall of text. */
const ECHO_LIMIT = 4_000;

/** Runs whose model was told once that the server writes tool calls as text. */
const warnedTextToolCalls = new WeakSet<RunServices>();

function reAskText(problems: string[], truncated: boolean): string {
  const intro = truncated ? 'Your reply was cut off before it ended, so it could not be used.' : 'Your reply could not be used:';
  return `${intro}\n${problems.map((problem) => `- ${problem}`).join('\n')}\nAnswer again with only the JSON object, in the shape asked for, fixing every point above.`;
}

function capped(text: string): string {
  return text.length <= ECHO_LIMIT ? text : `${text.slice(0, ECHO_LIMIT)}\n[... ${text.length - ECHO_LIMIT} more characters of this reply left out]`;
}

/**
 * One structured exchange with a model: its final answer must parse against the reply's schema.
 * The answer is asked for as structured output where the backend has it, and repaired and
 * normalised either way (actors/reply-parser.ts). An answer that still does not fit is sent back
 * with every problem listed, up to `model.reply_retries` times; then it is a `malformed_reply` error.
 *
 * With tools, each turn's tool calls are run and their results sent back, every turn a journaled
 * call of its own (`<key>`, `<key>:turn2`, ...), so a resumed step replays paid turns from the
 * journal. Tool calls a server left in the text (no native tool calling) are parsed and run too.
 *
 * Every turn is counted before it is sent and kept within `limits.max_context_tokens` by the
 * context manager's window (services/context/window.ts): old tool results summarised at 70%, the
 * conversation pruned at 85%, the step stopped with `context_full` at 95%, each decision journaled
 * per turn so a resumed step rebuilds the same conversation.
 */
export async function ask<T>(services: RunServices, options: AskOptions<T>): Promise<T> {
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
    responseFormat: { name: options.reply.name, schema: options.reply.wire },
    signal: options.signal,
  };
  const maxTurns = options.tools ? (options.maxTurns ?? 40) : 1;
  const retries = options.replyRetries ?? services.config.model.reply_retries;
  const label = `${options.agent} ${options.purpose}${options.taskId ? ` ${options.taskId}` : ''}`;
  const setting = `agents.${AGENTS[agentOfCaller(options.agent)].configKey}.max_tokens`;
  const log = services.logs.for(options.agent);
  // The conversation, kept within limits.max_context_tokens: counted before every turn, summarised
  // and pruned past 70% and 85%, stopped at 95%; what was done is journaled per turn.
  const conversation = services.context.window({
    store: services.store,
    runId: services.runId,
    label,
    count: (messages) => services.gateway.count({ ...base, messages }),
    onAlert: (line) => services.progress(`  ${line}`),
  }, options.prompt);

  const runTools = async (turnKey: CallKey, calls: ToolCall[], cutOff: boolean): Promise<ToolResult[]> => {
    const results: ToolResult[] = [];
    for (const call of calls) {
      const result = await once(services.store, services.runId, stepKeys.tool(turnKey, call.id), async () => {
        // A call whose arguments were cut off at the token limit would be "repaired" into a
        // truncated edit: it is refused, like arguments that are not JSON at all.
        if (cutOff) return { id: call.id, content: `your ${call.name} call was cut off at the token limit (${options.settings.max_tokens} tokens, ${setting}): make smaller edits`, isError: true };
        if (call.inputError) return { id: call.id, content: call.inputError, isError: true };
        const tools = options.tools as AgentTools;
        const ran = await tools.run(call, options.signal);
        // Cut short by a stop or a signal: not an outcome, so not journaled; a resume runs it again.
        options.signal?.throwIfAborted();
        return ran;
      });
      results.push(result);
      log.info({ callKey: turnKey, tool: call.name, isError: result.isError ?? false }, 'tool call');
      services.progress(`    ${options.taskId ?? options.agent}: ${call.name} ${describeInput(call.input)}${result.isError ? ' (refused/failed)' : ''}`);
    }
    return results;
  };

  const converse = async (key: CallKey, purpose: string): Promise<ModelReply> => {
    for (let turn = 1; turn <= maxTurns; turn += 1) {
      const turnKey = callKeys.turn(key, turn);
      const fitted = await conversation.fit(turnKey);
      const reply = await services.gateway.call(turnKey, { ...base, purpose, messages: fitted.items }, { zone: fitted.zone });
      const cutOff = reply.stopReason === 'max_tokens';
      const native = reply.toolCalls ?? [];
      const written = native.length === 0 && options.tools ? toolCallsInText(reply.text, options.tools.specs.map((spec) => spec.name)) : [];
      if (native.length > 0 && options.tools) {
        conversation.push({ role: 'assistant', content: reply.text, toolCalls: native });
        conversation.push({ role: 'tool', results: await runTools(turnKey, native, cutOff) });
      } else if (written.length > 0) {
        if (!warnedTextToolCalls.has(services)) {
          warnedTextToolCalls.add(services);
          services.progress(`warning: the model server writes tool calls as text instead of sending them as tool calls; Moderator reads them from the text (enable tool-call parsing on the server, e.g. llama-server --jinja)`);
        }
        // The server has no tool-call turns to put results in: they go back as the user's words.
        conversation.push({ role: 'assistant', content: reply.text });
        const results = await runTools(turnKey, written, cutOff);
        conversation.push({ role: 'user', content: textToolResults(written, results) }, true);
      } else {
        conversation.push({ role: 'assistant', content: reply.text });
        return reply;
      }
    }
    throw new ModelError('model', `${label}: no final answer within ${maxTurns} tool turns (agents.techlead.max_tool_turns)`);
  };

  for (let round = 0; ; round += 1) {
    const reply = await converse(callKeys.reAsk(options.callKey, round), round === 0 ? options.purpose : `${options.purpose}-retry`);
    const truncated = reply.stopReason === 'max_tokens';
    const parsed = parseReply(reply.text, options.reply.schema, truncated ? { truncated: { maxTokens: options.settings.max_tokens, setting } } : {});
    if (parsed.ok) return parsed.value;
    if (options.lenient) return options.lenient(reply.text);
    if (round >= retries) {
      throw new ModelError('malformed_reply', `${label}: no usable reply after ${round + 1} tr${round === 0 ? 'y' : 'ies'}: ${parsed.error}`);
    }
    log.warn({ callKey: options.callKey, round, problems: parsed.problems }, 'unusable reply; asking again');
    services.progress(`  ${label}: reply unusable (${parsed.problems.length === 1 ? parsed.error : `${parsed.problems.length} problems`}); asking again`);
    const last = conversation.last();
    if (last?.role === 'assistant') last.content = capped(last.content) || '(empty reply)';
    conversation.push({ role: 'user', content: reAskText(parsed.problems, truncated) });
  }
}

function textToolResults(calls: ToolCall[], results: ToolResult[]): string {
  const parts = calls.map((call, index) => {
    const result = results[index];
    return `<tool_result name="${call.name}"${result?.isError ? ' error="true"' : ''}>\n${result?.content ?? ''}\n</tool_result>`;
  });
  return `Results of your tool calls:\n${parts.join('\n')}\nContinue: call more tools, or give your final answer.`;
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
