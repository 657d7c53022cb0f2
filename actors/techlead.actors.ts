import { fromPromise } from 'xstate';
import type { SubmitInput, TaskStepInput, TestOutput } from '../machines/techlead.machine.ts';
import { ModeratorError } from '../errors.ts';
import { GitService } from '../services/git/git-service.ts';
import { firstLine, plural } from '../services/text.ts';
import { runTestCommand } from '../services/test-runner.ts';
import { cannotRun } from '../services/test-environment.ts';
import { once } from '../services/effects.ts';
import { estimateTokens } from '../services/llm/token-count.ts';
import { pullRequestBody } from '../services/pr/pr-text.ts';
import type { TaskRecord } from '../services/store/types.ts';
import { ask } from './ask.ts';
import { taskOf } from './moderator.actors.ts';
import { runProjectTests, reportTests } from './project-tests.ts';
import { contracts, describeTask, projectLine, stepSettings, systemPrompt } from './prompts.ts';
import { replies, type ChangeReply } from './replies.ts';
import { worktreePath, type RunServices } from './run-services.ts';
import { callKeys, stepKeys, type CallKey, type ChangePurpose } from '../protocol/keys.ts';
import { whatWasTried } from './approach.ts';
import { parseLintFindings } from '../services/test-signals.ts';

