import { setTimeout as delay } from 'node:timers/promises';
import { once } from '../effects.ts';
import { withStepTrailer } from '../git/commit-message.ts';
import type { Store } from '../store/store.ts';
import type { PullRequestRecord } from '../store/types.ts';
import type { GitRemote } from './git-remote.ts';
import { githubMessage, isHttpFailure, type GitHubClient, type RateLimitStatus } from './github-client.ts';
import { PrError } from './pr-error.ts';
import type { OpenPullRequest, PostedReview, PrProvider } from './pr-provider.ts';
import { reviewBody, reviewMarker } from './pr-text.ts';
import { stepKeys } from '../../protocol/keys.ts';

export interface GitHubRepository {
  owner: string;
  repo: string;
}

export interface GitHubPrProviderOptions {
  store: Store;
  runId: string;
  client: GitHubClient;
  /** Pushes the task branches and keeps the local base equal to GitHub's. */
  remote: GitRemote;
  repository: GitHubRepository;
  baseBranch: string;
  /** How long a merge waits for GitHub to compute mergeability and for required checks, in ms. */
  mergeWaitMs: number;
  /** Waits between looks at a PR that is not ready to merge, in ms; the last one repeats. */
  pollDelaysMs?: number[];
  log?: (line: string) => void;
}

/** What GitHub says about a PR, as far as the merge decision goes. */
interface PullState {
  number: number;
  html_url: string;
  state: string;
  merged: boolean;
  merge_commit_sha: string | null;
  mergeable: boolean | null;
  mergeable_state: string;
  head: { sha: string };
}

type Readiness = 'ready' | 'computing' | 'checks' | 'conflict' | 'behind' | 'draft';

/** mergeable_state, as GitHub documents it, to what merging can do about it. */
function readiness(pull: PullState): Readiness {
  if (pull.mergeable === false || pull.mergeable_state === 'dirty') return 'conflict';
  if (pull.mergeable === null || pull.mergeable_state === 'unknown') return 'computing';
  switch (pull.mergeable_state) {
    case 'behind':
      return 'behind';
    // blocked: required checks or reviews missing; unstable: other checks failing or pending. Nothing red is merged.
    case 'blocked':
    case 'unstable':
      return 'checks';
    case 'draft':
      return 'draft';
    default:
      return 'ready';
  }
}

/**
 * Pull requests on GitHub (or GitHub Enterprise) through Octokit; branches pushed with git.
 * Every step is journaled in the effects table and, when it runs again after a crash, asks
 * GitHub first: a PR is looked up by its head branch before one is opened, a merge starts by
 * reading whether the PR is already merged, a review by looking for its marker among the PR's
 * reviews. So no task revision ever gets two PRs or two merges, wherever the process died.
 */
export class GitHubPrProvider implements PrProvider {
  readonly name = 'github';
  private readonly options: GitHubPrProviderOptions;
  private readonly owner: string;
  private readonly repo: string;
  private readonly logLine: (line: string) => void;

  constructor(options: GitHubPrProviderOptions) {
    this.options = options;
    this.owner = options.repository.owner;
    this.repo = options.repository.repo;
    this.logLine = options.log ?? (() => {});
  }

  get(number: number): PullRequestRecord | undefined {
    return this.options.store.pullRequests.inRun(this.options.runId, number);
  }

  rateLimit(): RateLimitStatus | null {
    return this.options.client.rateLimit();
  }

  async open(pr: OpenPullRequest, signal?: AbortSignal): Promise<PullRequestRecord> {
    const { store, runId } = this.options;
    const known = store.pullRequests.forBranch(runId, pr.taskId, pr.branch);
    if (known) return known;
    await once(
      store,
      runId,
      stepKeys.githubOpen(pr.taskId, pr.generation),
      async () => {
        await this.options.remote.push(pr.branch);
        // Killed after GitHub opened the PR and before it was recorded, the step finds it here.
        const found = await this.findByHead(pr.branch, signal);
        if (found) this.logLine(`found ${this.ref(found.number)} already open for ${pr.branch} (opened by an interrupted step): not opening another`);
        const pull = found ?? (await this.create(pr, signal));
        return { remoteNumber: pull.number, url: pull.html_url };
      },
      (opened) =>
        store.pullRequests.open({
          runId,
          taskId: pr.taskId,
          provider: this.name,
          branch: pr.branch,
          base: this.options.baseBranch,
          title: pr.title,
          body: pr.body,
          headSha: pr.headSha,
          remoteNumber: opened.remoteNumber,
          url: opened.url,
        }),
    );
    const opened = store.pullRequests.forBranch(runId, pr.taskId, pr.branch);
    if (!opened) throw new PrError('pr_api', `the PR of ${pr.taskId} was opened but not recorded; resume the run`);
    return opened;
  }

