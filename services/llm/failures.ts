import { oneLine } from '../text.ts';
import { ModelError } from './model-error.ts';
import type { Driver } from './resilient-caller.ts';

/** Why one SDK call failed, and the one-line ModelError that says what to do next. */
/** Why one SDK call failed, in terms the messages need. Each provider maps its SDK's errors here. */
export type Failure =
  | { kind: 'status'; status: number; errorType?: string | undefined; detail: string; cause: unknown }
  | { kind: 'connection'; detail: string; cause: unknown }
  | { kind: 'timeout'; cause: unknown }
  | { kind: 'idle'; cause?: unknown }
  | { kind: 'aborted'; cause: unknown }
  /** An error the API reported inside a stream that had started (Anthropic `event: error`, OpenAI `data: {"error"}`). */
  | { kind: 'stream'; errorType?: string | undefined; detail: string; cause: unknown }
  | { kind: 'malformed'; detail: string; cause?: unknown }
  /** The connection broke after the reply had started; the SDKs do not retry that. */
  | { kind: 'reset'; detail: string; cause: unknown }
  | { kind: 'other'; detail: string; cause: unknown };

/** The deepest useful message of an error chain: `connect ECONNREFUSED 127.0.0.1:9` rather than `fetch failed`. */
export function describeCause(error: unknown): string {
  let best = error instanceof Error ? error.message : String(error);
  let current: unknown = error;
  for (let depth = 0; depth < 8 && current instanceof Error; depth += 1) {
    const code = (current as NodeJS.ErrnoException).code;
    if (current.message && current.message !== 'fetch failed') best = current.message;
    else if (code) best = code;
    current = current.cause ?? ((current as Partial<AggregateError>).errors ?? [])[0];
  }
  return oneLine(best);
}

function seconds(ms: number): string {
  return ms >= 1000 ? `${Math.round(ms / 100) / 10} s` : `${ms} ms`;
}

/** Error types an API may report inside a stream that trying again will not fix. */
const PERMANENT_STREAM_ERRORS = new Set(['invalid_request_error', 'authentication_error', 'permission_error', 'not_found_error']);

/** The one-line ModelError for a failure, saying what to do next. */
export function modelErrorFor(failure: Failure, context: { driver: Driver; model: string; attempts: number }): ModelError {
  const { driver, model } = context;
  const api = `the ${driver.label} API`;
  const tries = context.attempts > 1 ? ` after ${context.attempts} attempts` : '';
  switch (failure.kind) {
    case 'status': {
      const { status, cause } = failure;
      const detail = failure.detail ? `: ${failure.detail}` : '';
      if (status === 401 || status === 403) {
        return new ModelError('model', `${api} rejected the key (${status}): check ${driver.keyVariable}`, { cause, retryable: false });
      }
      if (status === 429) {
        return new ModelError('model', `${api} kept rate-limiting ${model} (429)${tries}: resume later, or set a backup_model for this agent`, { cause, retryable: true });
      }
      if (status === 529 || failure.errorType === 'overloaded_error') {
        return new ModelError('model', `${api} is overloaded (${status})${tries}: resume later`, { cause, retryable: true });
      }
      if (status === 404) {
        return new ModelError('model', `${api} at ${driver.baseURL} answered 404 for ${model}${detail}: check the model name and model.base_url`, { cause, retryable: false });
      }
      if (status >= 500 || status === 408 || status === 409) {
        return new ModelError('model', `${api} failed with ${status}${tries}${detail}: resume later`, { cause, retryable: true });
      }
      return new ModelError('model', `${api} refused the request for ${model} (${status})${detail}`, { cause, retryable: false });
    }
    case 'connection':
      return new ModelError('model', `cannot reach ${driver.baseURL}: ${failure.detail}`, { cause: failure.cause, retryable: true });
    case 'reset':
      return new ModelError('model', `the connection to ${driver.baseURL} broke mid-reply${tries}: ${failure.detail}`, { cause: failure.cause, retryable: true });
    case 'timeout':
      return new ModelError('model', `no answer from ${driver.baseURL} within ${seconds(driver.timeoutMs)}${tries}: check the server, or raise the timeout`, { cause: failure.cause, retryable: true });
    case 'idle':
      return new ModelError('model', `the reply from ${driver.baseURL} stalled: no data for ${seconds(driver.timeoutMs)}${tries}`, { cause: failure.cause, retryable: true });
    case 'stream': {
      const type = failure.errorType ? `${failure.errorType}: ` : '';
      return new ModelError('model', `${api} broke off the reply of ${model}: ${type}${failure.detail}`, {
        cause: failure.cause,
        retryable: !PERMANENT_STREAM_ERRORS.has(failure.errorType ?? ''),
      });
    }
    case 'malformed':
      return new ModelError('malformed_reply', `${api} at ${driver.baseURL} sent a reply it could not read${tries}: ${failure.detail}`, { cause: failure.cause, retryable: true });
    case 'aborted':
    case 'other':
      return new ModelError('model', `${driver.label} call for ${model} failed: ${failure.kind === 'other' ? failure.detail : 'aborted'}`, { cause: failure.cause, retryable: false });
  }
}

/** Failures of a reply that had started, which the SDKs leave alone and a resend may cure. */
export function resendable(failure: Failure): boolean {
  if (failure.kind === 'stream') return !PERMANENT_STREAM_ERRORS.has(failure.errorType ?? '');
  return failure.kind === 'idle' || failure.kind === 'reset' || failure.kind === 'malformed';
}
