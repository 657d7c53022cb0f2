import { fromPromise } from 'xstate';
import type { SubmitInput, TaskStepInput, TestOutput } from '../machines/techlead.machine.ts';
import { GitService } from '../services/git/git-service.ts';
import { runTestCommand } from '../services/test-runner.ts';
import { formatFiles, readTree } from '../services/workspace.ts';
import type { TaskRecord } from '../services/store/types.ts';
import { ask } from './ask.ts';
import { taskOf } from './moderator.actors.ts';
import { contracts, describeTask, projectLine, stepSettings, systemPrompt } from './prompts.ts';
import { changeReply, type ChangeReply } from './replies.ts';
import { worktreePath, type RunServices } from './run-services.ts';

/** The TechLead's effects: worktree, implementation, revision, tests, PR. */
export function techleadActors(services: RunServices) {
  const settings = stepSettings(services, 'techlead');
  const branchOf = (task: TaskRecord) => GitService.branchName(services.config.git.branch_prefix, task.type, task.id);

  /** Writes the model's files into the task's worktree and commits them as this step. */
  async function apply(task: TaskRecord, attempt: number, change: ChangeReply): Promise<{ files: number }> {
    const worktree = worktreePath(services, task.id);
    await services.git.ensureWorktree(branchOf(task), worktree);
    await services.git.writeFiles(worktree, change.files, change.delete);
    const message = GitService.commitMessage(
      { id: task.id, type: task.type, title: task.title, description: task.description, acceptanceCriteria: task.acceptanceCriteria },
      attempt > 1 ? `Revision ${attempt}: ${change.summary}` : change.summary,
    );
    const sha = await services.git.commitAll(worktree, message, `commit:${task.id}:${attempt}`);
    services.progress(`  ${task.id}: committed ${change.files.length} file(s)${change.delete.length ? `, deleted ${change.delete.length}` : ''} at ${sha.slice(0, 8)}: ${change.summary}`);
    return { files: change.files.length };
  }

  const prepareWorkspace = fromPromise<{ branch: string }, TaskStepInput>(async ({ input }) => {
    const task = taskOf(services, input.taskId);
    const tasks = services.store.listTasks(services.runId);
    const branch = branchOf(task);
    await services.git.ensureWorktree(branch, worktreePath(services, task.id));
    services.store.updateTask(services.runId, task.id, { status: 'in_progress', branch, attempts: input.attempt });
    services.progress(`task ${tasks.findIndex((candidate) => candidate.id === task.id) + 1}/${tasks.length} ${task.id} ${task.type}: ${task.title} (branch ${branch})`);
    return { branch };
  });

  /** Asks the model for the change: with tools when the backend loops through us, plain JSON otherwise. */
  async function change(task: TaskRecord, attempt: number, purpose: 'implement' | 'revise', prompt: string, signal: AbortSignal): Promise<ChangeReply> {
    const worktree = worktreePath(services, task.id);
    await services.git.ensureWorktree(branchOf(task), worktree);
    const tools = services.toolsFor?.(worktree);
    const claudeCli = services.config.model.provider === 'claude-cli';
    return ask(services, {
      agent: 'techlead',
      purpose,
      taskId: task.id,
      callKey: `techlead:${purpose}:${task.id}:${attempt}`,
      system: systemPrompt(services, 'techlead', tools ? contracts.changeWithTools : contracts.change, purpose),
      prompt,
      schema: changeReply,
      settings: stepSettings(services, 'techlead', purpose),
      signal,
      ...(tools ? { tools, maxTurns: settings.max_tool_turns } : {}),
      // Claude Code edits the worktree itself and answers in prose: its answer is the summary.
      ...(claudeCli ? { lenient: (text: string) => ({ summary: text.trim().split('\n')[0]?.slice(0, 200) || 'changes by Claude Code', files: [], delete: [] }) } : {}),
    });
  }

  const implement = fromPromise<{ files: number }, TaskStepInput>(async ({ input, signal }) => {
    const task = taskOf(services, input.taskId);
    const tree = readTree(worktreePath(services, task.id));
    const reply = await change(
      task,
      input.attempt,
      'implement',
      `${projectLine(services)}\n\n${describeTask(task)}\n\nThe repository now:\n${formatFiles(tree.files)}${tree.truncated ? '\n(some files left out for size)' : ''}\n\nImplement the task, with tests.`,
      signal,
    );
    return apply(task, input.attempt, reply);
  });

  const revise = fromPromise<{ files: number }, TaskStepInput>(async ({ input, signal }) => {
    const task = taskOf(services, input.taskId);
    const review = services.store.getReview(services.runId, task.id, input.attempt - 1);
    const tests = services.store.getTestRun(services.runId, task.id, input.attempt - 1);
    const tree = readTree(worktreePath(services, task.id));
    const feedback = review ? [`Review: ${review.summary}`, ...review.comments.map((comment) => `- ${comment}`)].join('\n') : '(no review found)';
    const reply = await change(
      task,
      input.attempt,
      'revise',
      `${projectLine(services)}\n\n${describeTask(task)}\n\nThe Moderator asked for changes:\n${feedback}\n\n${tests && !tests.passed ? `The last test run failed:\n${tests.output.slice(-4000)}\n\n` : ''}The branch now:\n${formatFiles(tree.files)}\n\nAddress every comment.`,
      signal,
    );
    return apply(task, input.attempt, reply);
  });

  const runTests = fromPromise<TestOutput, TaskStepInput>(async ({ input, signal }) => {
    const recorded = services.store.getTestRun(services.runId, input.taskId, input.attempt);
    if (recorded) return { passed: recorded.passed };
    const cwd = worktreePath(services, input.taskId);
    const project = services.config.project;
    const timeoutMs = project.test_timeout_seconds * 1000;
    const commands = [...(project.setup_command ? [project.setup_command] : []), project.test_command];
    let result = { passed: true, exitCode: 0 as number | null, timedOut: false, durationMs: 0, output: '' };
    for (const command of commands) {
      const step = await runTestCommand({ command, cwd, env: services.childEnv, timeoutMs, signal });
      result = { passed: step.passed, exitCode: step.exitCode, timedOut: step.timedOut, durationMs: result.durationMs + step.durationMs, output: `${result.output}$ ${command}\n${step.output}` };
      if (!step.passed) break;
    }
    services.store.recordTestRun({ runId: services.runId, taskId: input.taskId, attempt: input.attempt, command: commands.join(' && '), ...result });
    services.progress(`  ${input.taskId}: tests ${result.passed ? 'passed' : `failed (exit ${result.exitCode ?? 'none'}${result.timedOut ? ', timed out' : ''})`} in ${(result.durationMs / 1000).toFixed(1)} s`);
    return { passed: result.passed };
  });

  const submit = fromPromise<{ prNumber: number }, SubmitInput>(async ({ input }) => {
    const task = taskOf(services, input.taskId);
    const branch = branchOf(task);
    const headSha = await services.git.headSha(branch);
    const pr = await services.prs.open({
      taskId: task.id,
      branch,
      title: `${task.type}(${task.id}): ${task.title}`,
      body: describeTask(task),
      headSha,
    });
    if (input.attempt > 1) await services.prs.update(pr.number, headSha, input.attempt);
    services.store.updateTask(services.runId, task.id, { status: 'in_review', prNumber: pr.number, attempts: input.attempt });
    services.progress(`  ${task.id}: PR #${pr.number} ${input.attempt > 1 ? `updated (revision ${input.attempt})` : 'opened'}, tests ${input.testsPassed ? 'passing' : 'failing'}`);
    return { prNumber: pr.number };
  });

  return { prepareWorkspace, implement, revise, runTests, submit };
}
