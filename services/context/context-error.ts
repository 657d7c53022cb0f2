import { ModeratorError } from '../../errors.ts';

/**
 * A conversation still at 95% of `limits.max_context_tokens` after its old tool results were
 * summarised and it was pruned to the task, a summary and the last turn: its step stops here.
 * The decision is journaled, so a resumed run stops the same way instead of sending it.
 */
export class ContextFullError extends ModeratorError {
  readonly tokens: number;
  readonly limit: number;

  constructor(message: string, details: { tokens: number; limit: number }) {
    super('context_full', message);
    this.tokens = details.tokens;
    this.limit = details.limit;
  }
}
