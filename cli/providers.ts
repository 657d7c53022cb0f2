import fs from 'node:fs';
import path from 'node:path';
import { InputFileError, SESSION_FILE_CAP, childProcessEnv, readInputFile, type Config, type Env, type Secrets } from '../config/index.ts';
import { UsageError, messageOf } from '../errors.ts';
import { ClaudeCliProvider, checkInstalled } from '../services/llm/claude-cli-provider.ts';
import { withPrices } from '../services/llm/prices.ts';
import type { ModelProvider, ModelReply, ModelRequest } from '../services/llm/provider.ts';
import { RecordingProvider } from '../services/llm/recording-provider.ts';
import { ReplayProvider, readSession } from '../services/llm/replay.ts';
import { checkConnection } from '../services/llm/connection-check.ts';
import type { RetryEvent } from '../services/llm/provider-options.ts';
import type { CountSource } from '../services/llm/token-count.ts';

export const noProviderHint =
  'no model provider is configured: set DUO_AGENT_MODEL_PROVIDER (or model.provider in duo-agent.config.yaml, or --provider) to anthropic, openai, claude-cli or replay; to watch a whole run offline, run `npm run demo`';

export interface ProviderContext {
  config: Config;
  secrets: Secrets;
  env: Env;
  /** Where a TechLead request for a task runs with claude-cli: the task's worktree. */
  worktreeOf: (taskId: string) => string;
  /** The target's root, where the other agents' claude-cli calls run (read-only). */
  target: string;
  onWarning?: (line: string) => void;
}

/**
 * Routes the TechLead to a Claude Code run inside its worktree allowed to edit, and the other
 * agents to a run in the target that is not.
 */
class ClaudeCliRouter implements ModelProvider {
  readonly name = 'claude-cli';
  readonly description: string;

  constructor(private readonly editor: ClaudeCliProvider, private readonly reader: ClaudeCliProvider) {
    this.description = editor.description;
  }

  complete(request: ModelRequest, sequence: number): Promise<ModelReply> {
    void sequence; // a live backend has no recording to index
    return (request.agent === 'techlead' ? this.editor : this.reader).complete(request);
  }
}

/**
 * The configured model backend, or a one-line refusal saying what to configure. Each SDK is
 * imported here, when its provider is chosen: together they are ~400 modules no other command needs.
 */
export async function createProvider(context: ProviderContext): Promise<ModelProvider> {
  const { config, secrets } = context;
  const provider = config.model.provider;
  const common = {
    timeoutMs: Math.round(config.model.timeout_seconds * 1000),
    maxRetries: config.model.max_retries,
    prices: withPrices(config.model.prices),
    onUnknownPrice: (model: string) => context.onWarning?.(`no price known for model ${model}: its cost counts as $0 (set model.prices)`),
    onNoUsage: (model: string, source: CountSource) =>
      context.onWarning?.(
        `warning: the server sends no token usage for ${model}: tokens are counted locally with the o200k tokenizer (${source === 'counted' ? 'exact for this model' : 'an estimate for this model, labelled as one'}); budgets hold on the count`,
      ),
    onNotice: (line: string) => context.onWarning?.(line),
    onRetry: (event: RetryEvent) => {
      if (event.kind === 'resend') context.onWarning?.(`  ${event.provider} ${event.model}: ${event.reason}; sending it again in ${event.waitMs} ms (${event.attempt} of ${event.maxRetries}, model.max_retries)`);
      else if (event.kind === 'backup_model') context.onWarning?.(`  ${event.provider} ${event.model} stays rate-limited: trying its backup model ${event.backupModel}`);
    },
    ...(config.model.base_url ? { baseURL: config.model.base_url } : {}),
  };
  switch (provider) {
    case undefined:
      throw new UsageError(noProviderHint);
    case 'replay': {
      const file = config.model.replay_file;
      if (!file) throw new UsageError('the replay provider needs a recorded session: pass --replay FILE or set model.replay_file');
      try {
        return new ReplayProvider({ session: readSession(file), file: path.relative(process.cwd(), file) || file, delayMs: config.model.replay_delay_ms });
      } catch (error) {
        throw new UsageError((error as Error).message, { cause: error });
      }
    }
    case 'anthropic': {
      if (!secrets.anthropicApiKey) throw new UsageError('the anthropic provider needs an API key: set DUO_AGENT_API_KEY (or ANTHROPIC_API_KEY)');
      const { AnthropicProvider } = await import('../services/llm/anthropic-provider.ts');
      return new AnthropicProvider({ ...common, apiKey: secrets.anthropicApiKey, keyVariable: 'DUO_AGENT_API_KEY (or ANTHROPIC_API_KEY)', sdkLogging: Boolean(context.env.ANTHROPIC_LOG) });
    }
    case 'openai': {
      if (!secrets.openaiApiKey) throw new UsageError('the openai provider needs an API key: set OPENAI_API_KEY (a local OpenAI-compatible server accepts any value)');
      const { OpenAIProvider } = await import('../services/llm/openai-provider.ts');
      return new OpenAIProvider({ ...common, apiKey: secrets.openaiApiKey, keyVariable: 'OPENAI_API_KEY', sdkLogging: Boolean(context.env.OPENAI_LOG) });
    }
    case 'claude-cli': {
      const env = childProcessEnv(context.env);
      // Claude Code authenticates itself; hand it the Anthropic key when Moderator has one.
      const withKey = secrets.anthropicApiKey ? { ...env, ANTHROPIC_API_KEY: secrets.anthropicApiKey } : env;
      const base = { executable: config.model.claude_cli_path, timeoutMs: common.timeoutMs, maxTurns: config.agents.techlead.max_tool_turns, env: withKey };
      const editor = new ClaudeCliProvider({
        ...base,
        permissionMode: 'acceptEdits',
        cwdFor: (request) => {
          if (!request.taskId) throw new UsageError('claude-cli: a TechLead call without a task has no worktree to run in');
          return context.worktreeOf(request.taskId);
        },
      });
      const reader = new ClaudeCliProvider({ ...base, maxTurns: 1, cwdFor: () => context.target });
      return new ClaudeCliRouter(editor, reader);
    }
  }
}

/** `--record FILE`: every reply of the run also goes into a replay session file. */
export function recording(inner: ModelProvider, file: string, run: { requirements: string; project?: Record<string, unknown> }): ModelProvider {
  let existing: { calls: Record<string, unknown[]> } | undefined;
  if (fs.existsSync(file)) {
    try {
      // A resumed run appends to its recording, a file of the same size as a replayed session.
      existing = JSON.parse(readInputFile(file, SESSION_FILE_CAP)) as { calls: Record<string, unknown[]> };
    } catch (error) {
      throw new UsageError(`--record ${file}: ${error instanceof InputFileError ? `it ${error.problem}` : `cannot be continued (${messageOf(error)})`}; give a new file`, { cause: error });
    }
  }
  return new RecordingProvider({ inner, file, requirements: run.requirements, project: run.project, existing });
}

/**
 * Before a run starts: a minimal call proves the key and the endpoint (or that the claude CLI is
 * there), so a bad key is a one-line error now rather than a failed run later.
 */
export async function preflight(provider: ModelProvider, config: Config, env: Env): Promise<void> {
  if (config.model.provider === 'anthropic' || config.model.provider === 'openai') {
    const check = await checkConnection(provider, config.agents.moderator.model);
    if (!check.ok) throw new UsageError(check.message);
  }
  if (config.model.provider === 'claude-cli') {
    const check = await checkInstalled(config.model.claude_cli_path, childProcessEnv(env));
    if (!check.ok) throw new UsageError(check.message);
  }
}
