import path from 'node:path';
import type { Config } from '../config/index.ts';
import { UsageError } from '../errors.ts';
import type { ModelProvider } from '../services/llm/provider.ts';
import { ReplayProvider, readSession } from '../services/llm/replay.ts';

export const noProviderHint =
  'no model provider is configured: set DUO_AGENT_MODEL_PROVIDER (or model.provider in duo-agent.config.yaml, or --provider) to anthropic, openai, claude-cli or replay; to watch a whole run offline, run `npm run demo`';

/** The configured model backend, or a one-line refusal saying what to configure. */
export function createProvider(config: Config): ModelProvider {
  const provider = config.model.provider;
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
    default:
      throw new UsageError(
        `the ${provider} provider is not available in this version of Moderator yet; use --provider replay --replay FILE, or \`npm run demo\``,
      );
  }
}
