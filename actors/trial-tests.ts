import { messageOf } from '../errors.ts';
import { runProjectTests, type ProjectTestResult } from './project-tests.ts';
import type { RunServices } from './run-services.ts';

/** A PR waiting in the merge queue behind the one merging. */
export interface QueuedPr {
  taskId: string;
  branch: string;
}

/**
 * Test runs ahead of their turn, as merge queues do. While the queue brings one PR up to date and
 * tests it, the PRs behind it are merged, in a chain, onto what the base will be once the ones
 * ahead merge (trial merges: dangling commits, no ref moves), and each result is tested in a
 * throwaway worktree, side by side. When a PR's turn comes and its update has the tree a trial
 * tested, that result is its re-test; any other tree (the base moved differently, a PR ahead was
 * sent back) is tested as usual. A test result is a function of the tree, so only a passing run
 * is taken: a failing one is run again in the PR's own worktree before the PR goes back.
 *
 * At most `limit` trials run at once. Nothing here is journaled: a kill loses the trials (crash
 * recovery removes their worktrees) and the queue tests as it would have without them.
 */
export class TrialTests {
  /** Results by tree: started at most once per tree. */
  private readonly byTree = new Map<string, Promise<ProjectTestResult | null>>();
  private controller = new AbortController();
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  private made = 0;
  /** The chain of trial merges behind the PR merging now: its last commit, the tasks in it. */
  private chain: { tail: string; tasks: Set<string>; broken: boolean } | null = null;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly services: RunServices,
    private readonly limit: number,
  ) {}

  /**
   * Starts trials for the PRs `behind` the head of the queue, whose update is the commit `head`:
   * PR 1 merged onto it, PR 2 onto that, and so on. A conflict ends the chain: whatever follows
   * depends on how that PR's own turn goes.
   */
  prefetch(head: string, behind: readonly QueuedPr[]): Promise<void> {
    return this.serially(async () => {
      this.chain = { tail: head, tasks: new Set(), broken: false };
      await this.extendChain(behind);
    });
  }

  /** PRs that joined the queue since: chained onto the end of the chain the last prefetch made. */
  extend(behind: readonly QueuedPr[]): Promise<void> {
    return this.serially(() => this.extendChain(behind));
  }

  private async extendChain(behind: readonly QueuedPr[]): Promise<void> {
    const signal = this.controller.signal;
    const chain = this.chain;
    if (chain === null) return;
    for (const pr of behind) {
      if (signal.aborted || chain.broken || chain.tasks.size >= this.limit) return;
      if (chain.tasks.has(pr.taskId)) continue;
      let trial: { commit: string; tree: string } | null;
      try {
        trial = await this.services.git.trialMerge(chain.tail, pr.branch);
      } catch (error) {
        this.services.logs.for('mergeQueue').warn({ taskId: pr.taskId, error: messageOf(error) }, 'no trial merge');
        trial = null;
      }
      if (trial === null) {
        chain.broken = true;
        return;
      }
      chain.tasks.add(pr.taskId);
      if (!this.byTree.has(trial.tree)) this.byTree.set(trial.tree, this.test(pr.taskId, trial.commit, signal));
      chain.tail = trial.commit;
    }
  }

  /**
   * One chain operation at a time: each builds on where the one before left the chain. Never
   * rejects: a trial that cannot be made only means the PR is tested in its own turn.
   */
  private serially(work: () => Promise<void>): Promise<void> {
    const next = this.queue.then(work).catch((error: unknown) => {
      this.services.logs.for('mergeQueue').warn({ error: messageOf(error) }, 'trial merges stopped');
    });
    this.queue = next;
    return next;
  }

  /** The passing result of a trial of this tree (awaited if still running), or null. */
  async passedOn(tree: string): Promise<ProjectTestResult | null> {
    const result = await this.byTree.get(tree);
    this.byTree.delete(tree);
    return result?.passed ? result : null;
  }

  /** Stops every trial (the run is ending); later prefetches start afresh. */
  stop(): void {
    this.controller.abort(new Error('the merge queue stopped'));
    this.controller = new AbortController();
    this.byTree.clear();
    this.chain = null;
    // Each one waiting is handed a slot, sees the abort and gives it back.
    for (const wake of this.waiting.splice(0)) {
      this.running += 1;
      wake();
    }
  }

  private async test(taskId: string, commit: string, signal: AbortSignal): Promise<ProjectTestResult | null> {
    await this.slot(signal);
    let worktree: string | undefined;
    try {
      if (signal.aborted) return null;
      this.made += 1;
      worktree = await this.services.git.checkoutTrial(`${taskId}-${this.made}`, commit);
      return await runProjectTests(this.services, taskId, worktree, signal);
    } catch (error) {
      // Cut short, or the environment: the PR's own turn runs the tests and says what is wrong.
      if (!signal.aborted) this.services.logs.for('mergeQueue').warn({ taskId, error: messageOf(error) }, 'trial test run failed to run');
      return null;
    } finally {
      if (worktree !== undefined) await this.services.git.removeWorktree(worktree).catch(() => {});
      // The slot goes straight to the next in line, so nothing can start in between and pass the limit.
      const next = this.waiting.shift();
      if (next) next();
      else this.running -= 1;
    }
  }

  private async slot(signal: AbortSignal): Promise<void> {
    if (this.running < this.limit || signal.aborted) {
      this.running += 1;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }
}
