import { ModeratorError } from '../../errors.ts';

/**
 * A model call failed. `retryable` says whether trying again may help (rate limits, 5xx);
 * `replayMismatch` marks a run that asked a recording for a call it does not hold.
 */
export class ModelError extends ModeratorError {
  readonly retryable: boolean;

  constructor(code: 'model' | 'replay_mismatch' | 'malformed_reply', message: string, options?: { cause?: unknown; retryable?: boolean }) {
    super(code, message, options);
    this.retryable = options?.retryable ?? false;
  }
}

/** A call would take the run past its token or cost budget; it was not sent. */
export class BudgetExhaustedError extends ModeratorError {
  constructor(message: string) {
    super('budget_exhausted', message);
  }
}