  async update(number: number, headSha: string, revision: number, body?: string, signal?: AbortSignal): Promise<void> {
    const pr = this.require(number);
    const remoteNumber = this.remoteNumberOf(pr);
    await once(
      this.options.store,
      this.options.runId,
      stepKeys.githubUpdate(pr.taskId, revision),
      async () => {
        await this.options.remote.push(pr.branch);
        if (body === undefined) return null;
        const { data } = await this.call(`updating ${this.ref(remoteNumber)}`, () =>
          this.options.client.octokit.rest.pulls.update({ owner: this.owner, repo: this.repo, pull_number: remoteNumber, body, request: { signal } }));
        if (data.state === 'closed') throw this.closedElsewhere(pr, remoteNumber);
        return null;
      },
      () => this.options.store.pullRequests.updateHead(number, headSha, revision, body),
    );
  }

  /** The merge queue merged the base into the branch: it is pushed, so the PR on GitHub is up to date too. */
  async refresh(number: number, headSha: string, attempt: number): Promise<void> {
    const pr = this.require(number);
    await once(
      this.options.store,
      this.options.runId,
      stepKeys.githubRefresh(pr.taskId, attempt),
      async () => {
        await this.options.remote.push(pr.branch);
        return null;
      },
      () => this.options.store.pullRequests.updateHead(number, headSha, 0),
    );
  }

  async close(number: number, signal?: AbortSignal): Promise<void> {
    const pr = this.require(number);
    if (pr.status !== 'open') return;
    const remoteNumber = this.remoteNumberOf(pr);
    // Closing a closed PR is accepted by GitHub: a re-run after a crash repeats it harmlessly.
    await this.call(`closing ${this.ref(remoteNumber)}`, () =>
      this.options.client.octokit.rest.pulls.update({ owner: this.owner, repo: this.repo, pull_number: remoteNumber, state: 'closed', request: { signal } }));
    this.options.store.pullRequests.markClosed(number);
    this.logLine(`closed ${this.ref(remoteNumber)}`);
  }

  /**
   * Merges on GitHub with a merge commit titled as GitHub titles them (its PR number, not
   * Moderator's, which `_message` names) and the PR title and step trailer as its body.
   */
  async merge(number: number, _message: string, signal?: AbortSignal): Promise<string> {
    const pr = this.require(number);
    if (pr.status === 'merged' && pr.mergeSha) return pr.mergeSha;
    return once(
      this.options.store,
      this.options.runId,
      stepKeys.githubMerge(pr.taskId),
      () => this.mergeOnGitHub(pr, signal),
      (sha) => this.options.store.pullRequests.markMerged(number, sha),
    );
  }

  async postReview(number: number, review: PostedReview, signal?: AbortSignal): Promise<void> {
    const pr = this.require(number);
    const remoteNumber = this.remoteNumberOf(pr);
    const { octokit } = this.options.client;
    const where = { owner: this.owner, repo: this.repo, pull_number: remoteNumber, request: { signal } };
    await once(this.options.store, this.options.runId, stepKeys.githubReview(review.kind, review.taskId, review.attempt), async () => {
      const marker = reviewMarker(review);
      const posted = await this.call(`reading the reviews of ${this.ref(remoteNumber)}`, () =>
        octokit.paginate(octokit.rest.pulls.listReviews, { ...where, per_page: 100 }));
      if (posted.some((existing) => (existing.body ?? '').includes(marker))) return { posted: false };
      const event = review.verdict === 'approve' ? 'APPROVE' : 'REQUEST_CHANGES';
      try {
        await octokit.rest.pulls.createReview({ ...where, event, body: reviewBody(review, false) });
      } catch (error) {
        // GitHub answers 422 when the PR's author approves or requests changes on it, and the
        // token that opened the PR usually is its author: the verdict then goes in a comment.
        if (!(isHttpFailure(error) && error.status === 422 && /own pull request/i.test(githubMessage(error)))) {
          throw this.options.client.failure(`posting the review of ${this.ref(remoteNumber)}`, error);
        }
        await this.call(`posting the review of ${this.ref(remoteNumber)}`, () =>
          octokit.rest.pulls.createReview({ ...where, event: 'COMMENT', body: reviewBody(review, true) }));
      }
      this.logLine(`posted the ${review.kind} of ${review.taskId} round ${review.attempt} on ${this.ref(remoteNumber)}`);
      return { posted: true };
    });
  }

