import type { GitService } from '../git/git-service.ts';
import type { Store } from '../store/store.ts';
import type { PullRequestRecord } from '../store/types.ts';
import { ModeratorError } from '../../errors.ts';
import type { OpenPullRequest, PostedReview, PrProvider } from './pr-provider.ts';
import { stepKeys } from '../../protocol/keys.ts';
import { GitError } from '../git/git-error.ts';
import { PrError } from './pr-error.ts';

/** The embedded PR provider: PR records in SQLite, branches in the target, `git merge --no-ff`. */
export class LocalPrProvider implements PrProvider {
  readonly name = 'local';

  constructor(private readonly options: { store: Store; git: GitService; runId: string }) {}

  async open(pr: OpenPullRequest): Promise<PullRequestRecord> {
    const known = this.options.store.pullRequests.forBranch(this.options.runId, pr.taskId, pr.branch);
    if (known) return known;
    return this.options.store.pullRequests.open({
      runId: this.options.runId,
      taskId: pr.taskId,
      provider: this.name,
      branch: pr.branch,
      base: this.options.git.baseBranch,
      title: pr.title,
      body: pr.body,
      headSha: pr.headSha,
    });
  }

  async update(number: number, headSha: string, revision: number, body?: string): Promise<void> {
    this.options.store.pullRequests.updateHead(number, headSha, revision, body);
  }

  async refresh(number: number, headSha: string): Promise<void> {
    this.options.store.pullRequests.updateHead(number, headSha, 0);
  }

  async merge(number: number, message: string): Promise<string> {
    const pr = this.get(number);
    if (!pr) throw new ModeratorError('pr', `pull request #${number} does not exist`);
    if (pr.status === 'merged' && pr.mergeSha) return pr.mergeSha;
    if (pr.status === 'closed') throw new ModeratorError('pr', `pull request #${number} is closed and cannot be merged`);
    // The step key makes the merge findable in git if we die between merging and recording it.
    let sha: string;
    try {
      sha = await this.options.git.mergeNoFf(pr.branch, message, stepKeys.merge(pr.taskId));
    } catch (error) {
      // A conflict is work for the TechLead (the chart sends the task back), not a failure.
      if (error instanceof GitError && error.conflicts?.length) {
        throw new PrError('pr_conflict', `PR #${number} (${pr.taskId}) conflicts with ${pr.base} in ${error.conflicts.join(', ')}`, { cause: error, conflicts: error.conflicts });
      }
      throw error;
    }
    this.options.store.pullRequests.markMerged(number, sha);
    return sha;
  }

  /** The base may have moved since the branch was made (another task merged): it is merged in. */
  mergeBaseInto(_taskId: string, worktree: string): Promise<{ merging: boolean; conflicts: string[] }> {
    return this.options.git.mergeBaseInto(worktree);
  }

  async close(number: number): Promise<void> {
    this.options.store.pullRequests.markClosed(number);
  }

  /** Local reviews live in the store only (the review actor records them). */
  async postReview(_number: number, _review: PostedReview): Promise<void> {}

  get(number: number): PullRequestRecord | undefined {
    return this.options.store.pullRequests.inRun(this.options.runId, number);
  }
}
