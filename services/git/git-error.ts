import { ModeratorError } from '../../errors.ts';

/**
 * A git operation on the target repository failed or was refused. `conflicts` lists the files
 * of a merge that stopped on conflicts (the merge has already been aborted when this is thrown),
 * so a caller can send the task back for rework instead of stopping the run.
 */
export class GitError extends ModeratorError {
  readonly conflicts: string[] | undefined;

  constructor(message: string, options?: { cause?: unknown; conflicts?: string[] }) {
    super('git', message, options);
    this.conflicts = options?.conflicts;
  }
}
