import { fromCallback, fromPromise } from 'xstate';
import type { MergeStepInput, RetestOutput, UpdateOutput } from '../machines/merge-queue.machine.ts';
import type { MergeQueued, QueuedMerge } from '../machines/events.ts';
import { ModeratorError } from '../errors.ts';
import { once } from '../services/effects.ts';
import type { PostedReview } from '../services/pr/pr-provider.ts';
import { PrError } from '../services/pr/pr-error.ts';
import type { PullRequestRecord, TaskRecord } from '../services/store/types.ts';
import { lastLines } from '../services/text.ts';
import { stepKeys } from '../protocol/keys.ts';
import { taskOf } from './moderator.actors.ts';
import { reportTests, runProjectTests, type ProjectTestResult } from './project-tests.ts';
import { TrialTests, type QueuedPr } from './trial-tests.ts';
import { worktreePath, type RunServices } from './run-services.ts';

/** Lines of a failing re-test's output the TechLead's revision is shown in the review. */
const FAILURE_LINES = 40;

/**
 * The merge queue's effects: bring an approved PR's branch up to date with the base (a merge
 * commit on the branch, at most once per round), test the result again, merge it. Every one may
 * run again after a kill: the update is found by its step trailer, the re-test in the effects
 * journal, the merge by the provider (a merged PR answers with its merge commit). The PRs queued
 * behind are tested ahead of their turn (see TrialTests), as many at once as tasks may run.
 */
