import { fromPromise } from 'xstate';
import type { SubmitInput, TaskStepInput, TestOutput } from '../machines/techlead.machine.ts';
import { ModeratorError } from '../errors.ts';
import { GitService } from '../services/git/git-service.ts';
import { runTestCommand } from '../services/test-runner.ts';
import { LOOKED_FOR, TestEnvironmentError, cannotRun } from '../services/test-environment.ts';
import { firstLine, lastLines, plural } from '../services/text.ts';
import { formatFiles, readTree } from '../services/workspace.ts';
import { pullRequestBody } from '../services/pr/pr-text.ts';
import type { TaskRecord } from '../services/store/types.ts';
import { ask } from './ask.ts';
import { taskOf } from './moderator.actors.ts';
import { contracts, describeTask, projectLine, stepSettings, systemPrompt, testCommandFor } from './prompts.ts';
import { replies, type ChangeReply } from './replies.ts';
import { worktreePath, type RunServices } from './run-services.ts';
import { callKeys, stepKeys, type CallKey, type ChangePurpose } from '../protocol/keys.ts';
import { whatWasTried } from './approach.ts';
import { parseLintFindings } from '../services/test-signals.ts';

/** How many lines of a failing or unrunnable test command's output the progress shows. */
const SHOWN_LINES = 12;

