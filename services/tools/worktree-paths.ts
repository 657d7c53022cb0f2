import fs from 'node:fs';
import path from 'node:path';
import { messageOf } from '../../errors.ts';
import { PathRefusedError, resolveInside } from '../git/safe-path.ts';
import { ToolError } from './tool-error.ts';

/**
 * Confines the paths a model names to one worktree. The rules (no absolute paths, no "..",
 * nothing in `.git`, no symlink leading out) are the git service's `resolveInside`; this adds
 * the worktree root itself as a valid place to list or search, and reports refusals as ToolErrors.
 */
export class WorktreePaths {
  /** The worktree's real path: every resolved path is compared against it. */
  readonly root: string;

  constructor(root: string) {
    if (!path.isAbsolute(root)) throw new ToolError(`the worktree root must be an absolute path, found ${JSON.stringify(root)}`);
    try {
      this.root = fs.realpathSync(root);
    } catch (error) {
      throw new ToolError(`the worktree ${root} does not exist`, { cause: error });
    }
  }

  /**
   * The real absolute path for `relative`. `allowRoot` accepts the worktree itself (`.`, or an
   * absent path) for listing and searching; reading or writing it makes no sense.
   */
  async resolve(relative: string | undefined, options: { allowRoot?: boolean; followLast?: boolean } = {}): Promise<string> {
    const given = relative ?? '.';
    if (options.allowRoot && !path.isAbsolute(given) && (given === '' || path.resolve(this.root, given) === this.root)) return this.root;
    try {
      return await resolveInside(this.root, given, options.followLast ?? true);
    } catch (error) {
      if (error instanceof PathRefusedError) throw new ToolError(`refused path ${JSON.stringify(given)}: ${error.reason}`, { cause: error });
      throw new ToolError(`cannot resolve ${JSON.stringify(given)}: ${messageOf(error)}`, { cause: error });
    }
  }

  /** How the model should see a resolved path: relative to the worktree, `/`-separated. */
  display(absolute: string): string {
    const relative = path.relative(this.root, absolute);
    return relative === '' ? '.' : relative.split(path.sep).join('/');
  }
}