export function mergeQueueActors(services: RunServices) {
  const base = services.git.baseBranch;
  const trials = new TrialTests(services, services.config.limits.max_parallel_tasks);

  const queuedPrs = (queue: readonly QueuedMerge[] | undefined): QueuedPr[] =>
    (queue ?? []).flatMap((queued) => {
      const pr = services.prs.get(queued.prNumber);
      return pr && pr.status === 'open' ? [{ taskId: queued.taskId, branch: pr.branch }] : [];
    });

  /** Starts the trials of the PRs behind this one, whose branch head after its update is `head`. */
  function testAhead(input: MergeStepInput, head: string): void {
    void trials.prefetch(head, queuedPrs(input.behind));
  }

  function prOf(input: MergeStepInput): PullRequestRecord {
    const pr = services.prs.get(input.prNumber);
    if (!pr) throw new ModeratorError('pr', `pull request #${input.prNumber} does not exist`);
    return pr;
  }

  /**
   * Why the PR could not merge becomes the round's review: the revision reads it, and where PRs
   * live on GitHub it is posted there. The orchestrator decides what follows.
   */
  async function sendBack(task: TaskRecord, pr: PullRequestRecord, input: MergeStepInput, found: { kind: PostedReview['kind']; summary: string; comments: string[] }, signal?: AbortSignal): Promise<void> {
    const tests = services.store.testRuns.get(services.runId, task.id, input.attempt);
    services.store.reviews.record({
      runId: services.runId, taskId: task.id, prNumber: pr.number, attempt: input.attempt, verdict: 'request_changes', summary: found.summary, comments: found.comments, testsPassed: tests?.passed ?? false,
    });
    await services.prs.postReview(pr.number, {
      taskId: task.id, attempt: input.attempt, kind: found.kind, verdict: 'request_changes', summary: found.summary, comments: found.comments,
      criteria: task.acceptanceCriteria, tests: tests ? { command: tests.command, passed: tests.passed } : null,
    }, signal);
  }

  const conflictComment = (conflicts: string[]) =>
    `Merge ${base} into the branch and resolve the conflicts${conflicts.length ? ` in ${conflicts.join(', ')} (the conflict markers are in those files)` : ''}, keeping both sides' intent.`;

  const updateBranch = fromPromise<UpdateOutput, MergeStepInput>(async ({ input, signal }) => {
    const task = taskOf(services, input.taskId);
    const pr = prOf(input);
    const worktree = worktreePath(services, task.id);
    const stepKey = stepKeys.update(task.id, input.attempt);
    await services.git.ensureWorktree(pr.branch, worktree);
    const done = await services.git.committedStep(worktree, stepKey);
    if (done !== null) {
      await services.prs.refresh(pr.number, done, input.attempt, signal);
      testAhead(input, done);
      return { updated: true, conflicts: [] };
    }
    const merge = await services.prs.mergeBaseInto(task.id, worktree, signal);
    if (!merge.merging) {
      testAhead(input, await services.git.branchHead(pr.branch));
      return { updated: false, conflicts: [] };
    }
    if (merge.conflicts.length > 0) {
      // The branch stays as the review saw it; the revision merges the base again and resolves.
      await services.git.abortBaseMerge(worktree);
      const shown = merge.conflicts.join(', ');
      await sendBack(task, pr, input, {
        kind: 'conflict', summary: `${pr.branch} conflicts with ${base} in ${shown}: other tasks merged there since the branch was made`, comments: [conflictComment(merge.conflicts)],
      }, signal);
      services.progress(`merge queue: ${task.id}: PR #${pr.number} conflicts with ${base} in ${shown}; not merged`);
      return { updated: false, conflicts: merge.conflicts };
    }
    const sha = await services.git.commitAll(worktree, `Merge ${base} into ${pr.branch}\n\nThe merge queue brought the branch up to date before merging PR #${pr.number}.`, stepKey);
    testAhead(input, sha);
    await services.prs.refresh(pr.number, sha, input.attempt, signal);
    services.progress(`merge queue: ${task.id}: PR #${pr.number} brought up to date with ${base} at ${sha.slice(0, 8)}; testing it again`);
    return { updated: true, conflicts: [] };
  });

  const retest = fromPromise<RetestOutput, MergeStepInput>(async ({ input, signal }) => {
    const task = taskOf(services, input.taskId);
    const pr = prOf(input);
    const worktree = worktreePath(services, task.id);
    await services.git.ensureWorktree(pr.branch, worktree);
    // The round's test run becomes this one: it tested the head the PR now has, or its very tree.
    let ahead = false;
    const result = await once(services.store, services.runId, stepKeys.retest(task.id, input.attempt), async (): Promise<ProjectTestResult> => {
      const tested = await trials.passedOn(await services.git.treeOf(worktree, 'HEAD'));
      ahead = tested !== null;
      return tested ?? runProjectTests(services, task.id, worktree, signal);
    }, (tests) => services.store.testRuns.record({ runId: services.runId, taskId: task.id, attempt: input.attempt, ...tests }));
    reportTests(services, task.id, result, ahead ? 'tests on the updated branch (run ahead of its turn, on the same tree)' : 'tests on the updated branch');
    if (!result.passed) {
      await sendBack(task, pr, input, {
        kind: 'tests',
        summary: `with ${base} merged in, \`${result.command}\` fails (exit ${result.exitCode ?? 'none'}${result.timedOut ? ', timed out' : ''})`,
        comments: [`Make the tests pass on the branch with ${base} merged in. The end of the output:\n${lastLines(result.output, FAILURE_LINES).join('\n')}`],
      }, signal);
    }
    return { passed: result.passed, command: result.command };
  });

  const merge = fromPromise<{ mergeSha: string }, MergeStepInput>(async ({ input, signal }) => {
    const task = taskOf(services, input.taskId);
    let sha: string;
    try {
      sha = await services.prs.merge(input.prNumber, `Merge PR #${input.prNumber}: ${task.type}(${task.id}): ${task.title}`, signal);
    } catch (error) {
      if (error instanceof PrError && error.code === 'pr_conflict') {
        await sendBack(task, prOf(input), input, { kind: 'conflict', summary: error.message, comments: [conflictComment(error.conflicts)] }, signal);
        services.progress(`merge queue: ${task.id}: ${error.message}; not merged`);
      }
      throw error;
    }
    await services.git.removeWorktree(worktreePath(services, task.id));
    const url = services.prs.get(input.prNumber)?.url;
    services.progress(`merged PR #${input.prNumber} (${task.id}) into ${base} at ${sha.slice(0, 8)}${url ? `: ${url}` : ''}`);
    return { mergeSha: sha };
  });

  // Lives as long as the merge queue: PRs queued meanwhile join the trials; when the run stops,
  // the trials still running stop with it.
  const trialTests = fromCallback<MergeQueued>(({ receive }) => {
    receive((event) => void trials.extend(queuedPrs(event.behind)));
    return () => trials.stop();
  });

  return { updateBranch, retest, merge, trials: trialTests };
}
