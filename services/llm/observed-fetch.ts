import { AsyncLocalStorage } from 'node:async_hooks';
import { describeCause } from './failures.ts';
import type { RetryEvent } from './provider-options.ts';

/** The fetch the SDKs are given: it counts each call's attempts and reports the retries the SDK makes. */
export interface CallLog {
  model: string;
  attempts: number;
  signal?: AbortSignal | undefined;
}

/** The call an HTTP attempt belongs to; AsyncLocalStorage because one client serves concurrent calls. */
export const currentCall = new AsyncLocalStorage<CallLog>();

/**
 * The statuses the SDKs retry (both: `shouldRetry` in their client.ts). Mirrored only to report
 * retries; the SDK decides.
 */
function sdkRetries(response: Response): boolean {
  const header = response.headers.get('x-should-retry');
  if (header === 'true') return true;
  if (header === 'false') return false;
  return response.status === 408 || response.status === 409 || response.status === 429 || response.status >= 500;
}

function retryAfterMs(headers: Headers): number | undefined {
  const ms = Number.parseFloat(headers.get('retry-after-ms') ?? '');
  if (ms > 0) return ms;
  const seconds = Number.parseFloat(headers.get('retry-after') ?? '');
  return seconds > 0 ? seconds * 1000 : undefined;
}

/**
 * The fetch given to an SDK: counts the attempts of the current call (for messages) and reports
 * each retry the SDK is about to make.
 */
export function observedFetch(options: { provider: string; maxRetries: number; fetch?: typeof fetch | undefined; onRetry?: ((event: RetryEvent) => void) | undefined }): typeof fetch {
  const base = options.fetch ?? globalThis.fetch;
  return async (input, init) => {
    const call = currentCall.getStore();
    if (call) call.attempts += 1;
    const report = (details: { status?: number; error?: string; retryAfterMs?: number | undefined }): void => {
      if (!call || !options.onRetry || call.attempts > options.maxRetries || call.signal?.aborted) return;
      options.onRetry({ kind: 'retry', provider: options.provider, model: call.model, attempt: call.attempts, maxRetries: options.maxRetries, ...details });
    };
    let response: Response;
    try {
      response = await base(input, init);
    } catch (error) {
      report({ error: describeCause(error) });
      throw error;
    }
    if (!response.ok && sdkRetries(response)) report({ status: response.status, retryAfterMs: retryAfterMs(response.headers) });
    return response;
  };
}
