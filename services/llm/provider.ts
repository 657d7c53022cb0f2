import type { TokenUsage } from '../store/types.ts';
import type { CountableRequest, PromptCount } from './token-count.ts';
import type { CallerName } from '../../protocol/agents.ts';

export type { TokenUsage };

/** The agents that talk to models (protocol/agents.ts): keys of the replay format and of the call journal. */
export type AgentName = CallerName;

/** A tool the model may call; `inputSchema` is a JSON Schema object (made with `z.toJSONSchema`). */
export interface ToolSpec {
  name: string;
  description: string;
  inputSchema: Record<string, unknown>;
}

export interface ToolCall {
  /** The provider's id for the call, echoed back in the result. */
  id: string;
  name: string;
  input: unknown;
  /**
   * Set when the arguments were not JSON even after repair: the call is not run, the model is
   * told so in its result and calls again (a weak model's slip must not fail the task).
   */
  inputError?: string | undefined;
}

export interface ToolResult {
  id: string;
  content: string;
  isError?: boolean;
}

/** One turn of a conversation, provider-neutral. */
export type ConversationItem =
  | { role: 'user'; content: string }
  | { role: 'assistant'; content: string; toolCalls?: ToolCall[] }
  | { role: 'tool'; results: ToolResult[] };

/** Plain text turns, the common case. */
export type ChatMessage = { role: 'user' | 'assistant'; content: string };

/** A named JSON Schema for structured output, derived from a reply's zod schema. */
export interface ResponseFormat {
  /** Letters, digits, `_` and `-`: it names the schema (OpenAI) or the forced tool (Anthropic). */
  name: string;
  schema: Record<string, unknown>;
}

/** One completion request, provider-neutral. */
export interface ModelRequest {
  agent: AgentName;
  /** What the call is for (`plan`, `review`, `implement`, ...); the replay provider checks it. */
  purpose: string;
  taskId?: string | undefined;
  model: string;
  /** Tried when `model` stays rate limited; see issue #3. */
  backupModel?: string | undefined;
  system: string;
  messages: ConversationItem[];
  temperature: number;
  maxTokens: number;
  /** Tools the model may call; the caller runs them and sends the results in the next request. */
  tools?: ToolSpec[] | undefined;
  /**
   * Ask for a reply of this JSON Schema through the backend's structured output (OpenAI
   * `response_format`, an Anthropic forced tool), where it has one. The reply still arrives as text
   * and is validated by the caller: servers that ignore the request are common.
   */
  responseFormat?: ResponseFormat | undefined;
  signal?: AbortSignal | undefined;
}

export interface ModelReply {
  text: string;
  /** The model that actually answered (a provider may fall back to a backup model). */
  model: string;
  usage: TokenUsage;
  costUsd: number;
  latencyMs: number;
  /** Tool calls the model asked for; empty or absent when it answered. */
  toolCalls?: ToolCall[] | undefined;
  stopReason?: 'end' | 'tool_use' | 'max_tokens' | undefined;
}

/**
 * What every model backend implements. `sequence` is the number of replies this agent already
 * received in the run, `taskSequence` the number of those for the request's task (or, without
 * one, for no task): only a replay backend needs them, to pick the recorded call. With tasks in
 * parallel only the second is stable: one task's calls come in order, several tasks' interleave.
 */
export interface ModelProvider {
  readonly name: string;
  /** A one-line description for the progress output, e.g. `replay of demos/todo-cli/session.json`. */
  readonly description: string;
  complete(request: ModelRequest, sequence: number, taskSequence?: number): Promise<ModelReply>;
  /**
   * The request's input tokens by the provider's own count, where it has one (Anthropic's
   * count_tokens endpoint, OpenAI's tokenizer); undefined when it cannot count this request, and
   * then the caller counts locally (services/llm/token-count.ts).
   */
  countTokens?(request: CountableRequest): Promise<PromptCount | undefined>;
}
