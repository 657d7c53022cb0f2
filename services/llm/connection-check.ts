import type { ModelProvider } from './provider.ts';

export interface ConnectionCheck {
  ok: boolean;
  /** One line: who answered and how fast, or the ModelError's message. */
  message: string;
  latencyMs: number;
}

/**
 * The smallest real call (max_tokens 1), for `moderator doctor`: it proves the key, the address and
 * the model name at the price of a few tokens. Give it a provider built with few retries, or a rate
 * limit makes it wait out the SDK's backoff.
 */
export async function checkConnection(provider: ModelProvider, model: string, options: { signal?: AbortSignal } = {}): Promise<ConnectionCheck> {
  const started = performance.now();
  try {
    const reply = await provider.complete(
      {
        agent: 'moderator',
        purpose: 'doctor',
        model,
        system: '',
        messages: [{ role: 'user', content: 'Reply with the single word: ok' }],
        temperature: 0,
        maxTokens: 1,
        signal: options.signal,
      },
      0,
    );
    const latencyMs = Math.round(performance.now() - started);
    return { ok: true, message: `${provider.name}: ${reply.model} answered in ${latencyMs} ms`, latencyMs };
  } catch (error) {
    const latencyMs = Math.round(performance.now() - started);
    return { ok: false, message: error instanceof Error ? error.message : String(error), latencyMs };
  }
}
