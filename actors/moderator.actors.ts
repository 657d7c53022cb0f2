import { fromPromise } from 'xstate';
import type { NewTaskRef } from '../machines/events.ts';
import type { ReviewInput, ReviewOutput } from '../machines/moderator.machine.ts';
import { once } from '../services/effects.ts';
import { ModeratorError } from '../errors.ts';
import { ModelError } from '../services/llm/model-error.ts';
import { ask } from './ask.ts';
import { contracts, describeTask, projectLine, stepSettings, systemPrompt } from './prompts.ts';
import { replies, type ClarifyReply, type PlanReply, type ReviewReply } from './replies.ts';
import { worktreePath, type RunServices } from './run-services.ts';
import { estimateTokens } from '../services/llm/token-count.ts';
import type { TaskRecord } from '../services/store/types.ts';
import { plural } from '../services/text.ts';
import { callKeys, stepKeys } from '../protocol/keys.ts';
import { questionsAndAnswers } from './questions.ts';

export function taskOf(services: RunServices, taskId: string): TaskRecord {
  const task = services.store.tasks.get(services.runId, taskId);
  if (!task) throw new ModeratorError('store', `task ${taskId} is not in the store of run ${services.runId}`);
  return task;
}

/**
 * Task ids become branch names and commit trailers, so they must be unique in the target: a
 * second run on the same repository continues the numbering (T5, T6, ...) where the first ended.
 */
function renumber(services: RunServices, plan: PlanReply): PlanReply {
  const offset = services.store.tasks.nextNumber() - 1;
  if (offset === 0) return plan;
  const ids = new Map(plan.tasks.map((task, index) => [task.id, `T${offset + index + 1}`]));
  return {
    tasks: plan.tasks.map((task) => ({
      ...task,
      id: ids.get(task.id) ?? task.id,
      depends_on: task.depends_on.map((id) => ids.get(id) ?? id),
    })),
  };
}

/** How much of a branch's diff is read from git; the review prompt then holds what fits its budget (services/context). */
const DIFF_READ_BYTES = 1024 * 1024;

