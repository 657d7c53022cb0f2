import type { PriceTable } from './prices.ts';
import type { CountSource } from './token-count.ts';

/** The options every real provider takes, and what it reports while it works. */
/** Told before each retry the SDK makes, and when a rate-limited call moves to the backup model. */
export type RetryEvent =
  | {
      kind: 'retry';
      provider: string;
      model: string;
      /** The attempt that just failed, from 1; the SDK sends attempt + 1 next. */
      attempt: number;
      maxRetries: number;
      status?: number | undefined;
      error?: string | undefined;
      /** What the server asked for (retry-after-ms, else retry-after); absent means the SDK's backoff. */
      retryAfterMs?: number | undefined;
    }
  | { kind: 'backup_model'; provider: string; model: string; backupModel: string }
  /** A reply broke off mid-stream and is asked for again after `waitMs` (attempt counts from 1). */
  | { kind: 'resend'; provider: string; model: string; attempt: number; maxRetries: number; reason: string; waitMs: number };

/** The SDKs' logger shape (pino's methods fit). */
export interface SdkLogger {
  error(message: string, ...rest: unknown[]): void;
  warn(message: string, ...rest: unknown[]): void;
  info(message: string, ...rest: unknown[]): void;
  debug(message: string, ...rest: unknown[]): void;
}

export interface ProviderOptions {
  /** Passed to the SDK as is; the SDK never looks for a key of its own. */
  apiKey: string;
  /** The API's address; see each provider for its default and how it is normalised. */
  baseURL?: string | undefined;
  /**
   * Milliseconds to wait for the response headers of one attempt (the SDK's `timeout`, retried like
   * any timeout) and, once a reply streams, for the next event of the stream (not retried: the reply
   * was under way). Default 600000 (10 min, the SDKs' own).
   */
  timeoutMs?: number | undefined;
  /** Retries the SDK makes after the first attempt of a call. Default 4. */
  maxRetries?: number | undefined;
  /** Laid over DEFAULT_PRICES (config `model.prices`). */
  prices?: PriceTable | undefined;
  onRetry?: ((event: RetryEvent) => void) | undefined;
  /** Told once per model this provider has no price for (its calls count as $0). */
  onUnknownPrice?: ((model: string) => void) | undefined;
  /** Told once per model whose server sends no token usage: its tokens are then counted locally. */
  onNoUsage?: ((model: string, source: CountSource) => void) | undefined;
  /** One-line notices for the progress output (a server that refused structured output, ...). */
  onNotice?: ((line: string) => void) | undefined;
  /** First wait before resending a reply that broke off mid-stream, doubled per attempt up to 8 s. Default 500 ms. */
  resendBaseMs?: number | undefined;
  /** Replaces the global fetch, for tests or a proxy. */
  fetch?: typeof fetch | undefined;
  /** The environment variable the key came from, named in a rejected-key message. */
  keyVariable?: string | undefined;
  /**
   * Receives the SDK's own log lines. Without one the SDK logs nothing unless its log variable
   * (ANTHROPIC_LOG, OPENAI_LOG) is set, so a broken stream is one ModelError, not console noise.
   */
  logger?: SdkLogger | undefined;
  /**
   * Without a logger, let the SDK log as its own variable (ANTHROPIC_LOG, OPENAI_LOG) says; the
   * composition root reads that variable, since nothing under services/ reads the environment.
   */
  sdkLogging?: boolean | undefined;
}

export const DEFAULT_TIMEOUT_MS = 600_000;

export const DEFAULT_MAX_RETRIES = 4;
