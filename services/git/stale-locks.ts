import { existsSync, watch, type FSWatcher, type Stats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';

/** Every `*.lock` file below `dir` (ref locks a killed git leaves under `refs/`). */
export async function findLockFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  let entries: import('node:fs').Dirent[];
  try {
    entries = await fs.readdir(dir, { withFileTypes: true });
  } catch {
    return found;
  }
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) found.push(...(await findLockFiles(full)));
    else if (entry.name.endsWith('.lock')) found.push(full);
  }
  return found;
}

/**
 * Deletes `lock` if it exists, after giving a young one up to `waitMs` (by its age) to go away
 * on its own: a git process orphaned by the crash may still be finishing, and deleting a live
 * lock lets two writers corrupt the index. True when a lock was deleted. The wait ends the moment
 * the lock goes (its folder is watched) or comes of age (one timer for exactly the time left).
 */
export async function removeStaleLock(lock: string, waitMs: number): Promise<boolean> {
  for (;;) {
    let stat: Stats;
    try {
      stat = await fs.stat(lock);
    } catch {
      return false;
    }
    const left = waitMs - (Date.now() - stat.mtimeMs);
    if (left <= 0) break;
    await lockGoneOrTime(lock, left);
  }
  await fs.rm(lock, { force: true });
  return true;
}

/** Resolves when something happens to `lock`'s name in its folder, or after `ms`, whichever is first. */
function lockGoneOrTime(lock: string, ms: number): Promise<void> {
  return new Promise((resolve) => {
    let watcher: FSWatcher | undefined;
    const done = () => {
      clearTimeout(timer);
      watcher?.close();
      resolve();
    };
    const timer = setTimeout(done, ms);
    try {
      watcher = watch(path.dirname(lock), (_event, name) => {
        if (name === null || name === path.basename(lock)) done();
      });
      watcher.on('error', done);
    } catch {
      // No watch (the folder went too, or no inotify left): the timer alone ends the wait.
    }
    // Gone between the stat and the watch: nothing would report it.
    if (!existsSync(lock)) done();
  });
}