  async mergeBaseInto(taskId: string, worktree: string): Promise<{ merging: boolean; conflicts: string[] }> {
    await this.options.remote.syncBase();
    const merge = await this.options.remote.mergeBaseInto(worktree);
    if (merge.conflicts.length > 0) this.logLine(`${taskId}: merging ${this.options.baseBranch} into the branch stopped on conflicts in ${merge.conflicts.join(', ')}`);
    return merge;
  }

  async syncBase(): Promise<void> {
    await this.options.remote.syncBase();
  }

  // ---------------------------------------------------------------- internals

  private async mergeOnGitHub(pr: PullRequestRecord, signal: AbortSignal | undefined): Promise<string> {
    const remoteNumber = this.remoteNumberOf(pr);
    const ref = this.ref(remoteNumber);
    const deadline = Date.now() + this.options.mergeWaitMs;
    const delays = this.options.pollDelaysMs ?? [2000, 4000, 8000, 16_000, 30_000];
    for (let look = 0; ; look += 1) {
      const pull = await this.pull(remoteNumber, signal);
      if (pull.merged) return this.mergedAs(ref, pull.merge_commit_sha);
      if (pull.state === 'closed') throw this.closedElsewhere(pr, remoteNumber);
      if (pr.headSha && pull.head.sha !== pr.headSha) {
        throw new PrError('pr_head_changed', `${ref}'s branch ${pr.branch} is at ${pull.head.sha.slice(0, 12)} on GitHub, not at the reviewed ${pr.headSha.slice(0, 12)}: someone pushed to it; look at the PR and merge it by hand`);
      }
      const ready = readiness(pull);
      if (ready === 'conflict' || ready === 'behind') throw await this.conflict(pr, ref, ready);
      if (ready === 'draft') throw new PrError('pr_not_mergeable', `${ref} was turned into a draft on GitHub: mark it ready for review and merge it by hand`);
      if (ready === 'computing' || ready === 'checks') {
        if (Date.now() >= deadline) throw this.stillWaiting(ref, pull, ready);
        const wait = delays[Math.min(look, delays.length - 1)] ?? 0;
        this.logLine(`${ref} is not ready to merge (${pull.mergeable_state}); looking again in ${wait} ms`);
        await delay(Math.max(0, Math.min(wait, deadline - Date.now())), undefined, signal ? { signal } : undefined);
        continue;
      }
      try {
        const { data } = await this.options.client.octokit.rest.pulls.merge({
          owner: this.owner,
          repo: this.repo,
          pull_number: remoteNumber,
          merge_method: 'merge',
          // GitHub's own subject: a "#n" there links to that number on GitHub, so it must be GitHub's.
          commit_title: `Merge pull request #${remoteNumber} from ${this.owner}/${pr.branch}`,
          commit_message: withStepTrailer(pr.title, stepKeys.merge(pr.taskId)).trimEnd(),
          // GitHub refuses (409) if the branch moved since the review: nothing unreviewed is merged.
          ...(pr.headSha ? { sha: pr.headSha } : {}),
          request: { signal },
        });
        return this.mergedAs(ref, data.sha);
      } catch (error) {
        // A refused merge is looked at again: merged meanwhile (an earlier attempt's answer was
        // lost), in conflict since, or refused by branch protection (GitHub's words say which).
        const again = await this.pull(remoteNumber, signal);
        if (again.merged) return this.mergedAs(ref, again.merge_commit_sha);
        if (again.mergeable === false) throw await this.conflict(pr, ref, 'conflict');
        throw this.options.client.failure(`merging ${ref}`, error);
      }
    }
  }

  /** The local base is made to hold the merge before the merge is recorded, so the next task starts from it. */
  private async mergedAs(ref: string, sha: string | null): Promise<string> {
    const synced = await this.options.remote.syncBase();
    this.logLine(`${ref} is merged${sha ? ` as ${sha.slice(0, 12)}` : ''}; ${this.options.baseBranch} is at ${synced.sha.slice(0, 12)}`);
    return sha ?? synced.sha;
  }