/** The TechLead's effects: worktree, implementation, revision, tests, PR. */
export function techleadActors(services: RunServices) {
  const settings = stepSettings(services, 'techlead');
  const branchOf = (task: TaskRecord, generation: number) => GitService.branchName(services.config.git.branch_prefix, task.type, task.id, generation);

  /** Asks the model for the change: with tools when the backend loops through us, plain JSON otherwise. */
  async function change(task: TaskRecord, purpose: ChangePurpose, callKey: CallKey, prompt: string, signal: AbortSignal): Promise<ChangeReply> {
    const worktree = worktreePath(services, task.id);
    const tools = services.toolsFor?.(worktree);
    const claudeCli = services.config.model.provider === 'claude-cli';
    return ask(services, {
      agent: 'techlead',
      purpose,
      taskId: task.id,
      callKey,
      system: systemPrompt(services, 'techlead', tools ? contracts.changeWithTools : contracts.change, purpose),
      prompt,
      reply: replies.change,
      settings: stepSettings(services, 'techlead', purpose),
      signal,
      ...(tools ? { tools, maxTurns: settings.max_tool_turns } : {}),
      // Claude Code edits the worktree itself and answers in prose: its answer is the summary.
      ...(claudeCli ? { lenient: (text: string) => ({ summary: firstLine(text, 200) || 'changes by Claude Code', files: [], delete: [] }) } : {}),
    });
  }

  /**
   * One step's change, written into the task's worktree and committed with the step trailer. A
   * change that leaves the branch as it was is not committed: the model is told and asked again
   * (`model.reply_retries` times), then the step fails with `no_change`. A step whose commit is
   * already on the branch (a resumed run) is not checked again.
   */
  async function changeAndCommit(task: TaskRecord, step: TaskStepInput, purpose: ChangePurpose, prompt: string, signal: AbortSignal): Promise<{ files: number }> {
    const { attempt } = step;
    const approach = step.approach ?? 0;
    const worktree = worktreePath(services, task.id);
    const stepKey = stepKeys.commit(task.id, attempt);
    // A restart after stagnation asks anew (never the journaled replies) and says what the last approach did.
    const firstKey = callKeys.change(purpose, task.id, attempt);
    const baseKey = callKeys.approach(firstKey, approach);
    if (approach > 0) prompt += whatWasTried(services, firstKey, approach);
    const retries = services.config.model.reply_retries;
    await services.git.ensureWorktree(branchOf(task, step.generation), worktree);
    for (let round = 0; ; round += 1) {
      const again = round === 0 ? '' : `\n\nYour previous answer left the repository exactly as it was (no file changed): make the change the task asks for, writing the files whole.`;
      const reply = await change(task, purpose, callKeys.noChange(baseKey, round), `${prompt}${again}`, signal);
      await services.git.writeFiles(worktree, reply.files, reply.delete);
      const committed = await services.git.committedStep(worktree, stepKey);
      if (committed === null && !(await services.git.hasUncommittedChanges(worktree))) {
        if (round < retries) {
          services.progress(`  ${task.id}: the change left the repository unchanged; asking again`);
          continue;
        }
        throw new ModeratorError('no_change', `${task.id}: the model's change left the repository unchanged after ${plural(round + 1, 'try', 'tries')}; nothing was committed`);
      }
      const summary = attempt > 1 ? `Revision ${attempt}: ${reply.summary}` : reply.summary;
      const message = GitService.commitMessage(
        { id: task.id, type: task.type, title: task.title, description: task.description, acceptanceCriteria: task.acceptanceCriteria },
        summary,
      );
      const sha = committed ?? (await services.git.commitAll(worktree, message, stepKey));
      const deleted = reply.delete.length ? `, deleted ${reply.delete.length}` : '';
      services.progress(`  ${task.id}: committed ${plural(reply.files.length, 'file')}${deleted} at ${sha.slice(0, 8)}: ${firstLine(reply.summary)}`);
      return { files: reply.files.length };
    }
  }

  const prepareWorkspace = fromPromise<{ branch: string }, TaskStepInput>(async ({ input, signal }) => {
    const task = taskOf(services, input.taskId);
    const tasks = services.store.tasks.list(services.runId);
    const branch = branchOf(task, input.generation);
    const worktree = worktreePath(services, task.id);
    if (input.generation > 1) await freshStart(task, branch, worktree, signal);
    await services.git.ensureWorktree(branch, worktree);
    services.store.tasks.update(services.runId, task.id, { branch });
    const fresh = input.generation > 1 ? `, re-implemented from the current ${services.git.baseBranch}` : '';
    services.progress(`task ${tasks.findIndex((candidate) => candidate.id === task.id) + 1}/${tasks.length} ${task.id} ${task.type}: ${task.title} (branch ${branch}${fresh})`);
    return { branch };
  });

  /**
   * A re-implementation on a fresh branch: the first branch's PR is closed (the branch is kept
   * for people to read), its worktree makes way, and the base is brought up to where PRs merge.
   * Every part is a no-op when done before, so a re-run after a kill repeats it harmlessly.
   */
  async function freshStart(task: TaskRecord, branch: string, worktree: string, signal: AbortSignal): Promise<void> {
    const previous = services.store.pullRequests.forTask(services.runId, task.id);
    if (previous && previous.branch !== branch && previous.status === 'open') {
      await services.prs.close(previous.number, signal);
      services.progress(`  ${task.id}: PR #${previous.number} closed: the task starts again on a fresh branch`);
    }
    await services.git.removeWorktree(worktree);
    await services.prs.syncBase?.(signal);
  }

  /**
   * A step's opening prompt: the task (and the review it answers), then what the context manager
   * chose for it within `context.prompt_tokens`: the repository map, the files the task names and
   * earlier attempts touched (without tools, the most relevant others too), the failing test
   * output. Journaled: a resumed step asks with the prompt it first built, not one read from a
   * worktree its own tool calls have changed since.
   */
  function openingPrompt(task: TaskRecord, step: TaskStepInput, purpose: ChangePurpose, parts: { before: string; query: string; testOutput?: string | undefined; ending: string }): Promise<string> {
    const worktree = worktreePath(services, task.id);
    const branch = branchOf(task, step.generation);
    // Tools (or Claude Code's own) read what the prompt leaves out; a plain JSON backend sees only the prompt.
    const withTools = services.toolsFor !== undefined || services.config.model.provider === 'claude-cli';
    return once(services.store, services.runId, stepKeys.prompt(callKeys.change(purpose, task.id, step.attempt)), async () => {
      await services.git.ensureWorktree(branch, worktree);
      // A first implementation has no earlier attempt: its branch is fresh from the base and
      // nothing has written to its worktree before this prompt (which is journaled before any reply).
      const first = purpose === 'implement' && step.attempt === 1;
      const touched = first ? [] : [...new Set([...(await services.git.changedFiles(branch)), ...(await services.git.uncommittedPaths(worktree))])].sort();
      const context = await services.context.forTask({ cwd: worktree, query: { text: parts.query, touched }, withTools, testOutput: parts.testOutput, reserved: estimateTokens(parts.before) });
      return [parts.before, ...context.sections, parts.ending].join('\n\n');
    });
  }

  const implement = fromPromise<{ files: number }, TaskStepInput>(async ({ input, signal }) => {
    const task = taskOf(services, input.taskId);
    // A task implemented again (`moderator retry`) sees how its last attempt's tests ended.
    const tests = services.store.testRuns.latest(services.runId, task.id, input.attempt - 1);
    const prompt = await openingPrompt(task, input, 'implement', {
      before: `${projectLine(services)}\n\n${describeTask(task)}`,
      query: describeTask(task),
      testOutput: tests && !tests.passed ? tests.output : undefined,
      ending: 'Implement the task, with tests.',
    });
    return changeAndCommit(task, input, 'implement', prompt, signal);
  });

  const revise = fromPromise<{ files: number }, TaskStepInput>(async ({ input, signal }) => {
    const task = taskOf(services, input.taskId);
    // The base may have moved (other tasks merged): the revision starts by merging it in, and
    // resolves what conflicts (the markers are in the files it reads).
    await services.git.ensureWorktree(branchOf(task, input.generation), worktreePath(services, task.id));
    await services.prs.mergeBaseInto(task.id, worktreePath(services, task.id), signal);
    // The newest review before this round: the previous round's, or the one a retry answers.
    const review = services.store.reviews.latestBefore(services.runId, task.id, input.attempt);
    const tests = services.store.testRuns.latest(services.runId, task.id, input.attempt - 1);
    const feedback = review ? [`Review: ${review.summary}`, ...review.comments.map((comment) => `- ${comment}`)].join('\n') : '(no review found)';
    const prompt = await openingPrompt(task, input, 'revise', {
      before: `${projectLine(services)}\n\n${describeTask(task)}\n\nThe Moderator asked for changes:\n${feedback}`,
      query: `${describeTask(task)}\n${feedback}`,
      testOutput: tests && !tests.passed ? tests.output : undefined,
      ending: 'Address every comment.',
    });
    return changeAndCommit(task, input, 'revise', prompt, signal);
  });

  /**
   * The project's lint command after the tests, when one is set: its findings are a signal the
   * improvement cycles are measured by, never a verdict on the task. Null when it could not be
   * counted; a run cut short by a signal is not a result (the step runs again).
   */
  async function lint(taskId: string, cwd: string, signal: AbortSignal): Promise<number | null> {
    const command = services.config.project.lint_command;
    if (!command) return null;
    const step = await runTestCommand({ command, cwd, env: services.childEnv, timeoutMs: services.config.project.test_timeout_seconds * 1000, signal, sandbox: services.sandbox });
    if (step.aborted || signal.aborted) throw signal.reason ?? new Error('the lint run was aborted');
    const findings = cannotRun(step) === undefined ? parseLintFindings(step.output, step.exitCode) : null;
    services.progress(`  ${taskId}: \`${command}\`: ${findings === null ? 'findings could not be counted' : plural(findings, 'finding')}`);
    return findings;
  }

  const runTests = fromPromise<TestOutput, TaskStepInput>(async ({ input, signal }) => {
    const recorded = services.store.testRuns.get(services.runId, input.taskId, input.attempt);
    if (recorded) return { passed: recorded.passed };
    const cwd = worktreePath(services, input.taskId);
    const result = await runProjectTests(services, input.taskId, cwd, signal);
    const lintFindings = await lint(input.taskId, cwd, signal);
    services.store.testRuns.record({ runId: services.runId, taskId: input.taskId, attempt: input.attempt, ...result, lintFindings });
    reportTests(services, input.taskId, result);
    return { passed: result.passed };
  });

  const submit = fromPromise<{ prNumber: number }, SubmitInput>(async ({ input, signal }) => {
    const task = taskOf(services, input.taskId);
    const branch = branchOf(task, input.generation);
    const headSha = await services.git.branchHead(branch);
    const body = pullRequestBody(task, services.store.testRuns.get(services.runId, task.id, input.attempt), input.attempt);
    const pr = await services.prs.open({
      taskId: task.id,
      branch,
      title: `${task.type}(${task.id}): ${task.title}`,
      body,
      headSha,
      generation: input.generation,
    }, signal);
    if (input.attempt > 1) await services.prs.update(pr.number, headSha, input.attempt, body, signal);
    services.store.tasks.update(services.runId, task.id, { prNumber: pr.number, prUrl: pr.url });
    services.progress(`  ${task.id}: PR #${pr.number} ${input.attempt > 1 ? `updated (revision ${input.attempt})` : 'opened'}, tests ${input.testsPassed ? 'passing' : 'failing'}${pr.url ? `: ${pr.url}` : ''}`);
    return { prNumber: pr.number };
  });

  return { prepareWorkspace, implement, revise, runTests, submit };
}
