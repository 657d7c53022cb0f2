import type { TestRunRecord } from '../services/store/types.ts';
import { runTestCommand } from '../services/test-runner.ts';
import { LOOKED_FOR, TestEnvironmentError, cannotRun } from '../services/test-environment.ts';
import { lastLines } from '../services/text.ts';
import { testCommandFor } from './prompts.ts';
import type { RunServices } from './run-services.ts';

/** How many lines of a failing or unrunnable test command's output the progress shows. */
export const SHOWN_LINES = 12;

/** One run of the project's tests: what the store keeps of it, without whose step it was. */
export type ProjectTestResult = Omit<TestRunRecord, 'runId' | 'taskId' | 'attempt' | 'lintFindings'>;

/**
 * The project's setup command (if any) and test command in a worktree, in the sandbox, with the
 * run's environment. Throws TestEnvironmentError when they cannot run at all (no command, a
 * program missing): a person must fix that, no revision can. A run cut short (a stop, Ctrl-C)
 * throws too: it is not a result, and nothing may be recorded for it.
 */
export async function runProjectTests(services: RunServices, taskId: string, cwd: string, signal: AbortSignal): Promise<ProjectTestResult> {
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
    if (step.aborted || signal.aborted) throw signal.reason ?? new Error('the test run was aborted');
    const why = cannotRun(step);
    if (why !== undefined) {
      const setting = command === project.setup_command ? 'project.setup_command' : 'project.test_command';
      services.progress(`  ${taskId}: \`${command}\` could not run (${why}):`);
      for (const line of lastLines(step.output, SHOWN_LINES)) services.progress(`    | ${line}`);
      throw new TestEnvironmentError(`the test command \`${command}\` could not run in the task's worktree (${why}): install what it needs or set ${setting}, then \`moderator retry ${services.runId}\``);
    }
    result = { passed: step.passed, exitCode: step.exitCode, timedOut: step.timedOut, durationMs: result.durationMs + step.durationMs, output: `${result.output}$ ${command}\n${step.output}` };
    if (!step.passed) break;
  }
  return { command: commands.join(' && '), ...result };
}

/** The progress lines of a finished test run: passed or failed, and the end of a failure's output. */
export function reportTests(services: RunServices, taskId: string, result: ProjectTestResult, what = 'tests'): void {
  services.progress(`  ${taskId}: ${what} ${result.passed ? 'passed' : `failed (exit ${result.exitCode ?? 'none'}${result.timedOut ? ', timed out' : ''})`} in ${(result.durationMs / 1000).toFixed(1)} s`);
  if (!result.passed) for (const line of lastLines(result.output, SHOWN_LINES)) services.progress(`    | ${line}`);
}
