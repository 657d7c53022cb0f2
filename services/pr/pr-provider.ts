import type { PullRequestRecord } from '../store/types.ts';

export interface OpenPullRequest {
  taskId: string;
  branch: string;
  title: string;
  body: string;
  headSha: string;
}

/** Where pull requests live: `local` (SQLite + git merge) now, `github` behind the same interface. */
export interface PrProvider {
  readonly name: string;
  /** Opens the task's PR, or returns the one already open for it. */
  open(pr: OpenPullRequest): Promise<PullRequestRecord>;
  /** Points the PR at a new head after a revision. */
  update(number: number, headSha: string, revision: number): Promise<void>;
  /** Merges the PR into the base branch; merging a merged PR returns its merge commit. */
  merge(number: number, message: string): Promise<string>;
  close(number: number): Promise<void>;
  get(number: number): PullRequestRecord | undefined;
}
