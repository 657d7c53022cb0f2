import { ModeratorError } from '../../errors.ts';

/** The database could not be opened, migrated or written. */
export class StoreError extends ModeratorError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('store', message, options);
  }
}
