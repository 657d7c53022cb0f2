/**
 * Every error code there is: the charts and the CLI route on these (a budget stop, a task sent
 * back for a revision, an exit status), never on the wording of a message.
 */
export type ErrorCode =
  /** Bad input: a flag, a file, a variable, a target, a run that cannot be resumed. Exit 2. */
  | 'usage'
  | 'config'
  /** The monitoring server could not start (a busy port). */
  | 'monitor'
  | 'store'
  /** The disk under the target filled up: the run halts, resumable. */
  | 'storage_full'
  | 'model'
  /** A reply that stayed unusable after the re-asks. */
  | 'malformed_reply'
  /** A replay asked for a call its recording does not hold. */
  | 'replay_mismatch'
  | 'budget_exhausted'
  | 'git'
  | 'tool'
  /** The project's tests cannot run at all here: a person's to fix. */
  | 'test_environment'
  /** A change that left the branch as it was, after the re-asks. */
  | 'no_change'
  /** A conversation that stayed at 95% of limits.max_context_tokens after pruning: its step stopped. */
  | 'context_full'
  /** An error none of Moderator's boundaries raised: a library's own, or a bug. */
  | 'unexpected'
  | PrErrorCode;

/** Why a pull request step failed; see services/pr/pr-error.ts for what each means. */
export type PrErrorCode =
  | 'pr' | 'pr_auth' | 'pr_not_found' | 'pr_rate_limited' | 'pr_conflict' | 'pr_not_mergeable' | 'pr_checks_pending'
  | 'pr_head_changed' | 'pr_closed' | 'pr_push_rejected' | 'pr_base' | 'pr_invalid' | 'pr_api';

const ERROR_CODES: ReadonlySet<string> = new Set<ErrorCode>([
  'usage', 'config', 'monitor', 'store', 'storage_full', 'model', 'malformed_reply', 'replay_mismatch', 'budget_exhausted',
  'git', 'tool', 'test_environment', 'no_change', 'context_full', 'unexpected', 'pr', 'pr_auth', 'pr_not_found', 'pr_rate_limited', 'pr_conflict',
  'pr_not_mergeable', 'pr_checks_pending', 'pr_head_changed', 'pr_closed', 'pr_push_rejected', 'pr_base', 'pr_invalid', 'pr_api',
]);

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && ERROR_CODES.has(value);
}

/**
 * The one error base class. Every boundary (config, model, git, PR, store, tool) has a
 * subclass with a stable `code`; the CLI prints `message` as one line and maps the error
 * to an exit status. This file is a leaf: every layer may import it.
 */
export class ModeratorError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
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
