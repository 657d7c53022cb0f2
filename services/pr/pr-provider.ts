import type { PullRequestRecord } from '../store/types.ts';
import type { RateLimitStatus } from './github-client.ts';

export interface OpenPullRequest {
  taskId: string;
  branch: string;
  title: string;
  body: string;
  headSha: string;
}

/** The Moderator's verdict on one review round, as posted where the PR lives. */
export interface PostedReview {
  taskId: string;
  /** The review round; with `kind`, what makes a posted review findable again after a crash. */
  attempt: number;
  /** `review`: the model's verdict; `conflict`: the merge found the branch in conflict with the base. */
  kind: 'review' | 'conflict';
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
   * Readies a task's worktree for a revision: the GitHub provider brings the base up to date and
   * starts merging it into the branch, so the revision resolves any conflict. Returns the files
   * in conflict.
   */
  prepareRevision?(taskId: string, worktree: string, signal?: AbortSignal): Promise<string[]>;
  /** The API quota the provider's last answer reported, for the metrics; absent or null without one. */
  rateLimit?(): RateLimitStatus | null;
}