  private async conflict(pr: PullRequestRecord, ref: string, kind: 'conflict' | 'behind'): Promise<PrError> {
    await this.options.remote.syncBase();
    const files = kind === 'conflict' ? await this.options.remote.conflictsWithBase(pr.branch) : [];
    const message = kind === 'conflict'
      ? `${ref} conflicts with ${this.options.baseBranch}${files.length ? ` in ${files.join(', ')}` : ''}`
      : `${ref} is behind ${this.options.baseBranch}, which branch protection requires to be merged into it first`;
    return new PrError('pr_conflict', message, { conflicts: files });
  }

  private stillWaiting(ref: string, pull: PullState, ready: 'computing' | 'checks'): PrError {
    const waited = Math.round(this.options.mergeWaitMs / 1000);
    if (ready === 'computing') {
      return new PrError('pr_api', `GitHub did not say whether ${ref} can be merged within ${waited} s (git.merge_wait_seconds): merge it by hand, or raise the wait`);
    }
    const why = pull.mergeable_state === 'blocked' ? 'required checks or reviews are missing' : 'checks are failing or still running';
    return new PrError('pr_checks_pending', `${ref} is ${pull.mergeable_state} after ${waited} s (${why}): finish it on GitHub and merge it by hand, or raise git.merge_wait_seconds`);
  }

  private closedElsewhere(pr: PullRequestRecord, remoteNumber: number): PrError {
    return new PrError('pr_closed', `${this.ref(remoteNumber)} (${pr.taskId}) was closed on GitHub: reopen it and merge it by hand, or leave the task undone`);
  }

  private async pull(remoteNumber: number, signal: AbortSignal | undefined): Promise<PullState> {
    const { data } = await this.call(`reading ${this.ref(remoteNumber)}`, () =>
      this.options.client.octokit.rest.pulls.get({ owner: this.owner, repo: this.repo, pull_number: remoteNumber, request: { signal } }));
    return data;
  }

  /** The task's PR among those of its branch: an open one, else a merged one; a closed one is someone's decision. */
  private async findByHead(branch: string, signal: AbortSignal | undefined): Promise<{ number: number; html_url: string } | undefined> {
    const { data } = await this.call(`looking for the PR of ${branch}`, () =>
      this.options.client.octokit.rest.pulls.list({
        owner: this.owner, repo: this.repo, head: `${this.owner}:${branch}`, base: this.options.baseBranch, state: 'all', per_page: 100, request: { signal },
      }));
    const open = data.find((pull) => pull.state === 'open');
    if (open) return open;
    const merged = data.find((pull) => pull.merged_at !== null);
    if (merged) return merged;
    const closed = data[0];
    if (closed) {
      throw new PrError('pr_closed', `${this.ref(closed.number)} for ${branch} was closed on GitHub: reopen it and resume the run, or delete the branch there`);
    }
    return undefined;
  }

  private async create(pr: OpenPullRequest, signal: AbortSignal | undefined): Promise<{ number: number; html_url: string }> {
    try {
      const { data } = await this.options.client.octokit.rest.pulls.create({
        owner: this.owner, repo: this.repo, title: pr.title, head: pr.branch, base: this.options.baseBranch, body: pr.body, request: { signal },
      });
      this.logLine(`opened ${this.ref(data.number)} for ${pr.branch}: ${data.html_url}`);
      return data;
    } catch (error) {
      // Someone (or an answer this process never read) opened it meanwhile: that one is ours.
      if (isHttpFailure(error) && error.status === 422 && /already exists/i.test(githubMessage(error))) {
        const existing = await this.findByHead(pr.branch, signal);
        if (existing) return existing;
      }
      throw this.options.client.failure(`opening the PR of ${pr.branch}`, error);
    }
  }

  private async call<T>(what: string, request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (error) {
      throw this.options.client.failure(what, error);
    }
  }

  private require(number: number): PullRequestRecord {
    const pr = this.get(number);
    if (!pr) throw new PrError('pr_not_found', `pull request #${number} is not in the store of run ${this.options.runId}`);
    return pr;
  }

  private remoteNumberOf(pr: PullRequestRecord): number {
    if (pr.remoteNumber === null) {
      throw new PrError('pr_not_found', `pull request #${pr.number} (${pr.taskId}) was opened by the ${pr.provider} provider, not on GitHub: finish this run with git.provider: ${pr.provider}`);
    }
    return pr.remoteNumber;
  }

  private ref(remoteNumber: number): string {
    return `${this.owner}/${this.repo}#${remoteNumber}`;
  }
}
