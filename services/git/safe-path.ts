import fs from 'node:fs/promises';
import path from 'node:path';
import { GitError } from './git-error.ts';

/** A path a model named was refused; `reason` says why, for the model, without the worktree's own path. */
export class PathRefusedError extends GitError {
  constructor(readonly path: string, root: string, readonly reason: string) {
    super(`refusing the path ${JSON.stringify(path)} in ${root}: ${reason}`);
  }
}

function isInside(root: string, candidate: string): boolean {
  const rel = path.relative(root, candidate);
  return rel !== '' && !rel.startsWith(`..${path.sep}`) && rel !== '..' && !path.isAbsolute(rel);
}

function pointsIntoGit(root: string, candidate: string): boolean {
  // Case-insensitive: on macOS and Windows ".GIT/config" is the same file as ".git/config".
  return path.relative(root, candidate).split(path.sep).some((segment) => segment.toLowerCase() === '.git');
}

async function lstatOrNull(file: string): Promise<import('node:fs').Stats | null> {
  try {
    return await fs.lstat(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

/**
 * The absolute path of `relative` inside the directory `rootReal` (already a real path), or a
 * GitError when the path is absolute, escapes with "..", points into a `.git`, or reaches
 * outside through a symlink. Model output names these paths, so every rule is enforced here
 * rather than trusted. `followLast` is false for deletes: removing a symlink never touches its
 * target, wherever that is.
 */
export async function resolveInside(rootReal: string, relative: string, followLast: boolean): Promise<string> {
  const refuse = (why: string): PathRefusedError => new PathRefusedError(relative, rootReal, why);
  if (relative === '' || relative.includes('\0')) throw refuse('it is empty or contains a NUL byte');
  if (path.isAbsolute(relative) || /^[A-Za-z]:[\\/]/.test(relative)) throw refuse('it is absolute; give a path relative to the worktree');
  const lexical = path.resolve(rootReal, relative);
  if (!isInside(rootReal, lexical)) throw refuse('it escapes the worktree');
  if (pointsIntoGit(rootReal, lexical)) throw refuse('it points into .git');

  // Walk component by component so a symlinked directory anywhere on the way is resolved.
  const components = path.relative(rootReal, lexical).split(path.sep);
  let current = rootReal;
  for (const [index, component] of components.entries()) {
    const next = path.join(current, component);
    const isLast = index === components.length - 1;
    const stat = await lstatOrNull(next);
    if (stat === null) {
      current = path.join(next, ...components.slice(index + 1));
      break;
    }
    if (stat.isSymbolicLink() && (followLast || !isLast)) {
      let real: string;
      try {
        real = await fs.realpath(next);
      } catch {
        throw refuse(`${component} is a symlink whose target does not exist`);
      }
      if (!isInside(rootReal, real)) throw refuse(`it resolves through the symlink ${component} to ${real}, outside the worktree`);
      current = real;
    } else {
      current = next;
    }
  }
  if (pointsIntoGit(rootReal, current)) throw refuse('it resolves into .git');
  return current;
}
