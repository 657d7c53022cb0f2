import { ModeratorError } from '../../errors.ts';

/**
 * A tool call of an agent was refused or failed: a path outside the worktree, a command not on
 * the allow-list, the task's tool-turn cap reached. `run` turns these into `isError` tool results
 * for the model; only the turn cap reaches the caller as a thrown error.
 */
export class ToolError extends ModeratorError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('tool', message, options);
  }
}
