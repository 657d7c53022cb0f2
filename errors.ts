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

/** The disk under the target filled up: the run stopped where it was and resumes once there is space. */
export class StorageFullError extends ModeratorError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('storage_full', message, options);
  }
}

/** Whether an error (or one of its causes) says the disk or the database is full. */
export function isStorageFull(error: unknown): boolean {
  for (let current = error, depth = 0; current instanceof Error && depth < 8; current = current.cause, depth += 1) {
    const code = (current as NodeJS.ErrnoException).code;
    // git says "No space left on device", or "write error. Out of diskspace" for its own files.
    if (code === 'storage_full' || code === 'SQLITE_FULL' || code === 'ENOSPC' || /database or disk is full|no space left on device|out of diskspace/i.test(current.message)) return true;
  }
  return false;
}