/** The TechLead's effects: worktree, implementation, revision, tests, PR. */
export function techleadActors(services: RunServices) {
  const settings = stepSettings(services, 'techlead');
  const branchOf = (task: TaskRecord) => GitService.branchName(services.config.git.branch_prefix, task.type, task.id);

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
  async function changeAndCommit(task: TaskRecord, attempt: number, purpose: ChangePurpose, prompt: string, signal: AbortSignal, approach = 0): Promise<{ files: number }> {
    const worktree = worktreePath(services, task.id);
    const stepKey = stepKeys.commit(task.id, attempt);
    // A restart after stagnation asks anew (never the journaled replies) and says what the last approach did.
    const firstKey = callKeys.change(purpose, task.id, attempt);
    const baseKey = callKeys.approach(firstKey, approach);
    if (approach > 0) prompt += whatWasTried(services, firstKey, approach);
    const retries = services.config.model.reply_retries;
    await services.git.ensureWorktree(branchOf(task), worktree);
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

  const prepareWorkspace = fromPromise<{ branch: string }, TaskStepInput>(async ({ input }) => {
    const task = taskOf(services, input.taskId);
    const tasks = services.store.listTasks(services.runId);
    const branch = branchOf(task);
    await services.git.ensureWorktree(branch, worktreePath(services, task.id));
    services.store.updateTask(services.runId, task.id, { branch });
    services.progress(`task ${tasks.findIndex((candidate) => candidate.id === task.id) + 1}/${tasks.length} ${task.id} ${task.type}: ${task.title} (branch ${branch})`);
    return { branch };
  });

  const implement = fromPromise<{ files: number }, TaskStepInput>(async ({ input, signal }) => {
    const task = taskOf(services, input.taskId);
    const tree = readTree(worktreePath(services, task.id));
    const prompt = `${projectLine(services)}\n\n${describeTask(task)}\n\nThe repository now:\n${formatFiles(tree.files)}${tree.truncated ? '\n(some files left out for size)' : ''}\n\nImplement the task, with tests.`;
    return changeAndCommit(task, input.attempt, 'implement', prompt, signal, input.approach);
  });

  const revise = fromPromise<{ files: number }, TaskStepInput>(async ({ input, signal }) => {
    const task = taskOf(services, input.taskId);
    if (services.prs.prepareRevision) {
      // Where PRs live elsewhere the base may have moved: the revision starts by merging it in.
      await services.git.ensureWorktree(branchOf(task), worktreePath(services, task.id));
      await services.prs.prepareRevision(task.id, worktreePath(services, task.id), signal);
    }
    // The newest review before this round: the previous round's, or the one a retry answers.
    const review = services.store.getLatestReviewBefore(services.runId, task.id, input.attempt);
    const tests = services.store.getLatestTestRun(services.runId, task.id, input.attempt - 1);
    const tree = readTree(worktreePath(services, task.id));
    const feedback = review ? [`Review: ${review.summary}`, ...review.comments.map((comment) => `- ${comment}`)].join('\n') : '(no review found)';
    const prompt = `${projectLine(services)}\n\n${describeTask(task)}\n\nThe Moderator asked for changes:\n${feedback}\n\n${tests && !tests.passed ? `The last test run failed:\n${tests.output.slice(-4000)}\n\n` : ''}The branch now:\n${formatFiles(tree.files)}\n\nAddress every comment.`;
    return changeAndCommit(task, input.attempt, 'revise', prompt, signal, input.approach);
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
    const recorded = services.store.getTestRun(services.runId, input.taskId, input.attempt);
    if (recorded) return { passed: recorded.passed };
    const cwd = worktreePath(services, input.taskId);
    const project = services.config.project;
    const test = testCommandFor(services, cwd);
    if (!test) {
      throw new TestEnvironmentError(`no test command: project.test_command is not set and the repository has none (looked for ${LOOKED_FOR}); set project.test_command, then \`moderator retry ${services.runId}\``);
    }
    const timeoutMs = project.test_timeout_seconds * 1000;
    const commands = [...(project.setup_command ? [project.setup_command] : []), test.command];
    let result = { passed: true, exitCode: 0 as number | null, timedOut: false, durationMs: 0, output: '' };
    for (const command of commands) {
      const step = await runTestCommand({ command, cwd, env: services.childEnv, timeoutMs, signal, sandbox: services.sandbox });
      // Cut short by Ctrl-C, SIGTERM, a stop or the run's own time limit: not a result. Nothing
      // is recorded, so a resumed run tests again instead of reading "failed" from the journal.
      if (step.aborted || signal.aborted) throw signal.reason ?? new Error('the test run was aborted');
      const why = cannotRun(step);
      if (why !== undefined) {
        const setting = command === project.setup_command ? 'project.setup_command' : 'project.test_command';
        services.progress(`  ${input.taskId}: \`${command}\` could not run (${why}):`);
        for (const line of lastLines(step.output, SHOWN_LINES)) services.progress(`    | ${line}`);
        throw new TestEnvironmentError(`the test command \`${command}\` could not run in the task's worktree (${why}): install what it needs or set ${setting}, then \`moderator retry ${services.runId}\``);
      }
      result = { passed: step.passed, exitCode: step.exitCode, timedOut: step.timedOut, durationMs: result.durationMs + step.durationMs, output: `${result.output}$ ${command}\n${step.output}` };
      if (!step.passed) break;
    }
    const lintFindings = await lint(input.taskId, cwd, signal);
    services.store.recordTestRun({ runId: services.runId, taskId: input.taskId, attempt: input.attempt, command: commands.join(' && '), ...result, lintFindings });
    services.progress(`  ${input.taskId}: tests ${result.passed ? 'passed' : `failed (exit ${result.exitCode ?? 'none'}${result.timedOut ? ', timed out' : ''})`} in ${(result.durationMs / 1000).toFixed(1)} s`);
    if (!result.passed) for (const line of lastLines(result.output, SHOWN_LINES)) services.progress(`    | ${line}`);
    return { passed: result.passed };
  });

  const submit = fromPromise<{ prNumber: number }, SubmitInput>(async ({ input, signal }) => {
    const task = taskOf(services, input.taskId);
    const branch = branchOf(task);
    const headSha = await services.git.headSha(branch);
    const body = pullRequestBody(task, services.store.getTestRun(services.runId, task.id, input.attempt), input.attempt);
    const pr = await services.prs.open({
      taskId: task.id,
      branch,
      title: `${task.type}(${task.id}): ${task.title}`,
      body,
      headSha,
    }, signal);
    if (input.attempt > 1) await services.prs.update(pr.number, headSha, input.attempt, body, signal);
    services.store.updateTask(services.runId, task.id, { prNumber: pr.number, prUrl: pr.url });
    services.progress(`  ${task.id}: PR #${pr.number} ${input.attempt > 1 ? `updated (revision ${input.attempt})` : 'opened'}, tests ${input.testsPassed ? 'passing' : 'failing'}${pr.url ? `: ${pr.url}` : ''}`);
    return { prNumber: pr.number };
  });

  return { prepareWorkspace, implement, revise, runTests, submit };
}
