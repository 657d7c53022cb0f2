import path from 'node:path';
import { z } from 'zod';
import { CommandLineError, runTestCommand, splitCommand } from '../test-runner.ts';
import { defineTool, type ToolContext } from './define-tool.ts';
import { ToolError } from './tool-error.ts';

/**
 * The program a command line names, checked against the allow-list by its basename. A path
 * (`./node_modules/.bin/jest`) must stay inside the worktree: `/usr/bin/node` or `../x/npm`
 * would run something the worktree does not hold under an allowed name.
 */
async function checkProgram(argv0: string, context: ToolContext): Promise<void> {
  const name = path.basename(argv0);
  if (!context.allowedCommands.includes(name)) {
    throw new ToolError(`${JSON.stringify(name)} is not an allowed command; allowed: ${context.allowedCommands.join(', ') || 'none'}`);
  }
  if (argv0.includes('/') || argv0.includes('\\')) await context.paths.resolve(argv0);
}

export const runCommandTool = defineTool({
  name: 'run_command',
  description: 'Run one command in the worktree root, without a shell: no pipes, redirections, ";", "&&", "$VAR" or "$(...)". Quote arguments with spaces. Only some programs are allowed. Returns the exit code and the end of the output.',
  input: z.strictObject({
    command: z.string().min(1).describe('The command line, e.g. npm test -- --grep "parser"'),
  }),
  async run(input, context) {
    let argv: string[];
    try {
      argv = splitCommand(input.command);
    } catch (error) {
      if (error instanceof CommandLineError) throw new ToolError(error.describe('the command'), { cause: error });
      throw error;
    }
    await checkProgram(argv[0] ?? '', context);
    const result = await runTestCommand({
      command: input.command,
      cwd: context.paths.root,
      env: context.env,
      timeoutMs: context.commandTimeoutMs,
      outputCapBytes: context.outputCapBytes,
      sandbox: context.sandbox,
      ...(context.signal ? { signal: context.signal } : {}),
    });
    const status = result.timedOut ? `timed out after ${context.commandTimeoutMs} ms (process group killed)`
      : result.aborted ? 'aborted (process group killed)'
        : result.exitCode !== null ? `exit code ${result.exitCode}`
          : result.signal !== null ? `killed by ${result.signal}` : 'did not start';
    // A non-zero exit is an answer (failing tests), not a failed tool call; not running is.
    return {
      content: `$ ${input.command}\n${status} (${result.durationMs} ms)\n${result.output}`,
      isError: result.exitCode === null,
    };
  },
});
