import type { PullRequestRecord } from '../store/types.ts';
import type { RateLimitStatus } from './github-client.ts';

export interface OpenPullRequest {
  taskId: string;
  branch: string;
  title: string;
  body: string;
  headSha: string;
  /** The task's branch generation: 2 for a re-implementation on a fresh branch, which gets a PR of its own. */
  generation?: number;
}

/** The Moderator's verdict on one review round, as posted where the PR lives. */
export interface PostedReview {
  taskId: string;
  /** The review round; with `kind`, what makes a posted review findable again after a crash. */
  attempt: number;
  /**
   * `review`: the model's verdict; `conflict`: the merge queue found the branch in conflict with
   * the base; `tests`: with the base merged in, the tests fail.
   */
  kind: 'review' | 'conflict' | 'tests';
  verdict: 'approve' | 'request_changes';
  summary: string;
  comments: string[];
  criteria: string[];
  tests: { command: string; passed: boolean } | null;
}

/** Where pull requests live: `local` (SQLite + git merge) or `github` (Octokit), behind one interface. */
export interface PrProvider {
  readonly name: string;
  /** Opens the task's PR, or returns the one already open for it. */
  open(pr: OpenPullRequest, signal?: AbortSignal): Promise<PullRequestRecord>;
  /** Points the PR at a new head after a revision, with the revision's body. */
  update(number: number, headSha: string, revision: number, body?: string, signal?: AbortSignal): Promise<void>;
  /** Points the PR at the head the merge queue made by merging the base into it (`attempt`: the round it merges). */
  refresh(number: number, headSha: string, attempt: number, signal?: AbortSignal): Promise<void>;
  /**
   * Merges the PR into the base branch; merging a merged PR returns its merge commit. `message`
   * is the merge commit's message where Moderator writes it (local).
   */
  merge(number: number, message: string, signal?: AbortSignal): Promise<string>;
  close(number: number, signal?: AbortSignal): Promise<void>;
  get(number: number): PullRequestRecord | undefined;
  /** Posts the review on the PR; at most once per task, round and kind, also across a crash. */
  postReview(number: number, review: PostedReview, signal?: AbortSignal): Promise<void>;
  /**
   * Starts merging the base into a task's worktree (git.mergeBaseInto), the GitHub provider
   * first bringing the local base up to GitHub's: before a revision, so it resolves any
   * conflict, and in the merge queue. `merging` is false when the branch already holds the base.
   */
  mergeBaseInto(taskId: string, worktree: string, signal?: AbortSignal): Promise<{ merging: boolean; conflicts: string[] }>;
  /** Brings the local base branch up to where the PRs merge (GitHub's), before a branch is made from it. */
  syncBase?(signal?: AbortSignal): Promise<void>;
  /** The API quota the provider's last answer reported, for the metrics; absent or null without one. */
  rateLimit?(): RateLimitStatus | null;
}
