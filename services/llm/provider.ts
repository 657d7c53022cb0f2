import type { TokenUsage } from '../store/types.ts';

export type { TokenUsage };

/** The agents that talk to models. Keys of the replay format and of the call journal. */
export type AgentName = 'moderator' | 'techlead' | 'ever-thinker';

export interface ChatMessage {
  role: 'user' | 'assistant';
  content: string;
}

/** One completion request, provider-neutral. */
export interface ModelRequest {
  agent: AgentName;
  /** What the call is for (`plan`, `review`, `implement`, ...); the replay provider checks it. */
  purpose: string;
  taskId?: string;
  model: string;
  system: string;
  messages: ChatMessage[];
  temperature: number;
  maxTokens: number;
  signal?: AbortSignal;
}

export interface ModelReply {
  text: string;
  /** The model that actually answered (a provider may fall back to a backup model). */
  model: string;
  usage: TokenUsage;
  costUsd: number;
  latencyMs: number;
}

/**
 * What every model backend implements. `sequence` is the number of replies this agent already
 * received in the run; only a replay backend needs it, to pick the recorded call.
 */
export interface ModelProvider {
  readonly name: string;
  /** A one-line description for the progress output, e.g. `replay of demos/todo-cli/session.json`. */
  readonly description: string;
  complete(request: ModelRequest, sequence: number): Promise<ModelReply>;
}
