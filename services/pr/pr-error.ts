import { ModeratorError, type PrErrorCode } from '../../errors.ts';

/**
 * Why a pull request step failed. The charts route on these codes: `pr_conflict` sends the task
 * back to the TechLead for a revision; every other code fails the task, which ends the run
 * `needs_human` with the message as what a person must do.
 */
export type { PrErrorCode };
/*
 * The codes, and when each is used:
 * - pr_auth: 401, or 403 without a rate limit: the token is wrong, expired or lacks a permission.
 * - pr_not_found: 404: the repository or the PR is not there, or not visible to the token.
 * - pr_rate_limited: the rate limit is spent and its reset is further away than git.rate_limit_wait_seconds.
 * - pr_conflict: the branch conflicts with the base (mergeable=false), or is behind a base that must be merged first.
 * - pr_not_mergeable: 405 for another reason than a conflict: branch protection (required reviews, a locked branch).
 * - pr_checks_pending: required checks still pending or failing (blocked/unstable) after git.merge_wait_seconds.
 * - pr_head_changed: 409, or a head that is not the reviewed commit: someone pushed to the branch.
 * - pr_closed: the PR was closed on GitHub by someone else.
 * - pr_push_rejected: git refused the push of a task branch (the branch on the remote has other commits).
 * - pr_base: the base branch is missing on the remote, or the local one disagrees with it.
 * - pr_invalid: 422 for anything but an existing PR: e.g. no commits between the base and the branch.
 * - pr_api: anything else: 5xx after the retries, the network.
 * - pr: a PR record Moderator does not have, or one closed before it could be merged (local provider).
 */

/** A pull request step failed; the message is one line saying what to do, with no credential in it. */
export class PrError extends ModeratorError {
  declare readonly code: PrErrorCode;
  /** The HTTP status GitHub answered, when the failure was an answer. */
  readonly status: number | undefined;
  /** Files in conflict, for `pr_conflict`. */
  readonly conflicts: string[];

  constructor(code: PrErrorCode, message: string, options?: { cause?: unknown; status?: number; conflicts?: string[] }) {
    super(code, message, options);
    this.status = options?.status;
    this.conflicts = options?.conflicts ?? [];
  }
}
