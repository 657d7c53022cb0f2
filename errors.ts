/**
 * The one error base class. Every boundary (config, model, git, PR, store, tool) has a
 * subclass with a stable `code`; the CLI prints `message` as one line and maps the error
 * to an exit status. This file is a leaf: every layer may import it.
 */
export class ModeratorError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Bad input from the user: a flag, a file, an environment variable, a run id. Exit status 2. */
export class UsageError extends ModeratorError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('usage', message, options);
  }
}

/** The message of any thrown value, for one-line reports. */
export function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