/** The Moderator's effects: scope, plan, review. */
export function moderatorActors(services: RunServices) {
  const settings = stepSettings(services, 'moderator');

  const clarify = fromPromise<{ assumptions: number; questions: number; questionIds?: string[] }>(async ({ signal }) => {
    const scope: ClarifyReply = await ask(services, {
      agent: 'moderator',
      purpose: 'clarify',
      callKey: callKeys.clarify(),
      system: systemPrompt(services, 'moderator', contracts.clarify),
      prompt: `${projectLine(services)}\n\nRequirements:\n${services.requirements}\n\nClarify the scope.`,
      reply: replies.clarify,
      settings,
      signal,
    });
    services.store.runs.setScope(services.runId, scope);
    // Kept with ids, so a person can answer each (terminal, dashboard, API) and the plan sees the answers.
    const questions = scope.questions.map((text, index) => ({ id: `Q${index + 1}`, text }));
    services.store.questions.add(services.runId, questions);
    services.progress(`scope: ${scope.summary}`);
    for (const assumption of scope.assumptions) services.progress(`  assumed: ${assumption}`);
    for (const question of questions) services.progress(`  question ${question.id}: ${question.text}`);
    return { assumptions: scope.assumptions.length, questions: questions.length, questionIds: questions.map((question) => question.id) };
  });

  const plan = fromPromise<{ tasks: NewTaskRef[] }>(async ({ signal }) => {
    const run = services.store.runs.get(services.runId);
    const planned = await once(
      services.store,
      services.runId,
      stepKeys.plan(),
      async () =>
        renumber(services, await ask(services, {
          agent: 'moderator',
          purpose: 'plan',
          callKey: callKeys.plan(),
          system: systemPrompt(services, 'moderator', contracts.plan),
          prompt: `${projectLine(services)}\n\nRequirements:\n${services.requirements}\n\nScope:\n${JSON.stringify(run?.scope ?? null, null, 2)}\n\n${questionsAndAnswers(services.store, services.runId)}Plan the tasks.`,
          reply: replies.plan,
          settings,
          signal,
        })),
      (reply) =>
        services.store.tasks.add(
          services.runId,
          reply.tasks.map((task) => ({
            id: task.id,
            title: task.title,
            type: task.type,
            description: task.description,
            acceptanceCriteria: task.acceptance_criteria,
            dependsOn: task.depends_on,
            origin: 'plan' as const,
          })),
        ),
    );
    services.progress(`plan: ${plural(planned.tasks.length, 'task')}`);
    planned.tasks.forEach((task, index) => services.progress(`  ${index + 1}. ${task.id} ${task.type}: ${task.title}`));
    return { tasks: planned.tasks.map((task) => ({ id: task.id, type: task.type, dependsOn: task.depends_on })) };
  });

  const review = fromPromise<ReviewOutput, ReviewInput>(async ({ input, signal }) => {
    const task = taskOf(services, input.taskId);
    const pr = services.prs.get(input.prNumber);
    if (!pr) throw new ModeratorError('pr', `pull request #${input.prNumber} does not exist`);
    // A retried review has no test run of its own round: the latest one tested the same head.
    const tests = services.store.testRuns.latest(services.runId, input.taskId, input.attempt);
    // The diff, the criteria and the test summary: the tree is not the reviewer's to read again.
    const testsLine = tests
      ? `The TechLead ran \`${tests.command}\`: ${tests.passed ? 'passed' : `FAILED (exit ${tests.exitCode ?? 'none'}${tests.timedOut ? ', timed out' : ''})`}.${tests.passed ? '' : `\n${services.context.testTail(tests.output)}`}`
      : 'No test run was recorded.';
    const head = `${projectLine(services)}\n\n${describeTask(task)}\n\nPull request #${pr.number} (${pr.branch}), review round ${input.attempt}.\n${testsLine}`;
    const diff = services.context.diff(await services.git.diff(pr.branch, DIFF_READ_BYTES), estimateTokens(head));
    const diffLine = `Diff against ${pr.base} (${plural(diff.files, 'file')}${diff.whole < diff.files ? `, ${diff.files - diff.whole} of them by name only, for size` : ''}):`;
    const testsPassed = tests?.passed ?? false;
    let verdict: ReviewReply;
    try {
      verdict = await ask(services, {
        agent: 'moderator',
        purpose: 'review',
        taskId: task.id,
        callKey: callKeys.review(task.id, input.attempt),
        system: systemPrompt(services, 'moderator', contracts.review, 'review'),
        prompt: `${head}\n\n${diffLine}\n${diff.text}\n\nReview it.`,
        reply: replies.review,
        settings: stepSettings(services, 'moderator', 'review'),
        signal,
      });
    } catch (error) {
      if (!(error instanceof ModelError) || error.code !== 'malformed_reply') throw error;
      // No readable verdict. Work whose tests pass is never thrown away for that: the PR stays
      // open and waits for a person (`moderator retry` asks for the review again).
      if (testsPassed) {
        services.progress(`review ${task.id} round ${input.attempt}: no usable verdict from the model; PR #${pr.number} stays open for a person (${error.message})`);
        return { verdict: 'hold', reason: `no usable review of PR #${pr.number}: ${error.message}` };
      }
      verdict = { verdict: 'request_changes', summary: 'The model gave no usable review; the tests fail.', comments: [] };
    }
    // Failing tests overrule an approving model: nothing red is merged.
    const final: 'approve' | 'request_changes' = testsPassed ? verdict.verdict : 'request_changes';
    const comments = testsPassed ? verdict.comments : ['The tests fail: make them pass.', ...verdict.comments];
    services.store.reviews.record({
      runId: services.runId,
      taskId: task.id,
      prNumber: pr.number,
      attempt: input.attempt,
      verdict: final,
      summary: verdict.summary,
      comments,
      testsPassed,
    });
    await services.prs.postReview(pr.number, {
      taskId: task.id,
      attempt: input.attempt,
      kind: 'review',
      verdict: final,
      summary: verdict.summary,
      comments,
      criteria: task.acceptanceCriteria,
      tests: tests ? { command: tests.command, passed: tests.passed } : null,
    }, signal);
    if (final === 'request_changes' && input.lastRound) await services.prs.close(pr.number, signal);
    const label = final === 'approve' ? 'approved' : input.lastRound ? 'rejected (no review attempts left)' : 'changes requested';
    services.progress(`review ${task.id} round ${input.attempt}: ${label}: ${verdict.summary}`);
    for (const comment of final === 'approve' ? [] : comments) services.progress(`  - ${comment}`);
    return { verdict: final };
  });

  return { clarify, plan, review };
}
